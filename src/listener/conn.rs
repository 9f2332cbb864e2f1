//! One client connection from its first byte to its close: the protocol is
//! sniffed, hyper's HTTP/1.1 or HTTP/2 connection is driven next to the
//! connection's deadlines, its eviction and the shutdown phase, and an idle
//! cleartext HTTP/1.1 connection is parked between requests: hyper's
//! connection (its buffers and state, most of an idle connection's memory)
//! ends, the socket stays open, and a fresh hyper connection serves the
//! client's next request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;

use super::gate::Gate;
use super::io::ConnIo;
use super::service::{self, ConnBody, HeadLimits};
use super::slots::{ConnState, Expiry, PARK_DELAY};
use super::sniff::{self, Protocol, Socket};
use super::{Accepted, Builders, Phase};
use crate::metrics::Metrics;
use crate::route::ConnSettings;
use crate::serving::Serving;

/// How long an idle connection told to close may take to do so.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until it closes: on its own when the client or
/// hyper ends it, at its idle deadline (see [`Expiry`]), or at once when its
/// slot went to a newer connection. At [`Phase::Stopped`] it finishes the
/// request in flight, then closes politely (HTTP/1.1 `Connection: close`,
/// HTTP/2 GOAWAY; a parked connection closes at once); at [`Phase::Cut`]
/// (or when the phase sender is gone) it is dropped. Holding `phase` is
/// what tells the app a connection is still open. `protocol` is what TLS
/// negotiated; `None` on cleartext, where the first bytes tell. A plain
/// `fn` returning an `async` block (as `serve_http1`): an `async fn` would
/// hold a second copy of its arguments for the connection's whole life.
#[allow(clippy::manual_async_fn)] // see above: no second copy of the arguments
pub(super) fn serve<S: Socket>(
    stream: S,
    protocol: Option<Protocol>,
    accepted: Accepted,
    shared: Arc<Serving>,
    builders: &Builders,
) -> impl Future<Output = ()> + '_ {
    async move {
        // `accepted.slot` stays where it is until the connection ends.
        let state = Arc::clone(&accepted.slot.state);
        let settings = accepted.settings;
        let mut watch = Watch {
            phase: accepted.phase,
            state: Arc::clone(&state),
            settings,
            peer: accepted.conn.peer,
            gate: Gate::new(),
        };
        let conn = accepted.conn;
        let protocol = match (protocol, stream.parkable()) {
            (Some(p), _) => p,
            (None, Some(socket)) => match watch.wait(sniff::sniff(socket)).await {
                Some(Some(p)) => p,
                _ => return,
            },
            (None, None) => Protocol::Http1,
        };
        let io = ConnIo::new(
            stream,
            protocol,
            settings.send_idle,
            settings.max_header_bytes,
            Arc::clone(&state),
        );
        let limits = HeadLimits {
            max_target: settings.max_request_target,
            max_header_bytes: settings.max_header_bytes,
        };
        let serving = Arc::clone(&shared);
        match protocol {
            Protocol::Http1 => {
                // hyper keeps one HTTP/1.1 request future in flight, in a box
                // it reuses for the connection: no box per request here.
                let service = service_fn(move |req| {
                    let (shared, conn, state) =
                        (Arc::clone(&shared), conn.clone(), Arc::clone(&state));
                    service::serve(shared, conn, state, limits, req)
                });
                serve_http1(io, &builders.http1, service, &mut watch, &serving.metrics).await;
            }
            Protocol::Http2 => {
                // The request's future is boxed: it holds the whole pipeline
                // (several KiB), and hyper moves it by value on every HTTP/2
                // stream into a spawned task, copying it each time (6 copies,
                // about 5,000 instructions per h2c request; one allocation
                // costs about 200).
                let service = service_fn(move |req| {
                    let (shared, conn, state) =
                        (Arc::clone(&shared), conn.clone(), Arc::clone(&state));
                    Box::pin(service::serve(shared, conn, state, limits, req))
                });
                let conn = builders.http2.serve_connection(TokioIo::new(io), service);
                // Boxed with the future that drives it, like HTTP/1.1's: every
                // connection task is as large as its largest state, parked
                // HTTP/1.1 ones included.
                Box::pin(async move {
                    let mut conn = pin!(conn);
                    watch
                        .drive(conn.as_mut(), |c| c.graceful_shutdown(), false)
                        .await
                })
                .await;
            }
        }
    }
}

/// HTTP/1.1: hyper until the connection is parked, then the socket alone
/// until the client sends again, and so on until it closes. A plain `fn`
/// returning an `async` block: an `async fn` would copy its arguments into
/// the task a second time (the I/O and the service, 300 bytes), for as
/// long as the connection is open.
#[allow(clippy::manual_async_fn)] // see above: no second copy of the arguments
fn serve_http1<'a, S, Svc>(
    mut io: ConnIo<S>,
    builder: &'a http1::Builder,
    mut service: Svc,
    watch: &'a mut Watch,
    metrics: &'a Metrics,
) -> impl Future<Output = ()> + 'a
where
    S: Socket,
    Svc: HttpService<Incoming, ResBody = ConnBody, Error = Infallible> + Unpin + 'a,
{
    async move {
        let parkable = io.get_ref().parkable().is_some();
        loop {
            // hyper's connection and the future that drives it, in one box
            // per hyper connection, so that a parked connection's task holds
            // the socket and its small waiting state only.
            let run = Box::pin(run_http1(io, builder, service, watch, parkable));
            let Some((parked, next)) = run.await else {
                return;
            };
            (io, service) = (parked, next);
            if io.has_unread() {
                // A request hyper read but did not start: resume at once.
                continue;
            }
            let Some(socket) = io.get_ref().parkable() else {
                return;
            };
            tracing::trace!(client = %watch.peer, "idle connection parked");
            let _parked = metrics.parked_connection();
            if !matches!(watch.wait(sniff::next_bytes(socket)).await, Some(Ok(true))) {
                return;
            }
        }
    }
}

/// One hyper HTTP/1.1 connection on `io`, until it closes (`None`) or is
/// ended for parking: then the I/O (with the bytes hyper read but did not
/// use) and the service come back.
async fn run_http1<S, Svc>(
    io: ConnIo<S>,
    builder: &http1::Builder,
    service: Svc,
    watch: &mut Watch,
    parkable: bool,
) -> Option<(ConnIo<S>, Svc)>
where
    S: Socket,
    Svc: HttpService<Incoming, ResBody = ConnBody, Error = Infallible> + Unpin,
{
    let mut conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let driven = watch
        .drive(Pin::new(&mut conn), |c| c.graceful_shutdown(), parkable)
        .await;
    watch.state.set_parking(false);
    if driven == Driven::Closed {
        return None;
    }
    // `None`: upgraded (and then ended as a tunnel).
    let parts = conn.into_parts()?;
    Some((parts.io.into_inner().parked(parts.read_buf), parts.service))
}

/// How a hyper connection's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driven {
    /// The connection is over (closed, dropped or failed).
    Closed,
    /// hyper ended at a request boundary and left the socket open.
    Parked,
}

/// What made a connection's task look up from hyper.
enum Event {
    Stopped,
    Evicted,
    Check,
}

/// What a connection follows besides its bytes: the shutdown phase, its
/// slot (eviction, idleness) and its deadlines.
struct Watch {
    phase: watch::Receiver<Phase>,
    state: Arc<ConnState>,
    settings: ConnSettings,
    peer: std::net::SocketAddr,
    gate: Gate,
}

impl Watch {
    /// Runs `fut` while the connection has no hyper connection (before its
    /// first bytes, or parked); `None` when the connection is to close
    /// first: stopped, evicted, or at its idle deadline.
    async fn wait<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        loop {
            let at = match self.state.expiry(&self.settings) {
                Expiry::At(at) => at,
                Expiry::Busy => Instant::now() + self.settings.idle,
            };
            tokio::select! {
                biased;
                out = fut.as_mut() => return Some(out),
                _ = self.phase.wait_for(|p| *p >= Phase::Stopped) => return None,
                () = self.state.evicted() => {
                    tracing::debug!(client = %self.peer, "idle connection closed to admit a new one");
                    return None;
                }
                () = tokio::time::sleep_until(at) => {
                    if self.state.is_idle() && Instant::now() >= at {
                        tracing::debug!(client = %self.peer, "idle timeout: connection closed");
                        return None;
                    }
                }
            }
        }
    }

    /// Drives hyper's connection `conn` (`shut` starts its graceful
    /// shutdown) until it ends, the connection is evicted or the drain ends
    /// it. When `parkable`, an HTTP/1.1 connection idle for [`PARK_DELAY`]
    /// at a request boundary is ended without closing its socket.
    async fn drive<C>(
        &mut self,
        mut conn: Pin<&mut C>,
        shut: fn(Pin<&mut C>),
        parkable: bool,
    ) -> Driven
    where
        C: Future<Output = hyper::Result<()>>,
    {
        let Watch {
            phase,
            state,
            settings,
            peer,
            gate,
        } = self;
        let mut timer = pin!(tokio::time::sleep_until(next_check(
            state, settings, parkable
        )));
        // Told to close at the idle deadline, or to end for parking.
        let (mut closing, mut parking) = (false, false);
        let result = loop {
            let event = {
                let events = pin!(async {
                    tokio::select! {
                        biased;
                        _ = phase.wait_for(|p| *p >= Phase::Stopped) => Event::Stopped,
                        () = state.evicted() => Event::Evicted,
                        () = timer.as_mut() => Event::Check,
                    }
                });
                tokio::select! {
                    biased;
                    r = conn.as_mut() => break Some(r),
                    e = gate.watch(events) => e,
                }
            };
            let now = Instant::now();
            match event {
                Event::Stopped => break None,
                Event::Evicted => {
                    tracing::debug!(client = %peer, "idle connection closed to admit a new one");
                    return Driven::Closed;
                }
                Event::Check if closing => {
                    // Still open IDLE_GRACE after GOAWAY (or half-way
                    // through a request head): drop it, unless a request came.
                    if state.is_idle() {
                        return Driven::Closed;
                    }
                    timer.as_mut().reset(now + IDLE_GRACE);
                }
                Event::Check => match plan(state, settings, parkable && !parking, now) {
                    Plan::Close => {
                        // HTTP/1.1 closes at once, HTTP/2 gets GOAWAY; a
                        // client that had not seen it yet is still served.
                        tracing::debug!(client = %peer, "idle timeout: connection closing");
                        shut(conn.as_mut());
                        closing = true;
                        timer.as_mut().reset(now + IDLE_GRACE);
                    }
                    Plan::Park(close_at) => {
                        // hyper is idle: it ends at once and leaves the
                        // socket open (see `ConnIo::poll_shutdown`).
                        state.set_parking(true);
                        shut(conn.as_mut());
                        parking = true;
                        timer.as_mut().reset(close_at);
                    }
                    Plan::CheckAt(at) => timer.as_mut().reset(at),
                },
            }
        };
        let result = match result {
            Some(r) => r,
            None => {
                if !parking {
                    shut(conn.as_mut());
                }
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = phase.wait_for(|p| *p == Phase::Cut) => {
                        tracing::debug!(client = %peer, "drain deadline: connection closed");
                        return Driven::Closed;
                    }
                }
            }
        };
        match result {
            Ok(()) if parking => Driven::Parked,
            Ok(()) => Driven::Closed,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
                Driven::Closed
            }
        }
    }
}

/// What to do at a connection's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The idle deadline passed.
    Close,
    /// Park it; check again at this instant if it is still parking then.
    Park(Instant),
    /// Nothing yet: check again then.
    CheckAt(Instant),
}

/// The next step of a connection at `now`: close at its idle deadline, park
/// it once idle for [`PARK_DELAY`] at a request boundary (if `parkable`),
/// else check again at the earlier of the two.
fn plan(state: &ConnState, settings: &ConnSettings, parkable: bool, now: Instant) -> Plan {
    // A request that comes meanwhile moves the deadline to `idle` after
    // it, never earlier than `now + idle`: checking by then sees it.
    let close_at = match state.expiry(settings) {
        Expiry::At(at) if at <= now => return Plan::Close,
        Expiry::At(at) => at.min(now + settings.idle),
        Expiry::Busy => now + settings.idle,
    };
    if !parkable {
        return Plan::CheckAt(close_at);
    }
    match state.park_at() {
        Some(at) if at <= now => Plan::Park(close_at),
        Some(at) => Plan::CheckAt(at.min(close_at)),
        // Busy, or half-way through a request: look again later.
        None => Plan::CheckAt((now + PARK_DELAY).min(close_at)),
    }
}

/// The first check of a hyper connection. It was started because bytes
/// arrived, so it is not parked before [`PARK_DELAY`] even when its last
/// response is older.
fn next_check(state: &ConnState, settings: &ConnSettings, parkable: bool) -> Instant {
    let now = Instant::now();
    match plan(state, settings, parkable, now) {
        Plan::Close => now,
        Plan::Park(close_at) => (now + PARK_DELAY).min(close_at),
        Plan::CheckAt(at) => at,
    }
}

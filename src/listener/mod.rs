//! Accept loop and per-connection serving: HTTP/1.1 and h2c on one port (or
//! HTTPS with ALPN `h2`/`http/1.1`), header limits, the header-read timeout,
//! a connection cap, and drain.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

mod h1scan;
mod h2guard;
mod io;
mod refuse;
mod service;
mod slots;
mod tls;

use io::ConnIo;
use refuse::Refusals;
use slots::{Expiry, Slot, Slots};

use crate::proxy::ConnInfo;
use crate::route::ConnSettings;
use crate::serving::Serving;

/// HTTP/2 PING interval: a client that stops acknowledging (it stopped
/// reading, or the path died) is closed [`PING_TIMEOUT`] later.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// hyper's HTTP/1 and HTTP/2 settings for one listener. The timer matters:
/// without one hyper silently disables its header-read timeout and PINGs.
fn http_builder(settings: &ConnSettings, max_headers: usize) -> auto::Builder<TokioExecutor> {
    let header_bytes = settings.max_header_bytes;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timer starts when a connection turns idle, so it is the
    // keep-alive timeout too; the slot's idle deadline is the same.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle)
        .max_buf_size(header_bytes.max(8192))
        .max_headers(max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The listener's settings and connection limit, read once when it starts.
fn settings_of(shared: &Serving, index: usize) -> (ConnSettings, usize) {
    let table = shared.routes.load();
    match table.listeners.get(index) {
        Some(l) => (l.conn, l.max_connections),
        None => (ConnSettings::default(), shared.limits.max_connections),
    }
}

/// Where the process is in its shutdown. The order matters: connections shut
/// down gracefully at [`Phase::Stopped`] and are dropped at [`Phase::Cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Normal service.
    Serving,
    /// Shutdown began: `/ready` is 503 but listeners still accept, so clients
    /// that have not yet seen the endpoint leave are served. Every HTTP/1.1
    /// answer carries `Connection: close` (see `proxy::handle`), so busy
    /// clients leave between requests; idle connections are left alone,
    /// since closing one under a client that is just sending would lose the
    /// request. New HTTP/1.1 connections serve one request.
    Draining,
    /// Listeners closed: idle HTTP/1.1 connections close, HTTP/2 ones get
    /// GOAWAY, and every connection finishes what is in flight.
    Stopped,
    /// The drain deadline passed: remaining connections are dropped.
    Cut,
}

/// Accepts until the phase reaches [`Phase::Stopped`], then returns;
/// connections already accepted drain on their own tasks (see
/// [`serve_connection`]). At the connection limit the oldest idle
/// connection makes room; when none is idle the new one is refused at once.
pub async fn accept_loop(
    listener: TcpListener,
    index: usize,
    shared: Arc<Serving>,
    mut phase: watch::Receiver<Phase>,
) {
    let (settings, max_connections) = settings_of(&shared, index);
    let max_headers = shared.limits.max_headers;
    let builders = Arc::new(Builders::new(http_builder(&settings, max_headers)));
    // While draining, an HTTP/1.1 client gets one answer and `Connection:
    // close`, so it reconnects, by then most likely to another endpoint.
    let mut closing = http_builder(&settings, max_headers);
    closing.http1().keep_alive(false);
    let closing = Arc::new(Builders::new(closing));
    let slots = Slots::new(max_connections);
    let mut refusals = Refusals::new();
    let stopped = |p: &Phase| *p >= Phase::Stopped;
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = phase.wait_for(stopped) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.admit() else {
            let table = shared.routes.load();
            let listener = table.listeners.get(index);
            refusals.refuse(stream, peer, listener.is_some_and(|l| l.tls.is_some()));
            if let Some(refused) = refusals.count_and_report() {
                let name = listener.map_or("", |l| &*l.name);
                tracing::warn!(
                    listener = name,
                    refused,
                    max_connections,
                    "listener full, every connection busy: new connections refused"
                );
            }
            continue;
        };
        let mut conn = ConnInfo::new(peer, index, "http");
        conn.local_port = local_port;
        let accepted_in = *phase.borrow();
        let builders = match accepted_in {
            Phase::Serving => Arc::clone(&builders),
            _ => Arc::clone(&closing),
        };
        let (shared, phase) = (Arc::clone(&shared), phase.clone());
        tokio::spawn(async move {
            let accepted = Accepted {
                conn,
                phase,
                slot,
                settings,
            };
            accept_connection(stream, accepted, shared, &builders).await;
        });
    }
}

/// The builder per negotiated ALPN: TLS clients said which protocol they
/// speak, so only cleartext (and TLS without ALPN) connections are sniffed.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(auto: auto::Builder<TokioExecutor>) -> Self {
        Builders {
            http1: auto.clone().http1_only(),
            h2: auto.clone().http2_only(),
            auto,
        }
    }

    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.h2,
            Some(b"http/1.1") => &self.http1,
            _ => &self.auto,
        }
    }
}

/// A connection as accepted: where it came from, the shutdown phase to
/// follow, its slot (dropped with it) and the listener's settings.
struct Accepted {
    conn: ConnInfo,
    phase: watch::Receiver<Phase>,
    slot: Slot,
    settings: ConnSettings,
}

/// Does the TLS handshake if the listener has TLS in the live table (so a new
/// connection gets the newest certificates), then serves the connection.
async fn accept_connection(
    stream: TcpStream,
    mut accepted: Accepted,
    shared: Arc<Serving>,
    builders: &Builders,
) {
    let _ = stream.set_nodelay(true);
    let _open = shared.metrics.downstream_connection();
    let (tls, name) = {
        let table = shared.routes.load();
        match table.listeners.get(accepted.conn.listener) {
            Some(l) => (l.tls.clone(), l.name.clone()),
            None => (None, Box::from("")),
        }
    };
    let Some(config) = tls else {
        return serve_connection(stream, accepted, shared, &builders.auto).await;
    };
    // Certificates from Gateway Secrets (controller mode) come first.
    let config = shared.certificates.config_for(&name, config);
    let timeout = shared.limits.header_read_timeout;
    let peer = accepted.conn.peer;
    let handshake = tls::handshake(stream, config, timeout, peer, &name, &shared.metrics);
    let mut phase = accepted.phase.clone();
    let stream = tokio::select! {
        s = handshake => s,
        _ = phase.wait_for(|p| *p == Phase::Cut) => None,
    };
    let Some(stream) = stream else { return };
    accepted.conn.proto = "https";
    let builder = builders.for_alpn(stream.get_ref().1.alpn_protocol());
    serve_connection(stream, accepted, shared, builder).await;
}

/// Serves one connection until it closes: on its own when the client or
/// hyper ends it, at its idle deadline (see [`Expiry`]), or at once when its
/// slot went to a newer connection. At [`Phase::Stopped`] it finishes the
/// request in flight, then closes politely (HTTP/1.1 `Connection: close`,
/// HTTP/2 GOAWAY); at [`Phase::Cut`] (or when the phase sender is gone) it
/// is dropped. Holding `phase` is what tells the app a connection is still
/// open.
async fn serve_connection<S>(
    stream: S,
    accepted: Accepted,
    shared: Arc<Serving>,
    builder: &auto::Builder<TokioExecutor>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        conn,
        mut phase,
        slot,
        settings,
    } = accepted;
    let stream = ConnIo::new(
        stream,
        settings.send_idle,
        settings.max_header_bytes,
        Arc::clone(&slot.state),
    );
    let peer = conn.peer;
    let state = Arc::clone(&slot.state);
    let limits = service::HeadLimits {
        max_target: settings.max_request_target,
        max_header_bytes: settings.max_header_bytes,
    };
    // The request's future is boxed: it holds the whole pipeline (several
    // KiB), and hyper moves it by value, into the HTTP/1.1 dispatcher and on
    // every HTTP/2 stream into a spawned task, copying it each time (6
    // copies, about 5,000 instructions per h2c request; one allocation
    // costs about 200).
    let service = service_fn(move |req| {
        let (shared, conn, state) = (Arc::clone(&shared), conn.clone(), Arc::clone(&state));
        Box::pin(service::serve(shared, conn, state, limits, req))
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let state = &slot.state;
    // The first check comes at the earlier deadline; each check re-arms it.
    let idle = tokio::time::sleep(settings.first_request.min(settings.idle));
    tokio::pin!(idle);
    // Once the idle deadline passed: the connection was told to close.
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = connection.as_mut() => break Some(r),
            _ = phase.wait_for(|p| *p >= Phase::Stopped) => break None,
            () = state.evicted() => {
                tracing::debug!(client = %peer, "idle connection closed to admit a new one");
                return;
            }
            () = idle.as_mut() => {
                let now = Instant::now();
                if closing {
                    // Still open IDLE_GRACE after GOAWAY (or half-way through
                    // a request head): drop it, unless a request came.
                    if state.is_idle() {
                        return;
                    }
                    idle.as_mut().reset(now + IDLE_GRACE);
                    continue;
                }
                match state.expiry(&settings) {
                    Expiry::Busy => idle.as_mut().reset(now + settings.idle),
                    Expiry::At(at) if at > now => idle.as_mut().reset(at),
                    Expiry::At(_) => {
                        // HTTP/1.1 closes at once, HTTP/2 gets GOAWAY; a
                        // client that had not seen it yet is still served.
                        tracing::debug!(client = %peer, "idle timeout: connection closing");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        idle.as_mut().reset(now + IDLE_GRACE);
                    }
                }
            }
        }
    };
    let result = match result {
        Some(r) => r,
        None => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                r = connection.as_mut() => r,
                _ = phase.wait_for(|p| *p == Phase::Cut) => {
                    tracing::debug!(client = %peer, "drain deadline: connection closed");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// How long an idle connection told to close may take to do so.
const IDLE_GRACE: Duration = Duration::from_secs(1);

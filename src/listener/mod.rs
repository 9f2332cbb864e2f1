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
use tokio::sync::{watch, Semaphore};

mod preface;
mod tls;

use crate::app::Shared;
use crate::proxy::{self, ConnInfo};

/// Limits applied to every downstream connection.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Most request headers (HTTP/1.1).
    pub max_headers: usize,
    /// Most open connections per listener; more wait in the kernel backlog.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
        }
    }
}

/// hyper's HTTP/1 and HTTP/2 settings from the limits. The timer matters:
/// without one hyper silently disables its header-read timeout.
pub fn http_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
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
/// [`serve_connection`]).
pub async fn accept_loop(
    listener: TcpListener,
    index: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let builders = Arc::new(Builders::new(http_builder(&shared.limits)));
    // While draining, an HTTP/1.1 client gets one answer and `Connection:
    // close`, so it reconnects, by then most likely to another endpoint.
    let mut closing = http_builder(&shared.limits);
    closing.http1().keep_alive(false);
    let closing = Arc::new(Builders::new(closing));
    let max_connections = shared
        .routes
        .load()
        .listeners
        .get(index)
        .map_or(shared.limits.max_connections, |l| l.max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let stopped = |p: &Phase| *p >= Phase::Stopped;
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = phase.wait_for(stopped) => return,
        };
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
        let conn = ConnInfo::new(peer, index, "http");
        let accepted_in = *phase.borrow();
        let builders = match accepted_in {
            Phase::Serving => Arc::clone(&builders),
            _ => Arc::clone(&closing),
        };
        let (shared, phase) = (Arc::clone(&shared), phase.clone());
        tokio::spawn(async move {
            let accepted = Accepted { conn, phase };
            accept_connection(stream, accepted, shared, &builders).await;
            drop(permit);
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

/// A connection as accepted: where it came from, and the shutdown phase to
/// follow.
struct Accepted {
    conn: ConnInfo,
    phase: watch::Receiver<Phase>,
}

/// Does the TLS handshake if the listener has TLS in the live table (so a new
/// connection gets the newest certificates), then serves the connection.
async fn accept_connection(
    stream: TcpStream,
    mut accepted: Accepted,
    shared: Arc<Shared>,
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

/// Serves one connection until it closes. At [`Phase::Stopped`] it finishes
/// the request in flight, then closes politely (HTTP/1.1 `Connection:
/// close`, HTTP/2 GOAWAY); at [`Phase::Cut`] (or when the phase sender is
/// gone) it is dropped. Holding `phase` is what tells the app a connection
/// is still open.
async fn serve_connection<S>(
    stream: S,
    accepted: Accepted,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted { conn, mut phase } = accepted;
    let stream = preface::FirstBytesDeadline::new(stream, shared.limits.header_read_timeout);
    let peer = conn.peer;
    let service = service_fn(move |req| proxy::handle(Arc::clone(&shared), conn.clone(), req));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => Some(r),
        _ = phase.wait_for(|p| *p >= Phase::Stopped) => None,
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

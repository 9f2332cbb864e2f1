//! Accept loop and per-connection serving: HTTP/1.1 and h2c on one port (or
//! HTTPS with ALPN `h2`/`http/1.1`), header limits, the header-read timeout,
//! a connection cap, idle HTTP/1.1 connections parked without hyper, and
//! drain.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod conn;
mod gate;
mod h1scan;
mod h2guard;
mod io;
mod refuse;
mod service;
mod slots;
mod sniff;
mod tls;

use refuse::Refusals;
use slots::{Slot, Slots};
use sniff::Protocol;

use crate::proxy::ConnInfo;
use crate::route::ConnSettings;
use crate::serving::Serving;

/// HTTP/2 PING interval: a client that stops acknowledging (it stopped
/// reading, or the path died) is closed [`PING_TIMEOUT`] later.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// hyper's HTTP/1.1 and HTTP/2 settings for one listener. The timer
/// matters: without one hyper silently disables its header-read timeout and
/// PINGs.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    /// The builders of a listener; without `keep_alive`, an HTTP/1.1
    /// connection serves one request.
    fn new(settings: &ConnSettings, max_headers: usize, keep_alive: bool) -> Builders {
        let header_bytes = settings.max_header_bytes;
        let mut http1 = http1::Builder::new();
        // hyper's header timer starts when a connection turns idle, so it is
        // the keep-alive timeout too; the slot's idle deadline is the same.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(settings.idle)
            .max_buf_size(header_bytes.max(8192))
            .max_headers(max_headers)
            .keep_alive(keep_alive);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX));
        Builders { http1, http2 }
    }
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
/// [`conn::serve`]). At the connection limit the oldest idle
/// connection makes room; when none is idle the new one is refused at once.
pub async fn accept_loop(
    listener: TcpListener,
    index: usize,
    shared: Arc<Serving>,
    mut phase: watch::Receiver<Phase>,
) {
    let (settings, max_connections) = settings_of(&shared, index);
    let max_headers = shared.limits.max_headers;
    let builders = Arc::new(Builders::new(&settings, max_headers, true));
    // While draining, an HTTP/1.1 client gets one answer and `Connection:
    // close`, so it reconnects, by then most likely to another endpoint.
    let closing = Arc::new(Builders::new(&settings, max_headers, false));
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
        let accepted = Accepted {
            conn,
            phase: phase.clone(),
            slot,
            settings,
        };
        tokio::spawn(accept_connection(
            stream,
            accepted,
            Arc::clone(&shared),
            builders,
        ));
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
/// The connection's task is this future: a plain `fn` returning an `async`
/// block, since an `async fn` would hold a second copy of its arguments for
/// the connection's whole life.
#[allow(clippy::manual_async_fn)] // see above: no second copy of the arguments
fn accept_connection(
    stream: TcpStream,
    accepted: Accepted,
    shared: Arc<Serving>,
    builders: Arc<Builders>,
) -> impl std::future::Future<Output = ()> {
    async move {
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
            return conn::serve(stream, None, accepted, shared, &builders).await;
        };
        // Boxed: the TLS handshake and the TLS stream are large (the stream
        // 1.2 KiB), and a task is as large as its largest state (a parked
        // HTTP/1.1 connection's task included).
        Box::pin(serve_tls(stream, config, name, accepted, shared, &builders)).await;
    }
}

/// A TLS connection: the handshake with `config` (the certificates of
/// listener `name`), then the connection served as ALPN said.
async fn serve_tls(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    name: Box<str>,
    mut accepted: Accepted,
    shared: Arc<Serving>,
    builders: &Builders,
) {
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
    let protocol = Protocol::from_alpn(stream.get_ref().1.alpn_protocol());
    conn::serve(stream, Some(protocol), accepted, shared, builders).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked connection keeps its task: the task is as large as the
    /// largest state of the connection's future, so hyper's connections,
    /// the futures driving them and the TLS path are boxed, not held in it,
    /// and no `async fn` on the way copies its arguments a second time.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let yaml = "listeners:\n  - name: a\n    address: \"127.0.0.1:0\"\ngroups:\n  g: {endpoints: [\"127.0.0.1:9\"]}\nroutes:\n  - name: r\n    rules:\n      - name: all\n        backends: [{group: g}]\n";
        let config = crate::config::parse_yaml(yaml).expect("a valid config");
        let registry = crate::route::Inherited::default();
        let table = crate::compile::compile(&config, &registry, 1).expect("compiles");
        let shared = Arc::new(Serving {
            routes: Arc::new(arc_swap::ArcSwap::from_pointee(table)),
            draining: std::sync::atomic::AtomicBool::new(false),
            limits: crate::serving::ConnLimits::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(false)),
            certificates: Arc::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let (_tx, phase) = watch::channel(Phase::Serving);
        let settings = ConnSettings::default();
        let accepted = Accepted {
            conn: ConnInfo::new(peer, 0, "http"),
            phase,
            slot: Slots::new(1).admit().expect("a slot"),
            settings,
        };
        let builders = Arc::new(Builders::new(&settings, 100, true));
        let task = accept_connection(stream, accepted, shared, builders);
        // 1.6 KiB in a debug build; it was 11.5 KiB with the TLS stream
        // and h2's connection in it, 3.0 KiB with the driving futures, the
        // `peek` futures and the `async fn` argument copies.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "a connection task takes {size} bytes");
    }
}

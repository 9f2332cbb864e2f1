//! Tools for the resilience tests: an upstream whose behaviour the test flips
//! at runtime (status, delay, reset before the head, truncated body, held
//! responses, killed and restarted), config builders, and a client that
//! sends any body.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The test's own request id, recorded by every backend that sees it.
pub const ID: &str = "x-test-id";
/// Per-request override of the backend's delay before the head, in ms.
pub const DELAY: &str = "x-test-delay-ms";
/// Per-request override of the backend's status.
pub const STATUS: &str = "x-test-status";

/// What a backend does with a request (other than `/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answer `status` after `delay`, body = the backend's name.
    Normal = 0,
    /// Read the request, then close the connection without a response.
    Reset = 1,
    /// Send a 200 head promising 1000 bytes, 10 bytes, then close.
    Truncate = 2,
    /// A 200 whose body is `drip-` four times, 1.5 s apart.
    Drip = 3,
}

/// One request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: Option<String>,
    pub body_len: usize,
    pub at: std::time::Instant,
}

struct Inner {
    name: &'static str,
    status: AtomicU16,
    delay_ms: AtomicU64,
    mode: AtomicU8,
    health: AtomicU16,
    /// `true` = responses flow; `false` = every request waits (after it is
    /// recorded) until the gate opens.
    gate: watch::Sender<bool>,
    hits: Mutex<Vec<Hit>>,
}

/// A controllable upstream (HTTP/1.1 and h2c). `/healthz` answers the health
/// status and is not recorded.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    /// Dropping the sender kills the listener and every open connection.
    alive: Mutex<Option<watch::Sender<()>>>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            name,
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            mode: AtomicU8::new(Mode::Normal as u8),
            health: AtomicU16::new(200),
            gate: watch::Sender::new(true),
            hits: Mutex::new(Vec::new()),
        });
        let b = Backend {
            name,
            addr,
            inner,
            alive: Mutex::new(None),
        };
        b.serve(listener);
        b
    }

    fn serve(&self, listener: TcpListener) {
        let (alive, mut killed) = watch::channel(());
        *self.alive.lock().unwrap() = Some(alive);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    _ = killed.changed() => return,
                };
                let inner = Arc::clone(&inner);
                let mut conn_killed = killed.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| respond(Arc::clone(&inner), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_killed.changed() => {}
                    }
                });
            }
        });
    }

    /// Status of every request from now on.
    pub fn set_status(&self, status: u16) {
        self.inner.status.store(status, Ordering::Relaxed);
    }

    /// Delay before the response head from now on.
    pub fn set_delay(&self, d: Duration) {
        self.inner
            .delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_mode(&self, m: Mode) {
        self.inner.mode.store(m as u8, Ordering::Relaxed);
    }

    /// Status of `/healthz` from now on.
    pub fn set_health(&self, status: u16) {
        self.inner.health.store(status, Ordering::Relaxed);
    }

    /// Requests wait (after being recorded) until [`Backend::release`].
    pub fn hold(&self) {
        self.inner.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.inner.gate.send_replace(true);
    }

    /// Requests seen so far (health checks excluded).
    pub fn count(&self) -> usize {
        self.inner.hits.lock().unwrap().len()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// The test ids seen so far.
    pub fn ids(&self) -> Vec<String> {
        self.hits().into_iter().filter_map(|h| h.id).collect()
    }

    /// The process dies: the port refuses connections and open ones close.
    pub fn kill(&self) {
        self.alive.lock().unwrap().take();
    }

    /// Listens again on the same address.
    pub async fn restart(&self) {
        for _ in 0..200 {
            if let Ok(l) = TcpListener::bind(self.addr).await {
                self.serve(l);
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("cannot rebind {}", self.addr);
    }
}

async fn respond(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<Reply>, std::io::Error> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/healthz" {
        let status = inner.health.load(Ordering::Relaxed);
        return Ok(reply(status, Bytes::new()));
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body_len = match body.collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => return Err(std::io::Error::other("request body failed")),
    };
    inner.hits.lock().unwrap().push(Hit {
        id: header(ID),
        body_len,
        at: std::time::Instant::now(),
    });
    let mut gate = inner.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let delay = header(DELAY)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| inner.delay_ms.load(Ordering::Relaxed));
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = header(STATUS)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| inner.status.load(Ordering::Relaxed));
    match inner.mode.load(Ordering::Relaxed) {
        1 => Err(std::io::Error::other("reset by the test")),
        2 => {
            let mut resp = Response::new(Reply::Truncated(0, None));
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, 1000.into());
            Ok(resp)
        }
        3 => Ok(Response::new(Reply::Drip(0, None))),
        _ => Ok(reply(status, Bytes::from_static(inner.name.as_bytes()))),
    }
}

fn reply(status: u16, body: Bytes) -> Response<Reply> {
    let mut resp = Response::new(Reply::Full(Some(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp
}

/// A backend's response body: whole, or cut after 10 bytes (and a pause, so
/// the head and the 10 bytes are on the wire before the connection dies).
pub enum Reply {
    Full(Option<Bytes>),
    Truncated(u8, Option<Pin<Box<tokio::time::Sleep>>>),
    /// Frames sent so far, and the pause before the next.
    Drip(u8, Option<Pin<Box<tokio::time::Sleep>>>),
}

impl Body for Reply {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Reply::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Reply::Truncated(stage, pause) => {
                if *stage == 0 {
                    *stage = 1;
                    *pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))));
                }
                if let Some(p) = pause.as_mut() {
                    if p.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Err(std::io::Error::other("cut"))))
            }
            Reply::Drip(sent, pause) => {
                if *sent == 4 {
                    return Poll::Ready(None);
                }
                let p = pause.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(Duration::from_millis(1500)))
                });
                if p.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *pause = None;
                *sent += 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"drip-")))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Reply::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Reply::Full(None) => SizeHint::with_exact(0),
            Reply::Truncated(..) | Reply::Drip(..) => SizeHint::default(),
        }
    }
}

/// A port nobody listens on.
pub fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One group's YAML: endpoints plus extra lines (flow style, e.g.
/// `outlier: {enabled: false}`).
pub fn group(name: &str, endpoints: &[SocketAddr], extra: &[&str]) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    let mut y = format!("  {name}:\n    endpoints: [{}]\n", eps.join(", "));
    for line in extra {
        y.push_str(&format!("    {line}\n"));
    }
    y
}

/// One rule's YAML: `backends` in flow style plus extra lines.
pub fn rule(name: &str, backends: &str, extra: &[&str]) -> String {
    let mut y = format!("      - name: {name}\n        backends: {backends}\n");
    for line in extra {
        y.push_str(&format!("        {line}\n"));
    }
    y
}

/// Listener `public` on port 0 (plus extra lines), the groups, one route
/// `web` with the rules.
pub fn config(listener: &[&str], groups: &[String], rules: &[String]) -> String {
    let mut y = String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n");
    for line in listener {
        y.push_str(&format!("    {line}\n"));
    }
    y.push_str("groups:\n");
    for g in groups {
        y.push_str(g);
    }
    y.push_str("routes:\n  - name: web\n    rules:\n");
    for r in rules {
        y.push_str(r);
    }
    y
}

pub type TestClient = Client<HttpConnector, BoxBody<Bytes, Infallible>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response with its body read (or the error that cut it).
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Result<String, String>,
}

impl Got {
    /// The body; panics if reading it failed.
    pub fn text(&self) -> &str {
        self.body.as_deref().expect("response body")
    }
}

/// Sends a request; panics only if no response head arrives.
pub async fn call(
    c: &TestClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: BoxBody<Bytes, Infallible>,
) -> Got {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(body).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{url}: no response: {e:?}"));
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let headers = parts.headers;
    let body = match body.collect().await {
        Ok(b) => Ok(String::from_utf8_lossy(&b.to_bytes()).into_owned()),
        Err(e) => Err(format!("{e:?}")),
    };
    Got {
        status,
        headers,
        body,
    }
}

pub fn empty() -> BoxBody<Bytes, Infallible> {
    Full::new(Bytes::new()).boxed()
}

/// `len` bytes with a known length (sent with `Content-Length`).
pub fn sized(len: usize) -> BoxBody<Bytes, Infallible> {
    Full::new(Bytes::from(vec![b'b'; len])).boxed()
}

/// `len` bytes in 8 KiB frames with no length (sent chunked).
pub fn chunked(len: usize) -> BoxBody<Bytes, Infallible> {
    Chunked(len).boxed()
}

struct Chunked(usize);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.0 == 0 {
            return Poll::Ready(None);
        }
        let n = this.0.min(8192);
        this.0 -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'c'; n])))))
    }
}

pub async fn get(c: &TestClient, url: &str) -> Got {
    call(c, Method::GET, url, &[], empty()).await
}

/// GET with the test id header.
pub async fn get_id(c: &TestClient, url: &str, id: &str) -> Got {
    call(c, Method::GET, url, &[(ID, id)], empty()).await
}

/// How many times each id appears, over all `backends`: the attempts each
/// request cost.
pub fn attempts_by_id(backends: &[&Backend]) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for b in backends {
        for id in b.ids() {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

/// The shared state of endpoint `addr` in group `group` of the live table.
pub fn endpoint_state(
    app: &cutover::reload::Tables,
    group: &str,
    addr: SocketAddr,
) -> Arc<cutover::upstream::EndpointState> {
    let table = app.routes.load();
    let g = table
        .groups
        .iter()
        .find(|g| &*g.name == group)
        .expect("group");
    let address = addr.to_string();
    let e = g
        .endpoints
        .iter()
        .find(|e| *e.state.address == *address)
        .expect("endpoint");
    Arc::clone(&e.state)
}

/// Whether `addr` of `group` is inside an ejection now.
pub fn ejected(app: &cutover::reload::Tables, group: &str, addr: SocketAddr) -> bool {
    endpoint_state(app, group, addr)
        .outlier
        .is_ejected(cutover::clock::now_ms())
}

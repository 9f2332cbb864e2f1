//! Test support: real hyper upstreams on port 0 that record what they receive,
//! the proxy itself on port 0, and HTTP/1.1 and h2c clients.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cutover::admin::AdminOptions;
use cutover::app::{App, Options};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// The first 64 KiB of the body.
    pub body: Bytes,
}

/// A running upstream that answers `<name>` and records requests.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Starts an upstream that answers 200 with body `name` and header
/// `x-upstream: name`. It drains and counts request bodies (streaming, not
/// buffering them). `GET /linger` answers after 800 ms (a request in flight).
pub async fn upstream(name: &'static str) -> Upstream {
    upstream_at(name, "127.0.0.1:0".parse().unwrap()).await.0
}

/// [`upstream`] on `addr` (e.g. a pod's `127.0.0.3:port`); the handle stops
/// its accept loop (a pod gone: new connections are refused).
pub async fn upstream_at(
    name: &'static str,
    addr: SocketAddr,
) -> (Upstream, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let up = Upstream {
        name,
        addr,
        seen: Arc::clone(&seen),
    };
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            let service = service_fn(move |req: Request<Incoming>| {
                let seen = Arc::clone(&seen);
                async move {
                    let (parts, mut body) = req.into_parts();
                    let (mut body_len, mut head) = (0, Vec::new());
                    while let Some(frame) = body.frame().await {
                        let Ok(f) = frame else { break };
                        let data = f.data_ref().map_or(&[][..], |d| &d[..]);
                        body_len += data.len();
                        let room = (64 * 1024usize).saturating_sub(head.len());
                        head.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    let linger = parts.uri.path() == "/linger";
                    seen.lock().unwrap().push(Seen {
                        method: parts.method,
                        uri: parts.uri,
                        version: parts.version,
                        headers: parts.headers,
                        body_len,
                        body: Bytes::from(head),
                    });
                    if linger {
                        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                    }
                    let mut resp = Response::new(Full::new(Bytes::from(name)));
                    resp.headers_mut()
                        .insert("x-upstream", name.parse().unwrap());
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (up, accept)
}

/// How the proxy under test starts: its config and process options. The
/// one launcher: every area's test proxy is built here.
pub struct Launch {
    config: cutover::config::Config,
    options: Options,
}

/// Starts building a proxy from YAML; its first listener must be named
/// `public` and use address `127.0.0.1:0`.
pub fn launch(yaml: &str) -> Launch {
    let config = cutover::config::parse_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    Launch::config(config)
}

impl Launch {
    /// From a parsed config (e.g. one loaded from Gateway API documents).
    pub fn config(config: cutover::config::Config) -> Launch {
        Launch {
            config,
            options: Options::default(),
        }
    }

    /// With the admin listener on 127.0.0.1:0; `token` guards the API.
    pub fn admin(mut self, token: Option<&str>) -> Launch {
        self.options.admin = Some(AdminOptions {
            address: "127.0.0.1:0".parse().unwrap(),
            token: token.map(str::to_string),
        });
        self
    }

    /// With any other process option (config file, state dir, DNS, limits).
    pub fn with(mut self, set: impl FnOnce(&mut Options)) -> Launch {
        set(&mut self.options);
        self
    }

    /// Binds and serves on a task until [`Proxy::stop`] (or drop).
    pub async fn start(self) -> Proxy {
        let app = App::start(&self.config, self.options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = app.local_addr("public").expect("a listener named public");
        let admin = app.local_addr("admin");
        let (app_tables, serving, control) = (app.tables(), app.serving(), app.control());
        let (tx, done) = serve(app);
        Proxy {
            addr,
            admin,
            app: app_tables,
            serving,
            control,
            stop: Some(tx),
            done,
        }
    }
}

/// The proxy under test.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin listener, if launched with one.
    pub admin: Option<SocketAddr>,
    /// The table bookkeeping (publish, the live table, reload errors).
    pub app: Arc<cutover::reload::Tables>,
    /// The drain flag, limits and metrics.
    pub serving: Arc<cutover::serving::Serving>,
    /// The rollout controller.
    pub control: Arc<cutover::rollout::Control>,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// `http://addr`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://admin` + `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("launched with admin"))
    }

    /// Calls the admin API; status and JSON (`null` when not JSON).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(self.admin_url(path))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let got = send(&http1_client(), req).await;
        let v = serde_json::from_str(&got.body).unwrap_or(serde_json::Value::Null);
        (got.status, v)
    }

    /// Starts graceful shutdown.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits (at most 10 s) for the drain to finish.
    pub async fn shut_down(mut self) {
        self.stop();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.done).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `app` on a task until the returned sender fires (or is dropped);
/// the handle ends when it has drained.
pub fn serve(app: App) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(app.serve(async {
        let _ = rx.await;
    }));
    (tx, done)
}

/// Starts the proxy from YAML (see [`launch`] for more options).
pub async fn proxy(yaml: &str) -> Proxy {
    launch(yaml).start().await
}

/// Waits until `ok` holds, polling every 2 ms; fails the test naming
/// `what` after `limit`. The one wait-until of the suite.
pub async fn until(what: &str, limit: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released): for processes that
/// take a port on their command line.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-route config: `rules_yaml` is the YAML list under `rules:`, indented
/// by 6 spaces; groups are `(name, upstream)` pairs, one endpoint each.
pub fn config(groups: &[(&str, &Upstream)], rules_yaml: &str) -> String {
    let at: Vec<(&str, SocketAddr)> = groups.iter().map(|(n, up)| (*n, up.addr)).collect();
    config_at(&at, rules_yaml)
}

/// [`config`] for upstreams of the tests' own kinds: groups are `(name,
/// address)` pairs.
pub fn config_at(groups: &[(&str, SocketAddr)], rules_yaml: &str) -> String {
    let mut y =
        String::from("listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n");
    for (name, addr) in groups {
        y.push_str(&format!("  {name}:\n    endpoints: [\"{addr}\"]\n"));
    }
    y.push_str("routes:\n  - name: web\n    rules:\n");
    y.push_str(rules_yaml);
    y
}

/// Keep-alive HTTP/1.1 client.
pub fn http1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(nodelay_connector())
}

/// h2c (prior knowledge) client.
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(nodelay_connector())
}

/// A connector whose sockets send at once, as real clients' do: with
/// Nagle on, an h2 client's small frames after the first wait for the
/// proxy's delayed ACK (40 ms).
fn nodelay_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

/// A response with its body read.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// GET `url` with extra headers.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends a request and reads the whole response.
pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Got {
    let resp = client.request(req).await.expect("request failed");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body failed").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Writes raw bytes on a fresh connection and reads until the peer closes
/// (or 3 s pass): for requests no well-behaved client would send.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory; `tag` names it for whoever finds it left over.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cutover-e2e-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `name` atomically (a hidden temp file, then a rename), as
    /// deploy tools and controllers do, so a watcher never reads half a file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the tool a test drives is installed. Without it the test says
/// SKIPPED and returns, except under `CUTOVER_REQUIRE_ALL=1` (set by
/// `.ci/run`, which installs every tool), where a skip is a failure.
pub fn tool_or_skip(test: &str, tool: &str, install: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("CUTOVER_REQUIRE_ALL").is_none_or(|v| v != "1"),
            "{test}: {tool} is not installed and CUTOVER_REQUIRE_ALL=1 forbids skipping ({install})"
        );
        eprintln!("SKIPPED {test}: {tool} not on PATH ({install})");
    }
    found
}

/// Runs `cmd` with `input` on its stdin; its output once it has exited.
pub fn run_with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `cutover check FILE` passes.
pub fn assert_check_passes(file: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

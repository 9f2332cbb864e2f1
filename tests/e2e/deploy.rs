//! Graceful drain of the real `cutover` binary on SIGTERM, under load:
//! `/ready` turns 503 at once, new connections are still served during the
//! drain delay (HTTP/1.1 answers say `Connection: close`), then refused;
//! every request in flight completes; idle keep-alive connections stay open
//! during the delay and are closed after it; the process exits 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{free_port, TempDir};

/// Drain delay given to the binary under test.
const DELAY: Duration = Duration::from_millis(1000);
/// How long the upstream holds the requests that are in flight at SIGTERM.
const SLOW_MS: u64 = 1500;

/// An upstream that answers `ok` after `?ms=N` milliseconds.
async fn slow_upstream() -> SocketAddr {
    slow_upstream_counted().await.0
}

/// [`slow_upstream`], with the number of requests it has received (answered
/// or not), to know when requests are in flight.
async fn slow_upstream_counted() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            let service = service_fn(move |req: Request<Incoming>| {
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    let ms = req
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("ms="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// The running binary; killed on drop if the test fails half way.
struct Cutover {
    child: Child,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Cutover {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Cutover {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(upstream: SocketAddr, data: SocketAddr, admin: SocketAddr) -> Cutover {
    start_with_delay(upstream, data, admin, DELAY)
}

fn start_with_delay(
    upstream: SocketAddr,
    data: SocketAddr,
    admin: SocketAddr,
    delay: Duration,
) -> Cutover {
    let listeners = format!("  - name: public\n    address: \"{data}\"\n");
    run_binary(scratch(data), &listeners, upstream, admin, delay)
}

/// A scratch directory for one binary under test.
fn scratch(data: SocketAddr) -> TempDir {
    TempDir::new(&format!("deploy-{}", data.port()))
}

/// Runs the binary on `listeners` (the YAML list items) in front of
/// `upstream`, its config and log in `dir`.
fn run_binary(
    dir: TempDir,
    listeners: &str,
    upstream: SocketAddr,
    admin: SocketAddr,
    delay: Duration,
) -> Cutover {
    let config = dir.path("cutover.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n{listeners}\
             groups:\n  app:\n    endpoints: [\"{upstream}\"]\n\
             routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n"
        ),
    )
    .unwrap();
    let stderr = dir.path("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--admin", &admin.to_string(), "--drain-delay"])
        .arg(format!("{}ms", delay.as_millis()))
        .args(["--drain-timeout", "10s", "--workers", "2"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start cutover");
    Cutover {
        child,
        stderr,
        _dir: dir,
    }
}

/// One request on a new HTTP/1.1 connection.
async fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<(StatusCode, Option<String>)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let connection = header(&resp, "connection");
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?;
    Ok((status, connection))
}

fn header<B>(resp: &Response<B>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An HTTP/1.1 keep-alive connection whose driver task ends when the server
/// closes it.
struct H1 {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    closed: JoinHandle<()>,
}

async fn h1(addr: SocketAddr) -> H1 {
    h1_on(TcpStream::connect(addr).await.unwrap()).await
}

/// [`h1`] over an open stream (TCP or TLS).
async fn h1_on<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> H1 {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let closed = tokio::spawn(async move {
        let _ = conn.await;
    });
    H1 { send, closed }
}

/// The outcome of one request: its status and `Connection` header, or the
/// error that ended it.
type Outcome = Result<(StatusCode, Option<String>), String>;

async fn h1_request(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> Outcome {
    let req = Request::get(path)
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let connection = header(&resp, "connection");
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, connection))
}

/// An h2c connection with `streams` requests in flight; the handle yields
/// their outcomes, then whether the connection closed cleanly.
async fn h2_in_flight(
    addr: SocketAddr,
    streams: usize,
    ms: u64,
) -> JoinHandle<(Vec<Outcome>, bool)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    h2_in_flight_on(stream, &format!("http://{addr}"), streams, ms).await
}

/// [`h2_in_flight`] over an open stream (TCP or TLS); `base` is the
/// scheme and authority of the requests.
async fn h2_in_flight_on<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    base: &str,
    streams: usize,
    ms: u64,
) -> JoinHandle<(Vec<Outcome>, bool)> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let mut requests = Vec::new();
    for _ in 0..streams {
        let mut send = send.clone();
        let uri = format!("{base}/slow?ms={ms}");
        requests.push(tokio::spawn(async move {
            let req = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, None))
        }));
    }
    drop(send);
    tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for r in requests {
            outcomes.push(r.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        // GOAWAY, then the server closes: the driver ends without error.
        let clean = matches!(
            tokio::time::timeout(Duration::from_secs(5), driver).await,
            Ok(Ok(Ok(())))
        );
        (outcomes, clean)
    })
}

async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((StatusCode::OK, _)) = get_once(admin, "/ready").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cutover did not become ready");
}

/// Idle keep-alive connections are not closed while the drain delay runs.
async fn assert_open_during_the_delay(idle: &mut [H1]) {
    for c in idle.iter_mut() {
        let early = tokio::time::timeout(Duration::from_millis(100), &mut c.closed).await;
        assert!(
            early.is_err(),
            "an idle keep-alive connection was closed during the drain delay"
        );
    }
}

/// Idle keep-alive connections are closed once the listeners close.
async fn assert_closed_after_the_delay(idle: Vec<H1>) {
    for c in idle {
        let closed = tokio::time::timeout(Duration::from_secs(2), c.closed).await;
        assert!(
            closed.is_ok(),
            "an idle keep-alive connection stayed open after the drain delay"
        );
    }
}

/// What did not end well among requests in flight across a drain: every
/// HTTP/1.1 one must get 200 with `Connection: close` and see its
/// connection end; every h2 stream 200, on a connection that ends cleanly.
async fn failures(
    h1: Vec<JoinHandle<(Outcome, bool)>>,
    h2: Vec<JoinHandle<(Vec<Outcome>, bool)>>,
    over: &str,
) -> Vec<String> {
    let mut failed = Vec::new();
    for h in h1 {
        let (got, closed) = h.await.unwrap();
        match got {
            Ok((StatusCode::OK, Some(c))) if c == "close" && closed => {}
            other => failed.push(format!("h1{over}: {other:?}, closed: {closed}")),
        }
    }
    for h in h2 {
        let (outcomes, clean) = h.await.unwrap();
        for o in outcomes {
            if !matches!(o, Ok((StatusCode::OK, _))) {
                failed.push(format!("h2{over}: {o:?}"));
            }
        }
        if !clean {
            failed.push(format!("h2{over}: the connection did not close cleanly"));
        }
    }
    failed
}

/// The exit status, once the process has drained (soon after the last
/// request in flight).
async fn wait_for_exit(proxy: &mut Cutover, sigterm: Instant) -> std::process::ExitStatus {
    let limit = DELAY + Duration::from_millis(SLOW_MS) + Duration::from_secs(3);
    loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            return s;
        }
        assert!(sigterm.elapsed() < limit, "no exit; log:\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill_term(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_fails_no_request_in_flight() {
    let upstream = slow_upstream().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut proxy = start(upstream, data, admin);
    wait_ready(admin).await;
    let slow = format!("/slow?ms={SLOW_MS}");

    // Idle keep-alive connections: one answered request each, then quiet.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = h1(data).await;
        let got = h1_request(&mut c.send, "/fast").await;
        assert!(matches!(got, Ok((StatusCode::OK, _))), "{got:?}");
        idle.push(c);
    }
    // Requests in flight at SIGTERM: 8 on their own HTTP/1.1 keep-alive
    // connections, 2 h2c connections with 4 streams each.
    let mut h1_flight = Vec::new();
    for _ in 0..8 {
        let mut c = h1(data).await;
        let path = slow.clone();
        h1_flight.push(tokio::spawn(async move {
            let got = h1_request(&mut c.send, &path).await;
            let closed = tokio::time::timeout(Duration::from_secs(5), c.closed)
                .await
                .is_ok();
            (got, closed)
        }));
    }
    let mut h2_flight = Vec::new();
    for _ in 0..2 {
        h2_flight.push(h2_in_flight(data, 4, SLOW_MS).await);
    }
    let in_flight = h1_flight.len() + 2 * 4;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pid = proxy.child.id();
    let sigterm = Instant::now();
    kill_term(pid);

    // /ready turns 503 at once (allow for signal delivery on a busy machine).
    let mut ready = None;
    while sigterm.elapsed() < Duration::from_millis(800) {
        if let Ok((status, _)) = get_once(admin, "/ready").await {
            ready = Some((status, sigterm.elapsed()));
            if status == StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ready_status, ready_after) = ready.expect("admin answers during the drain");
    assert_eq!(ready_status, StatusCode::SERVICE_UNAVAILABLE);

    // Idle keep-alive connections stay open during the delay: closing one
    // under a client that is just sending would lose its request. A request
    // on one is answered with `Connection: close`, then the server closes it.
    let mut idle = idle.into_iter();
    let mut reused = idle.next().unwrap();
    let got = h1_request(&mut reused.send, "/fast").await;
    assert!(
        matches!(&got, Ok((StatusCode::OK, Some(c))) if c == "close"),
        "an idle connection reused during the delay: {got:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), reused.closed).await;
    assert!(
        closed.is_ok(),
        "the server kept a connection it told to close"
    );
    let mut idle: Vec<H1> = idle.collect();
    assert_open_during_the_delay(&mut idle).await;

    // During the delay: new connections are still served, HTTP/1.1 with
    // `Connection: close`; an h2c one stays in flight across the stop.
    assert!(sigterm.elapsed() < DELAY, "too slow to test the delay");
    let during = get_once(data, "/fast").await;
    assert!(
        matches!(&during, Ok((StatusCode::OK, Some(c))) if c == "close"),
        "a new HTTP/1.1 connection during the delay: {during:?}"
    );
    let h2_late = h2_in_flight(data, 2, SLOW_MS).await;
    let in_flight_across_stop = in_flight + 2;

    // After the delay, while requests are still in flight: refused.
    let stop_check = DELAY + Duration::from_millis(250);
    tokio::time::sleep(stop_check.saturating_sub(sigterm.elapsed())).await;
    let refused = TcpStream::connect(data).await;
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "exited before the requests in flight finished"
    );
    assert!(
        refused.is_err(),
        "new connection accepted after the drain delay"
    );
    assert_closed_after_the_delay(idle).await;

    // Every request in flight completes with 200; HTTP/1.1 ones carry
    // `Connection: close` and their connections end; h2c ones see GOAWAY.
    h2_flight.push(h2_late);
    let failed = failures(h1_flight, h2_flight, "").await;

    // The process exits 0, soon after the last request.
    let status = wait_for_exit(&mut proxy, sigterm).await;
    let exited_after = sigterm.elapsed();
    let log = proxy.log();
    eprintln!(
        "drain: {in_flight_across_stop} requests in flight across the stop \
         ({in_flight} at SIGTERM), {} failed; /ready 503 after {ready_after:?}; exit {status} after {exited_after:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed: {failed:#?}\nlog:\n{log}");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    for line in [
        "SIGTERM: draining, /ready=503, still accepting for 1s",
        "stopped accepting;",
        "drained in",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
}

#[tokio::test]
async fn sigint_skips_the_drain_delay() {
    let upstream = slow_upstream().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut proxy = start(upstream, data, admin);
    wait_ready(admin).await;
    let start = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let log = proxy.log();
    assert!(exit.success(), "exit {exit}; log:\n{log}");
    assert!(
        start.elapsed() < DELAY,
        "SIGINT waited for the delay: {:?}",
        start.elapsed()
    );
    assert!(log.contains("SIGINT: draining, /ready=503"), "{log}");
}

#[tokio::test]
async fn a_second_sigterm_skips_the_rest_of_the_delay() {
    let upstream = slow_upstream().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut proxy = start_with_delay(upstream, data, admin, Duration::from_secs(30));
    wait_ready(admin).await;
    let start = Instant::now();
    kill_term(proxy.child.id());
    // Still serving during the (long) delay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = get_once(data, "/fast").await;
    assert!(matches!(got, Ok((StatusCode::OK, _))), "{got:?}");
    kill_term(proxy.child.id());
    let exit = loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let log = proxy.log();
    assert!(exit.success(), "exit {exit}; log:\n{log}");
    assert!(
        log.contains("SIGTERM: skipping the rest of the drain delay"),
        "{log}"
    );
}

// === TLS ===

/// A self-signed certificate for `localhost`, with its key, as PEM.
struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed() -> SelfSigned {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// A client config that trusts only `cert` and offers the one ALPN `alpn`.
fn tls_client(cert: &SelfSigned, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` as `localhost`, checked to have negotiated the
/// config's ALPN protocol.
async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        config.alpn_protocols.first().map(Vec::as_slice),
        "ALPN"
    );
    tls
}

/// The drain over TLS: HTTP/1.1 keep-alive and h2 connections over an HTTPS
/// listener, with requests in flight at SIGTERM, all complete; the busy
/// HTTP/1.1 ones answer with `Connection: close` and are closed, the idle
/// ones are closed, the h2 ones get GOAWAY and close cleanly once their
/// streams are done; the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_tls_connections_without_a_failed_request() {
    let (upstream, received) = slow_upstream_counted().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = scratch(data);
    let pair = self_signed();
    let (cert, key) = (dir.path("tls.crt"), dir.path("tls.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    let listeners = format!(
        "  - name: https\n    address: \"{data}\"\n    tls:\n      certificates:\n        \
         - {{ cert: \"{}\", key: \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let mut proxy = run_binary(dir, &listeners, upstream, admin, DELAY);
    wait_ready(admin).await;
    let http1 = tls_client(&pair, b"http/1.1");
    let h2 = tls_client(&pair, b"h2");
    let slow = format!("/slow?ms={SLOW_MS}");

    // Idle keep-alive TLS connections: one answered request each, then quiet.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = h1_on(tls_connect(data, &http1).await).await;
        let got = h1_request(&mut c.send, "/fast").await;
        assert!(matches!(got, Ok((StatusCode::OK, _))), "{got:?}");
        idle.push(c);
    }
    let before = received.load(Ordering::SeqCst);
    // In flight at SIGTERM: 4 requests on their own HTTP/1.1-over-TLS
    // keep-alive connections, 2 h2-over-TLS connections with 4 streams each.
    let mut h1_flight = Vec::new();
    for _ in 0..4 {
        let mut c = h1_on(tls_connect(data, &http1).await).await;
        let path = slow.clone();
        h1_flight.push(tokio::spawn(async move {
            let got = h1_request(&mut c.send, &path).await;
            let closed = tokio::time::timeout(Duration::from_secs(5), c.closed)
                .await
                .is_ok();
            (got, closed)
        }));
    }
    let mut h2_flight = Vec::new();
    let base = format!("https://localhost:{}", data.port());
    for _ in 0..2 {
        let tls = tls_connect(data, &h2).await;
        h2_flight.push(h2_in_flight_on(tls, &base, 4, SLOW_MS).await);
    }
    let (h1_in_flight, h2_in_flight) = (h1_flight.len(), 2 * 4);
    let in_flight = h1_in_flight + h2_in_flight;
    // Every one of them has reached the upstream (and waits there).
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < before + in_flight {
        assert!(
            Instant::now() < deadline,
            "requests did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let sigterm = Instant::now();
    kill_term(proxy.child.id());

    // Idle keep-alive TLS connections stay open during the delay.
    assert_open_during_the_delay(&mut idle).await;
    // A new TLS connection during the delay is served, once.
    assert!(sigterm.elapsed() < DELAY, "too slow to test the delay");
    let mut late = h1_on(tls_connect(data, &http1).await).await;
    let during = h1_request(&mut late.send, "/fast").await;
    assert!(
        matches!(&during, Ok((StatusCode::OK, Some(c))) if c == "close"),
        "a new HTTP/1.1 TLS connection during the delay: {during:?}"
    );

    // Once the listeners close (after the delay), so do idle connections.
    assert_closed_after_the_delay(idle).await;

    // Every request in flight completes with 200: HTTP/1.1 ones with
    // `Connection: close`, then their connections end; h2 ones on
    // connections that end cleanly (GOAWAY) after their streams.
    let failed = failures(h1_flight, h2_flight, " over TLS").await;
    let completed_after = sigterm.elapsed();

    let status = wait_for_exit(&mut proxy, sigterm).await;
    let exited_after = sigterm.elapsed();
    let log = proxy.log();
    eprintln!(
        "tls drain: {in_flight} requests in flight at SIGTERM ({h1_in_flight} HTTP/1.1, {h2_in_flight} h2, over TLS), \
         {} failed; in-flight done after {completed_after:?}; exit {status} after {exited_after:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "failed: {failed:#?}\nlog:\n{log}");
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("drained in"),
        "no \"drained in\" in the log:\n{log}"
    );
}

//! Heap allocations per proxied request, counted by a global allocator.
//!
//! In one process on one current-thread runtime: an HTTP/1.1 upstream
//! (hyper, 7-byte body), cutover with a 90/10 split between two groups on
//! that upstream, and a keep-alive client. It counts allocations (and bytes)
//! over `N` requests through the proxy and over `N` requests straight to
//! the upstream; the difference per request is the proxy's share. The
//! counts are deterministic enough to compare builds on a busy machine
//! (they are counts, not timings).
//!
//! Run: `cargo bench --bench alloc` (release), or `cargo test --release
//! --bench alloc` for the same figures; `ALLOC_REQUESTS=20000` to change N.
//! `ALLOC_TRACE=1` also prints where each allocation of one proxied request
//! comes from (the innermost frames of cutover, hyper, h2 and tokio).
//! `ALLOC_PROTO=h2c` sends the proxied requests over h2c (prior knowledge,
//! one stream at a time) instead of HTTP/1.1; the upstream stays HTTP/1.1.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// The system allocator, counting calls and bytes.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Print a trimmed backtrace of every allocation while set.
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while a backtrace is taken: its own allocations are not traced.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

fn trace(size: usize) {
    if !TRACE.load(Ordering::Relaxed) || TRACING.with(Cell::get) {
        return;
    }
    TRACING.with(|t| t.set(true));
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = bt
        .lines()
        .map(str::trim)
        .filter(|l| {
            [
                "cutover::",
                "hyper::",
                "h2::",
                "hyper_util::",
                "tokio::",
                "http::",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .take(4)
        .collect();
    eprintln!("alloc {size:>6} B  {}", frames.join("  <-  "));
    TRACING.with(|t| t.set(false));
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// plain atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        trace(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        trace(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\r\n"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A client connection: HTTP/1.1, or h2c with prior knowledge.
enum Client {
    Http1(http1::SendRequest<Empty<Bytes>>),
    H2c(http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    async fn connect(addr: SocketAddr, h2c: bool) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = TokioIo::new(stream);
        if h2c {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Client::H2c(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Client::Http1(sender)
        }
    }

    /// One GET, its body read to the end.
    async fn get(&mut self) {
        let sending = match self {
            Client::Http1(s) => {
                s.ready().await.unwrap();
                let req = Request::get("/")
                    .header("host", "app.example")
                    .body(Empty::new())
                    .unwrap();
                futures::future::Either::Left(s.send_request(req))
            }
            Client::H2c(s) => {
                s.ready().await.unwrap();
                let req = Request::get("http://app.example/")
                    .body(Empty::new())
                    .unwrap();
                futures::future::Either::Right(s.send_request(req))
            }
        };
        let resp = sending.await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
}

/// `(allocations, bytes)` per request over `n` requests on `client`, after
/// `warm` requests not counted.
async fn per_request(client: &mut Client, warm: u64, n: u64) -> (f64, f64) {
    for _ in 0..warm {
        client.get().await;
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        client.get().await;
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let n: u64 = std::env::var("ALLOC_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let yaml = format!(
            "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
             groups: {{stable: {{endpoints: [\"{up}\"]}}, canary: {{endpoints: [\"{up}\"]}}}}\n\
             routes: [{{name: web, rules: [{{name: split, backends: \
               [{{group: stable, weight: 90}}, {{group: canary, weight: 10}}]}}]}}]\n"
        );
        let config = cutover::config::parse_yaml(&yaml).unwrap();
        let app = cutover::app::App::start(&config, cutover::app::Options::default())
            .await
            .unwrap();
        let proxy = app.local_addr("public").unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.serve(async {
            let _ = stopped.await;
        }));

        let h2c = std::env::var("ALLOC_PROTO").is_ok_and(|p| p == "h2c");
        let direct = per_request(&mut Client::connect(up, false).await, 1000, n).await;
        let mut through = Client::connect(proxy, h2c).await;
        let proxied = per_request(&mut through, 1000, n).await;
        if std::env::var_os("ALLOC_TRACE").is_some() {
            TRACE.store(true, Ordering::Relaxed);
            per_request(&mut through, 0, 1).await;
            TRACE.store(false, Ordering::Relaxed);
        }
        println!(
            "requests per run: {n}, {} to cutover",
            if h2c { "h2c" } else { "HTTP/1.1" }
        );
        println!(
            "direct (client + upstream): {:.2} allocations, {:.0} bytes per request",
            direct.0, direct.1
        );
        println!(
            "through cutover:            {:.2} allocations, {:.0} bytes per request",
            proxied.0, proxied.1
        );
        println!(
            "cutover's share:            {:.2} allocations, {:.0} bytes per request{}",
            proxied.0 - direct.0,
            proxied.1 - direct.1,
            // The direct client speaks HTTP/1.1: the upstream has no h2c.
            if h2c {
                " (with the h2 client's own)"
            } else {
                ""
            }
        );
        let _ = stop.send(());
        let _ = served.await;
    });
}

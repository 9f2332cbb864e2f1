//! Tools for the semantics tests: the proxy with explicit limits, byte-level
//! upstreams and clients, generated bodies and an RSS probe.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A config with one listener `public` on port 0 and one rule sending every
/// request to group `app` (one endpoint, `protocol` = `http1` or `h2`).
pub fn one_group(endpoint: SocketAddr, protocol: &str) -> String {
    format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n\
         groups:\n  app:\n    endpoints: [\"{endpoint}\"]\n    protocol: {protocol}\n\
         routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n"
    )
}

/// A port nobody listens on: bound, then released.
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Serves every connection on a fresh port with a hyper service (HTTP/1.1
/// and h2c, upgrades allowed).
pub async fn serve<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let service = service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// What a [`raw_upstream`] does after reading one request head.
pub enum RawReply {
    /// Write these bytes and keep reading requests on the connection.
    Keep(&'static [u8]),
    /// Write these bytes (possibly none), then close the connection.
    Close(&'static [u8]),
}

/// An upstream that speaks HTTP/1.1 byte by byte, so tests control exactly
/// what goes on the wire. Bodies are skipped by `Content-Length` only.
#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    /// Request heads received so far, as text.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

pub async fn raw_upstream(reply: fn(&str) -> RawReply) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let up = RawUpstream {
        addr,
        heads: Arc::clone(&heads),
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let heads = Arc::clone(&heads);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = read_head(&mut stream, &mut buf).await else {
                        return;
                    };
                    let mut skip = content_length(&head);
                    while skip > 0 {
                        if buf.is_empty() && read_more(&mut stream, &mut buf).await == 0 {
                            return;
                        }
                        let n = skip.min(buf.len());
                        buf.drain(..n);
                        skip -= n;
                    }
                    heads.lock().unwrap().push(head.clone());
                    match reply(&head) {
                        RawReply::Keep(bytes) => {
                            if stream.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        RawReply::Close(bytes) => {
                            let _ = stream.write_all(bytes).await;
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    up
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

/// Reads up to the end of a head (`\r\n\r\n`); the head leaves `buf`,
/// whatever followed it stays. `None` at EOF.
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        if read_more(stream, buf).await == 0 {
            return None;
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Values of header `name` (case-insensitive) in a raw head.
pub fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

fn content_length(head: &str) -> usize {
    header_values(head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What a client saw of a raw exchange.
pub struct Exchange {
    pub text: String,
    /// The proxy closed the connection (EOF or reset) within the wait.
    pub closed: bool,
    /// Time from the end of the write to the close (or to the end of the wait).
    pub elapsed: Duration,
}

impl Exchange {
    /// Status codes of every response in `text`.
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| self.text.get(i + 9..i + 12)?.parse().ok())
            .collect()
    }
}

/// Writes `bytes` on a fresh connection (write errors ignored: the proxy may
/// close early) and reads until the proxy closes or `wait` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_until_close(&mut s, wait).await
}

pub async fn read_until_close(s: &mut TcpStream, wait: Duration) -> Exchange {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout_at((start + wait).into(), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    Exchange {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
        elapsed: start.elapsed(),
    }
}

/// A body of `len` bytes made of one repeated chunk: no allocation per frame,
/// exact size hint (so HTTP/1.1 sends `Content-Length`).
pub struct Repeat {
    chunk: Bytes,
    left: u64,
}

impl Repeat {
    pub fn new(len: u64) -> Self {
        Repeat {
            chunk: Bytes::from(vec![b'x'; 256 * 1024]),
            left: len,
        }
    }
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = this.left.min(this.chunk.len() as u64);
        this.left -= n;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A body that yields the given frames (data and trailers) in order, with an
/// unknown length.
pub struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    pub fn new(frames: impl IntoIterator<Item = Frame<Bytes>>) -> Self {
        Frames(frames.into_iter().collect())
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// Resident set size of this test process (proxy and upstreams included), KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Samples [`rss_kib`] every 10 ms on its own thread until stopped; returns
/// the peak.
pub struct RssPeak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssPeak {
    pub fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kib();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_kib())
        });
        RssPeak { stop, thread }
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

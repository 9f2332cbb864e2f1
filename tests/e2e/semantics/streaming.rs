//! Bodies stream through the proxy in bounded memory, both ways.
//!
//! Each test reruns itself in a child process that runs only that test
//! ([`in_own_process`]): the proxy, the upstream and the client are then the
//! only things in the process whose RSS is measured. (In the parent the other
//! tests of this binary allocate concurrently; they were seen to add 20+ MiB.)
//! A proxy that buffered even a small part of the body would grow by
//! hundreds of MiB; one that streams holds a few read and write buffers
//! (64 KiB .. 400 KiB per connection) plus allocator slack, measured at
//! 1.5 .. 3 MiB. `RSS_BOUND_KIB` is 32 MiB: 3 % of the body, so any buffering
//! fails, and ten times the measured working set, so scheduling noise and
//! allocator arenas do not.

use std::net::SocketAddr;
use std::time::Instant;

use http::{header, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::kit::{one_group, rss_kib, serve, Repeat, RssPeak};
use crate::support::*;

/// Body size for both directions: 1 GiB.
const SIZE: u64 = 1 << 30;
const RSS_BOUND_KIB: u64 = 32 * 1024;

/// Runs `body` in a child process running only the test `name` of this
/// module, so the RSS it measures is its own.
fn in_own_process(name: &str, body: impl std::future::Future<Output = ()>) {
    const CHILD: &str = "CUTOVER_E2E_RSS_CHILD";
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, m)| m);
    let test = format!("{module}::{name}");
    if std::env::var(CHILD).as_deref() == Ok(test.as_str()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        return rt.block_on(body);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run {test}:\n{stdout}"
    );
}

/// A fresh HTTP/1.1 connection to the proxy.
async fn connect(
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Either<Repeat, Empty<bytes::Bytes>>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Uploads `len` bytes; the response status.
async fn upload(addr: SocketAddr, len: u64) -> u16 {
    let mut sender = connect(addr).await;
    let req = Request::post("/upload")
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Either::Left(Repeat::new(len)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

/// Downloads `path`; the announced and the received length.
async fn download(addr: SocketAddr, path: &str) -> (Option<u64>, u64) {
    let mut sender = connect(addr).await;
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Either::Right(Empty::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let announced = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    (announced, got)
}

fn report(what: &str, before: u64, peak: u64, started: Instant) -> u64 {
    let growth = peak.saturating_sub(before);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {} MiB in {secs:.2} s ({:.0} MiB/s), RSS {before} KiB -> peak {peak} KiB (+{growth} KiB)",
        SIZE >> 20,
        (SIZE >> 20) as f64 / secs,
    );
    growth
}

#[test]
fn large_upload_streams_in_bounded_memory() {
    in_own_process(
        "large_upload_streams_in_bounded_memory",
        upload_in_bounded_memory(),
    );
}

#[test]
fn large_download_streams_in_bounded_memory() {
    in_own_process(
        "large_download_streams_in_bounded_memory",
        download_in_bounded_memory(),
    );
}

async fn upload_in_bounded_memory() {
    let up = upstream("sink").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    // Warm up the same path (pools, buffers, allocator arenas) first.
    assert_eq!(upload(p.addr, 4 << 20).await, 200);

    let before = rss_kib();
    let peak = RssPeak::start();
    let started = Instant::now();
    let status = upload(p.addr, SIZE).await;
    let peak = peak.finish();
    let growth = report("upload", before, peak, started);

    assert_eq!(status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].body_len as u64, SIZE,
        "the upstream receives every byte"
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB streaming {SIZE} bytes"
    );
}

async fn download_in_bounded_memory() {
    let addr = serve(|req: Request<Incoming>| async move {
        let len = if req.uri().path() == "/warm-up" {
            4 << 20
        } else {
            SIZE
        };
        Response::new(Repeat::new(len))
    })
    .await;
    let p = proxy(&one_group(addr, "http1")).await;
    assert_eq!(download(p.addr, "/warm-up").await.1, 4 << 20);

    let before = rss_kib();
    let peak = RssPeak::start();
    let started = Instant::now();
    let (announced, got) = download(p.addr, "/big").await;
    let peak = peak.finish();
    let growth = report("download", before, peak, started);

    assert_eq!(announced, Some(SIZE), "Content-Length passes through");
    assert_eq!(got, SIZE, "the client receives every byte");
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB streaming {SIZE} bytes"
    );
}

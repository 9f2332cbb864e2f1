//! Idle connections cannot fill a listener: under thousands of silent h2
//! and idle HTTP/1.1 keep-alive connections on a listener limited to 2,000,
//! a fresh client is served at once, every time (the oldest idle connection
//! makes room for it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::config;
use super::h2raw;
use crate::support::{proxy, upstream};

const SILENT_H2: usize = 2_500;
const IDLE_H1: usize = 10_000;
const LIMIT: usize = 2_000;
/// Client sockets, the proxy's side of at most `LIMIT` of them, and room
/// for the other tests of this process.
const FDS_NEEDED: u64 = (SILENT_H2 + IDLE_H1 + LIMIT) as u64 + 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_clients_are_served_under_a_flood_of_idle_connections() {
    let fds = rlimit::increase_nofile_limit(FDS_NEEDED).unwrap_or(0);
    if fds < FDS_NEEDED {
        let msg = format!("SKIPPED: {FDS_NEEDED} file descriptors needed, {fds} allowed");
        assert!(std::env::var("CUTOVER_REQUIRE_ALL").is_err(), "{msg}");
        println!("{msg}");
        return;
    }
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &[&format!("max_connections: {LIMIT}")])).await;

    let started = Instant::now();
    let mut held = open_all(p.addr, SILENT_H2, silent_h2).await;
    held.extend(open_all(p.addr, IDLE_H1, idle_h1).await);
    let flood = started.elapsed();
    // Let the last responses go out: every connection is idle now.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for i in 0..5 {
        let t = Instant::now();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET /fresh HTTP/1.1\r\nhost: app.example\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("fresh client {i} not served within 2 s"))
            .unwrap_or(0);
        let took = t.elapsed();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "fresh client {i}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(
            took < Duration::from_millis(100),
            "fresh client {i} served after {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held.len() > SILENT_H2, "the flood connected ({flood:?})");
}

/// Opens `n` connections with `open`, 200 at a time; keeps those that
/// connected.
async fn open_all<F, Fut>(addr: SocketAddr, n: usize, open: F) -> Vec<TcpStream>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Option<TcpStream>> + Send + 'static,
{
    let mut held = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        if tasks.len() >= 200 {
            if let Some(Ok(Some(s))) = tasks.join_next().await {
                held.push(s);
            }
        }
        tasks.spawn(open(addr));
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            held.push(s);
        }
    }
    held
}

/// The h2c preface and SETTINGS, then nothing.
async fn silent_h2(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(&h2raw::hello()).await.ok()?;
    Some(s)
}

/// One request and its answer, then nothing: an idle keep-alive connection.
async fn idle_h1(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: app.example\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    Some(s)
}

//! Circuit breaking (group and endpoint limits) and the listener's body
//! limit.

use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::kit::{self, Backend};
use crate::support::proxy;

/// Starts `n` concurrent GETs to `url`; their answers come on the channel.
fn fire(n: usize, url: String) -> mpsc::UnboundedReceiver<kit::Got> {
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..n {
        let (tx, url) = (tx.clone(), url.clone());
        tokio::spawn(async move {
            let got = kit::get(&kit::client(), &url).await;
            let _ = tx.send(got);
        });
    }
    rx
}

async fn recv_n(rx: &mut mpsc::UnboundedReceiver<kit::Got>, n: usize) -> Vec<kit::Got> {
    let mut out = Vec::new();
    for _ in 0..n {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an answer in time")
            .unwrap();
        out.push(got);
    }
    out
}

#[tokio::test]
async fn max_requests_and_max_pending_overflow_fails_fast_and_is_counted() {
    let up = Backend::start("up").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[up.addr],
            &["limits: {max_requests: 2, max_pending: 3}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    up.hold();
    let start = Instant::now();
    let mut rx = fire(10, p.url("/"));
    // 2 in flight, 3 waiting, 5 turned away at once while nothing moves.
    let overflow = recv_n(&mut rx, 5).await;
    let overflow_ms = start.elapsed().as_millis();
    for got in &overflow {
        assert_eq!(got.status, 503);
        assert!(got.text().contains("limits.max_pending"), "{got:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "the waiting ones still wait");
    assert_eq!(up.count(), 2, "max_requests in flight");
    up.release();
    let rest = recv_n(&mut rx, 5).await;
    assert!(rest.iter().all(|g| g.status == 200 && g.text() == "up"));
    assert_eq!(up.count(), 5);
    eprintln!(
        "circuit breaker: 10 concurrent, 2 in flight, 3 queued, {} overflowed (503) within \
         {overflow_ms}ms",
        overflow.len()
    );

    // The breaker closes again: the next burst gets the same treatment.
    up.hold();
    let mut rx = fire(6, p.url("/"));
    let overflow = recv_n(&mut rx, 1).await;
    assert_eq!(overflow[0].status, 503);
    up.release();
    let rest = recv_n(&mut rx, 5).await;
    assert!(rest.iter().all(|g| g.status == 200));
}

#[tokio::test]
async fn max_connections_limits_concurrent_requests_per_endpoint() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["limits: {max_connections: 2}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    a.hold();
    b.hold();
    let mut rx = fire(6, p.url("/"));
    let overflow = recv_n(&mut rx, 2).await;
    for got in &overflow {
        assert_eq!(got.status, 503);
        assert!(got.text().contains("limits.max_connections"), "{got:?}");
    }
    crate::support::until("4 requests upstream", Duration::from_secs(5), || {
        a.count() + b.count() == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((a.count(), b.count()), (2, 2));
    a.release();
    b.release();
    let rest = recv_n(&mut rx, 4).await;
    assert!(rest.iter().all(|g| g.status == 200));
    // Idle pooled connections do not count: sequential requests all pass.
    let c = kit::client();
    for _ in 0..10 {
        assert_eq!(kit::get(&c, &p.url("/")).await.status, 200);
    }
}

/// Writes a chunked request of `total` bytes on a raw connection while
/// reading the answer; returns what came back.
async fn raw_chunked(addr: std::net::SocketAddr, total: usize) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = b"PUT / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
        wr.write_all(head).await?;
        let chunk = vec![b'c'; 8192];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk[..n]).await?;
            wr.write_all(b"\r\n").await?;
            left -= n;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if let Some(end) = text.find("\r\n\r\n") {
                    if text[end + 4..].contains('\n') {
                        break;
                    }
                }
            }
        }
    }
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

/// A body over the listener's `max_request_body` gets 413, whether its
/// Content-Length says so or a chunked body grows over it.
#[tokio::test]
async fn request_bodies_over_max_request_body_get_413() {
    // One limit above the replay buffer (64 KiB), one below it.
    for limit_kib in [100usize, 16] {
        let up = Backend::start("up").await;
        let limit = format!("max_request_body: {limit_kib}KiB");
        let p = proxy(&kit::config(
            &[&limit],
            &[kit::group("app", &[up.addr], &[])],
            &[kit::rule("all", "[{group: app}]", &[])],
        ))
        .await;
        let limit = limit_kib * 1024;

        // Content-Length over the limit: 413 before a byte of body is read.
        let head = format!(
            "PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            limit + 1
        );
        let text = crate::support::raw(p.addr, head.as_bytes()).await;
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "{limit_kib}KiB, Content-Length: {text:?}"
        );
        assert!(text.contains("max_request_body"), "{text:?}");

        let text = raw_chunked(p.addr, limit * 2).await;
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "{limit_kib}KiB, chunked: {text:?}"
        );
        assert!(text.contains("max_request_body"), "{text:?}");

        // At the limit, either way, the whole body goes through.
        for body in [kit::sized(limit), kit::chunked(limit)] {
            let got = kit::call(&kit::client(), Method::PUT, &p.url("/"), &[], body).await;
            assert_eq!((got.status, got.text()), (200, "up"));
        }
        let hits = up.hits();
        assert_eq!(
            hits.len(),
            2,
            "{limit_kib}KiB: only the bodies within the limit"
        );
        assert!(hits.iter().all(|h| h.body_len == limit));
    }
}

/// At a listener's `max_connections` a new connection takes the slot of an
/// idle keep-alive one; when every connection has a request in flight it is
/// answered 503 and closed at once instead of waiting in the backlog.
#[tokio::test]
async fn listener_max_connections_reuses_idle_slots_and_refuses_when_busy() {
    let up = Backend::start("up").await;
    let p = proxy(&kit::config(
        &["max_connections: 1"],
        &[kit::group("app", &[up.addr], &[])],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut buf = [0u8; 1024];
    let mut first = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The first is idle: the second is served in its place, the first closed.
    let mut second = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let slow = b"GET / HTTP/1.1\r\nhost: x\r\nx-test-delay-ms: 1500\r\n\r\n";
    second.write_all(slow).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), first.read(&mut buf))
        .await
        .expect("the idle connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was closed");

    // The second is busy: a third is refused at once, with a reason.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut third = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut refused = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), third.read_to_end(&mut refused))
        .await
        .expect("refused at once")
        .unwrap();
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    assert!(started.elapsed() < Duration::from_millis(500));

    let n = tokio::time::timeout(Duration::from_secs(3), second.read(&mut buf))
        .await
        .expect("the busy connection finished")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(up.count(), 2);
}

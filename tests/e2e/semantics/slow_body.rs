//! A request body that never arrives, or stops half way, ends at the
//! listener's `request_body_timeout`: 408 if nothing was forwarded, else the
//! upstream request is aborted; a slow but steady body is served.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::kit::{exchange, one_group, read_until_close};
use crate::support::*;

/// The one-group config with `request_body_timeout: 300ms`.
fn config(up: &Upstream) -> String {
    one_group(up.addr, "http1").replace(
        "    address: \"127.0.0.1:0\"\n",
        "    address: \"127.0.0.1:0\"\n    request_body_timeout: 300ms\n",
    )
}

/// Waits (bounded) until the upstream has recorded `n` requests.
async fn recorded(up: &Upstream, n: usize) -> Vec<Seen> {
    let until = Instant::now() + Duration::from_secs(3);
    while up.count() < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    up.requests()
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_at_the_timeout() {
    let up = upstream("app").await;
    let p = proxy(&config(&up)).await;
    let head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n";
    let got = exchange(p.addr, head, Duration::from_secs(5)).await;
    assert_eq!(got.statuses(), [408], "{}", got.text);
    assert!(got.text.contains("request_body_timeout"), "{}", got.text);
    assert!(got.closed, "connection left open after 408");
    assert!(
        got.elapsed >= Duration::from_millis(250) && got.elapsed < Duration::from_secs(3),
        "closed after {:?}, the timeout is 300ms",
        got.elapsed
    );
    assert_eq!(up.count(), 0, "nothing of the body reached the upstream");
}

#[tokio::test]
async fn a_body_that_stalls_half_way_aborts_the_upstream_request() {
    // Larger than the 64 KiB replay buffer: it streams, so the upstream has
    // the head and the first half when the client goes quiet.
    let up = upstream("app").await;
    let p = proxy(&config(&up)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 100_000]).await.unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.closed, "connection left open: {}", got.text);
    assert!(got.elapsed < Duration::from_secs(3), "{:?}", got.elapsed);
    assert_eq!(
        got.statuses(),
        [408],
        "the client still waits: {}",
        got.text
    );
    let seen = recorded(&up, 1).await;
    assert_eq!(seen.len(), 1, "the upstream saw the request start");
    assert!(
        seen[0].body_len < 200_000,
        "the upstream request was aborted, not completed: {} bytes",
        seen[0].body_len
    );
}

/// Sends `head`, then `pieces` with `gap` between them; returns the status
/// line's code.
async fn send_slowly(p: &Proxy, head: String, pieces: &[Vec<u8>], gap: Duration) -> Vec<u16> {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in pieces {
        tokio::time::sleep(gap).await;
        s.write_all(piece).await.unwrap();
    }
    read_until_close(&mut s, Duration::from_secs(3))
        .await
        .statuses()
}

#[tokio::test]
async fn a_slow_but_steady_body_is_served() {
    let up = upstream("app").await;
    let p = proxy(&config(&up)).await;
    let gap = Duration::from_millis(120);
    // Six pieces 120 ms apart: 720 ms in all, over twice the timeout.
    let small: Vec<Vec<u8>> = (0..6).map(|_| vec![b'x'; 100]).collect();
    let head =
        "POST /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 600\r\n\r\n";
    assert_eq!(send_slowly(&p, head.into(), &small, gap).await, [200]);

    // A streamed body: past the replay buffer, then the same slow pieces.
    let mut big = vec![vec![b'x'; 70_000]];
    big.extend((0..6).map(|_| vec![b'x'; 1000]));
    let head =
        "POST /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 76000\r\n\r\n";
    assert_eq!(send_slowly(&p, head.into(), &big, gap).await, [200]);

    let seen = recorded(&up, 2).await;
    let lens: Vec<_> = seen
        .iter()
        .map(|s| (s.uri.path().to_owned(), s.body_len))
        .collect();
    assert_eq!(lens, [("/small".into(), 600), ("/big".into(), 76_000)]);
}

#[tokio::test]
async fn an_h2_stream_whose_body_never_arrives_gets_408() {
    let up = upstream("app").await;
    let p = proxy(&config(&up)).await;
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(p.url("/up"))
        .header("content-length", "4096")
        .body(())
        .unwrap();
    let started = Instant::now();
    // The stream stays open (no END_STREAM) and no DATA frame follows.
    let (resp, _body) = client.send_request(req, false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(3), resp)
        .await
        .expect("answered within 3s")
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.count(), 0);
}

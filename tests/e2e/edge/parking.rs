//! Idle HTTP/1.1 connections parked without hyper (the socket only): the
//! client's next request after the park delay is answered exactly as on a
//! fresh connection (plain, pipelined, chunked, with a body, an upgrade),
//! and a parked connection still closes at its idle timeout, is evicted at
//! the connection limit and closes at once when the listener stops.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::config;
use super::h2raw::{self, END_HEADERS, END_STREAM, HEADERS};
use crate::semantics::kit::{header_values, read_head, read_until_close, serve};
use crate::support::{proxy, until, Proxy};

/// Longer than the proxy's park delay (1 s) with room for a loaded machine.
const PARKED_WITHIN: Duration = Duration::from_secs(5);

/// An upstream that answers `METHOD PATH BODY` for every request.
async fn echo() -> SocketAddr {
    serve(|req: http::Request<hyper::body::Incoming>| async move {
        let line = format!("{} {} ", req.method(), req.uri().path());
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let mut out = line.into_bytes();
        out.extend_from_slice(&body.unwrap_or_default());
        Response::new(Full::new(Bytes::from(out)))
    })
    .await
}

/// Waits until `n` connections of `p` are parked.
async fn parked(p: &Proxy, n: i64) {
    let metrics = &p.serving.metrics;
    until(&format!("{n} parked"), PARKED_WITHIN, || {
        metrics.downstream_parked() == n
    })
    .await;
}

/// Reads one response with a `Content-Length` body; `buf` keeps what
/// follows it.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(s, buf))
        .await
        .expect("a response within 5 s")
        .expect("a response, not EOF");
    let len: usize = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut chunk = [0u8; 4096];
    while buf.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a body within 5 s")
            .unwrap_or(0);
        assert!(n > 0, "closed inside the body of {head}");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `request` and checks the next answers are 200 with `bodies`.
async fn expect(s: &mut TcpStream, request: &[u8], bodies: &[&str]) {
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    for want in bodies {
        let (head, body) = response(s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(&body, want, "{head}");
    }
    assert!(
        buf.is_empty(),
        "extra bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn a_parked_connection_answers_whatever_the_client_sends_next() {
    let p = proxy(&config(echo().await, &[])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").into_bytes();
    expect(&mut s, &get("/first"), &["GET /first "]).await;
    parked(&p, 1).await;

    expect(&mut s, &get("/plain"), &["GET /plain "]).await;
    parked(&p, 1).await;

    let pair = [get("/one"), get("/two")].concat();
    expect(&mut s, &pair, &["GET /one ", "GET /two "]).await;
    parked(&p, 1).await;

    // Chunked, with an extension and a trailer: the scan follows it to its
    // end, so the connection parks again afterwards.
    let chunked = b"POST /chunked HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
        5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n";
    expect(&mut s, chunked, &["POST /chunked hello world"]).await;
    parked(&p, 1).await;

    let sized = b"POST /sized HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nabcd";
    expect(&mut s, sized, &["POST /sized abcd"]).await;
    parked(&p, 1).await;

    // A pipelined pair whose second request arrives in two pieces.
    let (first, second) = (get("/three"), get("/four"));
    s.write_all(&[&first[..], &second[..9]].concat())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    expect(&mut s, &second[9..], &["GET /three ", "GET /four "]).await;
    parked(&p, 1).await;
}

#[tokio::test]
async fn a_parked_connection_closes_at_the_idle_timeout() {
    let p = proxy(&config(echo().await, &["timeouts: {idle: 2s}"])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    expect(&mut s, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", &["GET / "]).await;
    let answered = Instant::now();
    parked(&p, 1).await;
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.closed, "parked connection open after {:?}", got.elapsed);
    let idle = answered.elapsed();
    assert!(
        (Duration::from_millis(1800)..Duration::from_millis(4000)).contains(&idle),
        "closed {idle:?} after the answer"
    );
    parked(&p, 0).await;
}

#[tokio::test]
async fn the_oldest_parked_connection_makes_room_at_the_limit() {
    let p = proxy(&config(echo().await, &["max_connections: 2"])).await;
    let mut old = TcpStream::connect(p.addr).await.unwrap();
    expect(
        &mut old,
        b"GET /old HTTP/1.1\r\nhost: a\r\n\r\n",
        &["GET /old "],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newer = TcpStream::connect(p.addr).await.unwrap();
    expect(
        &mut newer,
        b"GET /new HTTP/1.1\r\nhost: a\r\n\r\n",
        &["GET /new "],
    )
    .await;
    parked(&p, 2).await;

    let mut fresh = TcpStream::connect(p.addr).await.unwrap();
    expect(
        &mut fresh,
        b"GET /fresh HTTP/1.1\r\nhost: a\r\n\r\n",
        &["GET /fresh "],
    )
    .await;
    let got = read_until_close(&mut old, Duration::from_secs(2)).await;
    assert!(got.closed, "the oldest idle connection is still open");
    expect(
        &mut newer,
        b"GET /again HTTP/1.1\r\nhost: a\r\n\r\n",
        &["GET /again "],
    )
    .await;
}

#[tokio::test]
async fn stopping_closes_parked_connections_at_once() {
    let mut p = proxy(&config(echo().await, &[])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    expect(&mut s, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", &["GET / "]).await;
    parked(&p, 1).await;
    p.stop();
    let got = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(
        got.closed,
        "parked connection open {:?} after stop",
        got.elapsed
    );
    assert!(got.text.is_empty(), "{}", got.text);
    tokio::time::timeout(Duration::from_secs(3), &mut p.done)
        .await
        .expect("drained at once")
        .unwrap();
}

/// An upstream that answers `200 ok` to plain requests and, to an upgrade
/// request, `101` and then echoes every byte.
async fn upgrade_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_head(&mut s, &mut buf).await {
                    if header_values(&head, "upgrade").is_empty() {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        s.write_all(ok).await.unwrap();
                        continue;
                    }
                    let switch = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
                    s.write_all(switch).await.unwrap();
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    return;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upgrade_after_parking_is_tunnelled() {
    let p = proxy(&config(upgrade_upstream().await, &[])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    expect(&mut s, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", &["ok"]).await;
    parked(&p, 1).await;
    s.write_all(
        b"GET /chat HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s, &mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    while buf.len() < 4 {
        let mut chunk = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "tunnel closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&buf, b"ping");
    // A tunnel is never parked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(p.serving.metrics.downstream_parked(), 0);
}

#[tokio::test]
async fn an_h2c_preface_that_arrives_in_pieces_is_still_http2() {
    let p = proxy(&config(echo().await, &[])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let hello = h2raw::hello();
    s.write_all(&hello[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&hello[5..]).await.unwrap();
    let block = h2raw::get("/h2");
    s.write_all(&h2raw::frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    let wait = Duration::from_secs(3);
    loop {
        let f = h2raw::read_frame(&mut s, wait)
            .await
            .expect("an HTTP/2 answer");
        if f.stream == 1 && f.kind == HEADERS {
            break;
        }
    }
}

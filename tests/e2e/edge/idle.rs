//! Idle deadlines: a connection that never sends a request, an HTTP/1.1
//! keep-alive connection between requests, an HTTP/2 connection without
//! open streams, and a client that stops reading its response.

use std::time::{Duration, Instant};

use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::config;
use super::h2raw::{self, END_HEADERS, END_STREAM, GOAWAY, HEADERS};
use crate::semantics::kit::{read_until_close, serve, Repeat};
use crate::support::{proxy, upstream};

#[tokio::test]
async fn silent_h2_connection_closes_at_first_request_timeout() {
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &["timeouts: {first_request: 500ms}"])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&h2raw::hello()).await.unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.closed, "still open after {:?}", got.elapsed);
    assert!(
        got.elapsed >= Duration::from_millis(400),
        "{:?}",
        got.elapsed
    );
}

#[tokio::test]
async fn idle_h2_connection_gets_goaway_then_closes() {
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &["timeouts: {idle: 1s}"])).await;
    let mut s = h2raw::connect(p.addr).await;
    let block = h2raw::get("/");
    s.write_all(&h2raw::frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    // Read up to the end of the response (a frame on stream 1 with END_STREAM).
    let wait = Duration::from_secs(3);
    loop {
        let f = h2raw::read_frame(&mut s, wait).await.expect("a response");
        assert_ne!(f.kind, GOAWAY, "GOAWAY before the response");
        if f.stream == 1 && f.flags & END_STREAM != 0 {
            break;
        }
    }
    let answered = Instant::now();
    let goaway = loop {
        match h2raw::read_frame(&mut s, wait).await {
            Some(f) if f.kind == GOAWAY => break answered.elapsed(),
            Some(_) => continue, // PING, SETTINGS ack
            None => panic!("no GOAWAY within {wait:?} of idleness"),
        }
    };
    assert!(
        goaway >= Duration::from_millis(800),
        "GOAWAY after {goaway:?}"
    );
    let closed = read_until_close(&mut s, Duration::from_secs(4)).await;
    assert!(closed.closed, "open {:?} after GOAWAY", closed.elapsed);
}

#[tokio::test]
async fn http1_keep_alive_idle_timeout_is_configurable() {
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &["timeouts: {idle: 1500ms}"])).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: app.example\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.closed,
        "keep-alive connection open after {:?}",
        got.elapsed
    );
    let idle = answered.elapsed();
    assert!(
        (Duration::from_millis(1300)..Duration::from_millis(3500)).contains(&idle),
        "closed after {idle:?}"
    );
}

/// 256 MiB of response to a client with a small receive buffer that reads
/// nothing: once the buffers are full, writes make no progress and the
/// proxy closes after `send_idle`, well before the body is sent.
#[tokio::test]
async fn client_that_stops_reading_is_closed_after_send_idle() {
    const LEN: u64 = 256 << 20;
    let up = serve(|_req| async { Response::new(Repeat::new(LEN)) }).await;
    let p = proxy(&config(up, &["timeouts: {send_idle: 1s}"])).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: app.example\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now read what was buffered: the stream must end long before LEN.
    let mut total = 0u64;
    let mut chunk = vec![0u8; 256 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => total += n as u64,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(ended, "still sending after {total} bytes");
    assert!(total < LEN / 4, "sent {total} of {LEN} bytes");
}

//! Request head limits: a request target over `max_request_target` gets 414
//! and a header block over `max_header_bytes` 431 (defaults 8 KiB and
//! 60 KiB, Envoy's edge values), on HTTP/1.1 and HTTP/2; a CONTINUATION
//! flood ends the connection.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;

use super::config;
use super::h2raw::{self, CONTINUATION, END_STREAM, GOAWAY, HEADERS};
use crate::semantics::kit::exchange;
use crate::support::{h2_client, proxy, send, upstream};

fn h1_status(text: &str) -> &str {
    text.get(9..12).unwrap_or(text)
}

async fn h1(addr: std::net::SocketAddr, path: &str, pad: usize) -> String {
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: app.example\r\nx-pad: {}\r\nconnection: close\r\n\r\n",
        "p".repeat(pad)
    );
    exchange(addr, req.as_bytes(), Duration::from_secs(3))
        .await
        .text
}

#[tokio::test]
async fn long_targets_get_414_and_big_heads_431_by_default() {
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &[])).await;
    let long = format!("/{}", "a".repeat(9 * 1024));
    let fits = format!("/{}", "a".repeat(8 * 1024 - 1));
    let text = h1(p.addr, &long, 0).await;
    assert_eq!(h1_status(&text), "414", "{text}");
    assert!(text.contains("request target over 8192 bytes"), "{text}");
    assert_eq!(h1_status(&h1(p.addr, &fits, 0).await), "200");
    assert_eq!(h1_status(&h1(p.addr, "/", 62 * 1024).await), "431");
    assert_eq!(h1_status(&h1(p.addr, "/", 50 * 1024).await), "200");
    assert_eq!(up.count(), 2, "rejected heads never reach the upstream");

    assert_eq!(h2_at(p.addr, &long, 0).await, 414);
    assert_eq!(h2_at(p.addr, &fits, 0).await, 200);
    assert_eq!(h2_at(p.addr, "/", 62 * 1024).await, 431);
    assert_eq!(h2_at(p.addr, "/", 50 * 1024).await, 200);
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn head_limits_are_configurable_per_listener() {
    let up = upstream("app").await;
    let p = proxy(&config(
        up.addr,
        &["max_request_target: 16KiB", "max_header_bytes: 128KiB"],
    ))
    .await;
    let long = format!("/{}", "a".repeat(12 * 1024));
    assert_eq!(h1_status(&h1(p.addr, &long, 0).await), "200");
    assert_eq!(h1_status(&h1(p.addr, "/", 100 * 1024).await), "200");
    assert_eq!(h2_at(p.addr, &long, 0).await, 200);
    assert_eq!(h2_at(p.addr, "/", 100 * 1024).await, 200);
    let longer = format!("/{}", "a".repeat(17 * 1024));
    assert_eq!(h1_status(&h1(p.addr, &longer, 0).await), "414");
}

/// An h2c request to the proxy itself (the client connects to `addr`).
async fn h2_at(addr: std::net::SocketAddr, path: &str, pad: usize) -> u16 {
    let req = Request::get(format!("http://{addr}{path}"))
        .header("x-pad", "p".repeat(pad))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&h2_client(), req).await.status.as_u16()
}

/// A header block that never ends: HEADERS without END_HEADERS, then
/// CONTINUATION frames of 16 KiB each (the default largest frame). The
/// connection must end (GOAWAY or close) within one frame past the limit
/// (h2 alone takes five CONTINUATION frames, whatever the limit).
#[tokio::test]
async fn continuation_flood_ends_the_connection_at_the_limit() {
    const FRAME: usize = 16 * 1024;
    const LIMIT: usize = 60 * 1024;
    let up = upstream("app").await;
    let p = proxy(&config(up.addr, &[])).await;
    let mut s = h2raw::connect(p.addr).await;
    let mut first = h2raw::get("/");
    h2raw::literal(&mut first, "x-pad-0", &"p".repeat(FRAME - 40));
    s.write_all(&h2raw::frame(HEADERS, END_STREAM, 1, &first))
        .await
        .unwrap();
    let mut sent = first.len();
    let mut ended_at = None;
    for i in 1..64 {
        let mut block = Vec::new();
        h2raw::literal(&mut block, &format!("x-pad-{i}"), &"p".repeat(FRAME - 16));
        if s.write_all(&h2raw::frame(CONTINUATION, 0, 1, &block))
            .await
            .is_err()
        {
            ended_at = Some(sent);
            break;
        }
        sent += block.len();
        if ended(&mut s).await {
            ended_at = Some(sent);
            break;
        }
    }
    let ended_at = ended_at.expect("the header block grew without end");
    assert!(
        ended_at <= LIMIT + 2 * FRAME,
        "the connection ended after {ended_at} bytes of header block"
    );
    assert_eq!(up.count(), 0);
}

/// Whether the server sent GOAWAY or closed (frames before it are skipped).
async fn ended(s: &mut tokio::net::TcpStream) -> bool {
    loop {
        match h2raw::read_frame(s, Duration::from_millis(100)).await {
            Some(f) if f.kind == GOAWAY => return true,
            Some(_) => continue,
            None => {
                // Timeout (still open) or EOF: tell them apart with a peek.
                let mut b = [0u8; 1];
                return matches!(
                    tokio::time::timeout(Duration::from_millis(10), s.peek(&mut b)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                );
            }
        }
    }
}

//! Upgrade (WebSocket) passthrough: the 101 reaches the client, then bytes
//! flow both ways; bytes sent early wait for the 101.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::kit::{find, header_values, one_group, read_head};
use crate::support::*;

/// What the upstream had when it answered 101.
struct BeforeSwitch {
    head: String,
    /// Bytes read after the request head and before the 101 was sent.
    early: Vec<u8>,
}

/// A WebSocket-ish upstream for one connection: reads the upgrade request,
/// waits 300 ms to see whether anything else arrives, answers 101 and then
/// echoes every byte.
async fn echo_upstream() -> (SocketAddr, oneshot::Receiver<BeforeSwitch>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head = read_head(&mut s, &mut buf)
            .await
            .expect("an upgrade request");
        let mut chunk = [0u8; 4096];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(300), s.read(&mut chunk)).await
        {
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(BeforeSwitch {
            head,
            early: buf.clone(),
        });
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await
        .unwrap();
        s.write_all(&buf).await.unwrap();
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, rx)
}

/// Reads until `buf` holds `want` bytes after the response head.
async fn read_past_head(s: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> usize {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            if buf.len() >= end + 4 + want {
                return end + 4;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk))
            .await
            .expect("timed out waiting for the upgraded stream")
            .unwrap();
        assert!(
            n > 0,
            "closed early; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_and_early_bytes_wait_for_101() {
    let (addr, before_switch) = echo_upstream().await;
    let p = proxy(&one_group(addr, "http1")).await;

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // The request and the first frame in one write, as eager clients do.
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nhello",
    )
    .await
    .unwrap();

    let mut buf = Vec::new();
    let body_at = read_past_head(&mut s, &mut buf, 5).await;
    let head = String::from_utf8_lossy(&buf[..body_at]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let upgrade = header_values(&head, "upgrade");
    assert_eq!(upgrade, ["websocket"], "{head}");
    let connection = header_values(&head, "connection");
    assert!(
        connection.iter().any(|v| v.eq_ignore_ascii_case("upgrade")),
        "{head}"
    );
    assert_eq!(
        header_values(&head, "sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert_eq!(
        &buf[body_at..],
        b"hello",
        "bytes sent with the request are echoed after the 101"
    );

    s.write_all(b"world!").await.unwrap();
    let mut echo = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"world!");

    let seen = before_switch.await.unwrap();
    assert!(
        seen.early.is_empty(),
        "upstream got {:?} before it switched protocols",
        String::from_utf8_lossy(&seen.early)
    );
    assert!(
        seen.head.starts_with("GET /chat HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(header_values(&seen.head, "upgrade"), ["websocket"]);
    let connection = header_values(&seen.head, "connection");
    assert!(
        connection.iter().any(|v| v.eq_ignore_ascii_case("upgrade")),
        "{}",
        seen.head
    );
    assert_eq!(
        header_values(&seen.head, "sec-websocket-key"),
        ["dGhlIHNhbXBsZSBub25jZQ=="]
    );
}

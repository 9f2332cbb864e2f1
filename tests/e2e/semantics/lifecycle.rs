//! Connection lifecycle: the first-request timeout, local replies when an
//! upstream fails, and graceful shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::kit::{dead_port, one_group, raw_upstream, read_until_close, serve, RawReply};
use crate::support::*;

/// One group, and one second for a new connection's first request head.
fn one_second_first_request(up: SocketAddr) -> String {
    one_group(up, "http1").replacen(
        "address: \"127.0.0.1:0\"\n",
        "address: \"127.0.0.1:0\"\n    timeouts: {first_request: 1s}\n",
        1,
    )
}

#[tokio::test]
async fn stalled_request_head_is_closed_after_first_request_timeout() {
    let up = upstream("app").await;
    let p = proxy(&one_second_first_request(up.addr)).await;

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Partial: ")
        .await
        .unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.closed, "still open after {:?}", got.elapsed);
    assert!(
        got.elapsed >= Duration::from_millis(800),
        "closed too early: {:?}",
        got.elapsed
    );
    assert_eq!(up.count(), 0);

    // A head that completes in time is served, even after a pause.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(got.text.starts_with("HTTP/1.1 200 "), "{}", got.text);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn silent_connection_is_closed_after_first_request_timeout() {
    let up = upstream("app").await;
    let p = proxy(&one_second_first_request(up.addr)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let got = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.closed,
        "a silent connection is still open after {:?}",
        got.elapsed
    );
}

/// Raw upstream behaviour by request path.
fn misbehave(head: &str) -> RawReply {
    let path = head.split(' ').nth(1).unwrap_or("");
    match path {
        "/raw/close-early" => RawReply::Close(b""),
        "/raw/close-mid" => {
            RawReply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
        }
        "/raw/unasked-101" => RawReply::Close(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
        ),
        _ => RawReply::Keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    }
}

fn local_reply_config(dead: SocketAddr, raw: SocketAddr) -> String {
    let rule = |name: &str, path: &str, backends: &str| {
        format!(
            "      - name: {name}\n        matches: [{{path: {{value: {path}}}}}]\n        backends: {backends}\n"
        )
    };
    let mut y = format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n\
         groups:\n  dead:\n    endpoints: [\"{dead}\"]\n  raw:\n    endpoints: [\"{raw}\"]\n\
         \x20 empty:\n    endpoints: []\n\
         routes:\n  - name: web\n    rules:\n"
    );
    y.push_str(&rule("dead", "/dead", "[{group: dead}]"));
    y.push_str(&rule("raw", "/raw", "[{group: raw}]"));
    y.push_str(&rule("empty", "/empty", "[{group: empty}]"));
    y.push_str(&rule("zero", "/zero", "[{group: raw, weight: 0}]"));
    y
}

#[tokio::test]
async fn local_replies_are_plain_text_and_name_the_reason() {
    let raw = raw_upstream(misbehave).await;
    let p = proxy(&local_reply_config(dead_port(), raw.addr)).await;
    let c = http1_client();
    let cases = [
        ("/dead", 502, "could not connect"),
        ("/raw/close-early", 502, "upstream connection failed"),
        ("/raw/unasked-101", 502, "switched protocols unasked"),
        ("/empty", 503, "no endpoint"),
        ("/zero", 503, "weight 0"),
        ("/nowhere", 404, "no route"),
    ];
    for (path, status, reason) in cases {
        let got = get(&c, &p.url(path), &[]).await;
        assert_eq!(got.status, status, "{path}: {}", got.body);
        let ct = got.headers.get("content-type").map(|v| v.to_str().unwrap());
        assert!(
            ct.is_some_and(|v| v.starts_with("text/plain")),
            "{path}: content-type {ct:?}"
        );
        assert!(got.body.starts_with("cutover: "), "{path}: {:?}", got.body);
        assert!(
            got.body.contains(reason),
            "{path}: {reason:?} not in {:?}",
            got.body
        );
        // The proxy keeps serving after each failure.
        let ok = get(&c, &p.url("/raw/ok"), &[]).await;
        assert_eq!(
            (ok.status.as_u16(), ok.body.as_str()),
            (200, "ok"),
            "after {path}"
        );
    }
}

#[tokio::test]
async fn upstream_closing_mid_response_fails_that_response_only() {
    let raw = raw_upstream(misbehave).await;
    let p = proxy(&local_reply_config(dead_port(), raw.addr)).await;
    let c = http1_client();
    let req = Request::get(p.url("/raw/close-mid"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let failed = match c.request(req).await {
        Err(_) => true,
        Ok(resp) if resp.status() == 502 => true,
        Ok(resp) => resp.into_body().collect().await.is_err(),
    };
    assert!(
        failed,
        "a truncated body must not look complete to the client"
    );

    for _ in 0..3 {
        let ok = get(&c, &p.url("/raw/ok"), &[]).await;
        assert_eq!((ok.status.as_u16(), ok.body.as_str()), (200, "ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let addr = serve(move |_req: Request<Incoming>| {
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            tokio::time::sleep(Duration::from_millis(500)).await;
            Response::new(Full::new(Bytes::from_static(b"slow")))
        }
    })
    .await;
    let mut p = proxy(&one_group(addr, "http1")).await;
    let c = http1_client();
    let url = p.url("/slow");
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { get(&c, &url, &[]).await });

    tokio::time::timeout(Duration::from_secs(3), arrived.recv())
        .await
        .unwrap();
    p.stop();
    let got = in_flight.await.unwrap();
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "slow"));
    assert!(started.elapsed() >= Duration::from_millis(500));

    tokio::time::timeout(Duration::from_secs(5), &mut p.done)
        .await
        .expect("the proxy finishes draining")
        .unwrap();
    assert!(
        TcpStream::connect(p.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

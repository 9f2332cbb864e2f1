//! Requests two parsers could read differently, and oversized heads, are
//! answered by the proxy and never reach an upstream.

use std::time::Duration;

use super::kit::{exchange, one_group, raw_upstream, Exchange, RawReply};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(3);

/// Sends `req` on a fresh connection to a proxy in front of a counting
/// upstream; returns what the client got and how many requests the upstream
/// received.
async fn send_raw(req: &[u8]) -> (Exchange, usize) {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let got = exchange(p.addr, req, WAIT).await;
    (got, up.count())
}

/// The request was answered with `status` alone, the connection closed and
/// the upstream saw nothing.
async fn assert_rejected(req: &[u8], status: u16) -> Exchange {
    let (got, reached) = send_raw(req).await;
    assert_eq!(got.statuses(), [status], "{}", got.text);
    assert!(
        got.closed,
        "connection left open after {status}: {}",
        got.text
    );
    assert_eq!(reached, 0, "a rejected request reached the upstream");
    got
}

/// A 400 from the proxy's own framing check: a plain-text local reply.
async fn assert_bad_request(req: &[u8], reason: &str) {
    let got = assert_rejected(req, 400).await;
    let text = got.text.to_ascii_lowercase();
    assert!(text.contains("content-type: text/plain"), "{}", got.text);
    assert!(text.contains("\r\n\r\ncutover: "), "{}", got.text);
    assert!(text.contains(reason), "{reason:?} not in {}", got.text);
}

#[tokio::test]
async fn missing_host_on_http11_is_400_and_closes() {
    assert_bad_request(b"GET / HTTP/1.1\r\nX-Other: 1\r\n\r\n", "missing host").await;
}

#[tokio::test]
async fn two_host_headers_are_400() {
    let req = b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
    assert_bad_request(req, "more than one host").await;
}

#[tokio::test]
async fn ambiguous_transfer_encodings_are_400() {
    let cases: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for req in cases {
        assert_bad_request(req, "transfer-encoding must be exactly").await;
    }
}

/// A GET with `extra` header lines after Host.
fn with_headers(extra: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut req = String::from("GET /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
    for line in extra {
        req.push_str(&line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[tokio::test]
async fn header_block_over_60_kib_is_431() {
    let big = |kib: usize| with_headers([format!("X-Big: {}", "a".repeat(kib * 1024))]);
    let (ok, reached) = send_raw(&big(59)).await;
    assert_eq!(ok.statuses(), [200], "a 59 KiB head is within the limit");
    assert_eq!(reached, 1);
    assert_rejected(&big(61), 431).await;
}

#[tokio::test]
async fn over_100_headers_is_431() {
    // A byte-level upstream with no header limit of its own: the proxy adds
    // X-Forwarded-* and x-request-id, which would push a 100-header request
    // over a default hyper upstream's own limit of 100.
    let up =
        raw_upstream(|_| RawReply::Keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let many = |n: usize| with_headers((0..n).map(|i| format!("X-H{i}: v")));
    // Host + Connection + 98 = 100 headers: the most allowed.
    let ok = exchange(p.addr, &many(98), WAIT).await;
    assert_eq!(
        ok.statuses(),
        [200],
        "100 headers are within the limit: {}",
        ok.text
    );
    assert_eq!(up.heads().len(), 1);

    let got = exchange(p.addr, &many(99), WAIT).await;
    assert_eq!(got.statuses(), [431], "{}", got.text);
    assert!(got.closed, "connection left open after 431");
    assert_eq!(
        up.heads().len(),
        1,
        "a rejected request reached the upstream"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_a_400_and_closes() {
    // Read by Content-Length the body would be "5\r\n" and the rest a second
    // request; read as chunked it is "hello". Either reading is a guess, so
    // the head is refused (as Envoy and nginx do), in either header order,
    // the connection closes, and nothing reaches the upstream, not even the
    // pipelined GET.
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    for head in [
        "Content-Length: 3\r\nTransfer-Encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 3",
    ] {
        let req = format!(
            "POST /smuggle HTTP/1.1\r\nHost: a\r\n{head}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let got = exchange(p.addr, req.as_bytes(), WAIT).await;
        assert_eq!(got.statuses(), [400], "{head}: {}", got.text);
        assert!(
            got.text
                .contains("Content-Length together with Transfer-Encoding"),
            "{}",
            got.text
        );
        assert!(got.closed, "connection left open: {}", got.text);
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

#[tokio::test]
async fn requests_before_a_conflicting_head_are_served_and_chunked_alone_is_fine() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    // A GET and a POST with a Content-Length body, then the conflicting head,
    // pipelined in one write: the first two are answered, the third refused.
    let req = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
                POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 52\r\n\r\n\
                x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
                POST /smuggle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
                0\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert_eq!(got.statuses(), [200, 200, 400], "{}", got.text);
    assert!(got.closed, "{}", got.text);
    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|s| s.uri.path().to_string())
        .collect();
    assert_eq!(paths, ["/first", "/body"]);
    assert_eq!(
        up.requests()[1].body_len,
        52,
        "a body that looks like a head is a body"
    );

    // Transfer-Encoding alone: a chunked body, served, connection kept.
    let req = b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n\
                GET /after HTTP/1.1\r\nHost: a\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert_eq!(got.statuses(), [200, 200], "{}", got.text);
    assert!(!got.closed, "{}", got.text);
}

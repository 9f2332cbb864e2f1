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
async fn content_length_with_transfer_encoding_is_read_as_chunked_then_closed() {
    // Read by Content-Length the body would be "5\r\n" and the rest a second
    // request; read as chunked it is "hello". hyper drops the Content-Length
    // (RFC 9112 6.1), so the proxy forwards the chunked body alone and closes
    // the connection after answering, so the pipelined GET is never served.
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let req = b"POST /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n0\r\n\r\n\
                GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert_eq!(got.statuses().len(), 1, "one response only: {}", got.text);
    assert!(got.closed, "connection left open: {}", got.text);

    let seen = up.requests();
    assert_eq!(seen.len(), 1, "the pipelined request must not be served");
    let s = &seen[0];
    assert_eq!(s.uri.path(), "/smuggle");
    // Small bodies are buffered for retries and re-framed with their real
    // length; larger ones stream chunked. Never both framings, never the
    // client's bogus Content-Length.
    let te: Vec<_> = s.headers.get_all("transfer-encoding").iter().collect();
    match s.headers.get("content-length") {
        Some(cl) => {
            assert_eq!(cl, "5", "{:?}", s.headers);
            assert!(te.is_empty(), "{:?}", s.headers);
        }
        None => assert_eq!(te, ["chunked"]),
    }
    assert_eq!(
        s.body_len, 5,
        "the chunked body, not the Content-Length one"
    );
    assert_eq!(got.statuses(), [200], "{}", got.text);
}

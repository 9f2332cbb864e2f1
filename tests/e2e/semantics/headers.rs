//! Header hygiene: hop-by-hop stripping both ways (RFC 9110 7.6.1), the
//! X-Forwarded-* headers, x-request-id and Host preservation.

use std::time::Duration;

use super::kit::{exchange, one_group, raw_upstream, RawReply};
use crate::support::*;

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

#[tokio::test]
async fn request_hop_by_hop_headers_never_reach_the_upstream() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;

    // `Connection: close` makes the proxy close after answering, so the raw
    // read ends promptly; the rest is what is under test.
    let req = "GET /hop HTTP/1.1\r\n\
               Host: app.example\r\n\
               Connection: close, X-Secret\r\n\
               Connection: x-other\r\n\
               Keep-Alive: timeout=5\r\n\
               Proxy-Connection: keep-alive\r\n\
               TE: trailers, deflate\r\n\
               Upgrade: h2c\r\n\
               X-Secret: 1\r\n\
               X-Other: 1\r\n\
               X-Kept: yes\r\n\
               \r\n";
    let got = exchange(p.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(got.statuses(), [200], "{}", got.text);

    let req = "GET /no-trailers HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nTE: deflate\r\n\r\n";
    let got = exchange(p.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(got.statuses(), [200], "{}", got.text);

    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let h = &seen[0].headers;
    for name in HOP_BY_HOP
        .iter()
        .filter(|n| **n != "te")
        .chain(&["x-secret", "x-other"])
    {
        assert!(!h.contains_key(*name), "{name} reached the upstream: {h:?}");
    }
    let te: Vec<_> = h.get_all("te").iter().collect();
    assert_eq!(te, ["trailers"], "only `TE: trailers` survives");
    assert_eq!(h["x-kept"], "yes");
    assert!(
        !seen[1].headers.contains_key("te"),
        "TE without trailers is dropped"
    );
}

#[tokio::test]
async fn response_hop_by_hop_headers_never_reach_the_client() {
    let up = raw_upstream(|_| {
        RawReply::Keep(
            b"HTTP/1.1 200 OK\r\n\
              Connection: x-internal\r\n\
              X-Internal: 1\r\n\
              Keep-Alive: timeout=5, max=100\r\n\
              Proxy-Connection: keep-alive\r\n\
              Upgrade: h2c\r\n\
              Transfer-Encoding: chunked\r\n\
              X-Kept: yes\r\n\
              \r\n\
              5\r\nhello\r\n0\r\n\r\n",
        )
    })
    .await;
    let p = proxy(&one_group(up.addr, "http1")).await;

    for (version, client) in [("HTTP/1.1", http1_client()), ("h2", h2_client())] {
        let got = get(&client, &p.url("/"), &[]).await;
        assert_eq!(got.status, 200, "{version}");
        assert_eq!(got.body, "hello", "{version}");
        let h = &got.headers;
        for name in ["x-internal", "keep-alive", "proxy-connection", "upgrade"] {
            assert!(
                !h.contains_key(name),
                "{version}: {name} reached the client: {h:?}"
            );
        }
        for v in h.get_all("connection") {
            assert!(
                !v.to_str().unwrap().contains("x-internal"),
                "{version}: {h:?}"
            );
        }
        // The proxy frames the body itself. (Codings other than chunked are
        // a 502: resilience::upstream_edge.)
        for v in h.get_all("transfer-encoding") {
            assert_eq!(v, "chunked", "{version}: {h:?}");
        }
        assert_eq!(h["x-kept"], "yes", "{version}");
    }
    assert_eq!(up.heads().len(), 2);
}

#[tokio::test]
async fn forwarded_headers_and_host_reach_an_http1_upstream() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let c = http1_client();
    let got = get(
        &c,
        &p.url("/fwd"),
        &[("host", "app.example:8080"), ("x-forwarded-for", "1.2.3.4")],
    )
    .await;
    assert_eq!(got.status, 200);

    let seen = &up.requests()[0];
    assert_eq!(seen.version, http::Version::HTTP_11);
    let h = &seen.headers;
    assert_eq!(
        h.get_all("host").iter().collect::<Vec<_>>(),
        ["app.example:8080"]
    );
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example:8080");

    // Without an incoming X-Forwarded-For the client address starts the list.
    get(&c, &p.url("/fwd"), &[("host", "app.example")]).await;
    assert_eq!(up.requests()[1].headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn every_x_forwarded_for_line_is_kept() {
    // Two field lines are one comma-separated list (RFC 9110 5.3); the hops
    // in the second line must not be lost.
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let headers = [
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
    ];
    let got = get(&http1_client(), &p.url("/"), &headers).await;
    assert_eq!(got.status, 200);
    let xff: Vec<_> = up.requests()[0]
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .cloned()
        .collect();
    assert_eq!(xff, ["1.1.1.1, 2.2.2.2, 127.0.0.1"]);
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

#[tokio::test]
async fn request_id_is_generated_when_absent_and_kept_when_present() {
    let up = upstream("app").await;
    let p = proxy(&one_group(up.addr, "http1")).await;
    let c = http1_client();
    get(&c, &p.url("/a"), &[]).await;
    get(&c, &p.url("/b"), &[]).await;
    get(&c, &p.url("/c"), &[("x-request-id", "client-chosen-42")]).await;

    let ids: Vec<String> = up
        .requests()
        .iter()
        .map(|s| {
            let all: Vec<_> = s.headers.get_all("x-request-id").iter().collect();
            assert_eq!(all.len(), 1, "exactly one x-request-id: {all:?}");
            all[0].to_str().unwrap().to_owned()
        })
        .collect();
    assert!(is_uuid_v4(&ids[0]), "{}", ids[0]);
    assert!(is_uuid_v4(&ids[1]), "{}", ids[1]);
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    assert_eq!(ids[2], "client-chosen-42");
}

//! One host, routed and forwarded: the target's authority wins over Host on
//! HTTP/1.1 (RFC 9112 3.2.2) and replaces it, `:authority` wins on HTTP/2 and
//! a conflicting `host` is a 400; invalid Host values are a 400. Each test
//! asserts which route answered and what the upstream received.

use std::time::Duration;

use bytes::Bytes;
use http::Request;

use super::kit::exchange;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(3);

/// Two routes: `a.example` goes to upstream `a`, every other host to `b`.
async fn two_hosts() -> (Upstream, Upstream, Proxy) {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let yaml = format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\n\
         groups:\n  a:\n    endpoints: [\"{}\"]\n  b:\n    endpoints: [\"{}\"]\n\
         routes:\n  - name: a\n    hostnames: [a.example]\n    rules:\n      - name: all\n        backends: [{{group: a}}]\n\
         \x20 - name: other\n    rules:\n      - name: all\n        backends: [{{group: b}}]\n",
        a.addr, b.addr
    );
    let p = proxy(&yaml).await;
    (a, b, p)
}

fn hosts(seen: &Seen) -> Vec<String> {
    seen.headers
        .get_all("host")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn absolute_form_authority_is_routed_and_forwarded_as_host() {
    let (a, b, p) = two_hosts().await;
    let req = b"GET http://a.example/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert_eq!(got.statuses(), [200], "{}", got.text);
    assert!(
        got.text.ends_with("\r\n\r\na"),
        "route a answers: {}",
        got.text
    );
    assert_eq!(b.count(), 0);
    let seen = &a.requests()[0];
    assert_eq!(seen.uri, "/x");
    assert_eq!(
        hosts(seen),
        ["a.example"],
        "Host replaced by the target's authority"
    );
    assert_eq!(seen.headers["x-forwarded-host"], "a.example");

    // And the other way round: the Host says a.example, the target another.
    let req =
        b"GET http://other.example/y HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert!(
        got.text.ends_with("\r\n\r\nb"),
        "route other answers: {}",
        got.text
    );
    assert_eq!(hosts(&b.requests()[0]), ["other.example"]);
}

#[tokio::test]
async fn invalid_host_values_are_400_and_reach_no_upstream() {
    let (a, b, p) = two_hosts().await;
    let cases: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: evil@a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
        b"GET http://evil@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ];
    for req in cases {
        let got = exchange(p.addr, req, WAIT).await;
        let shown = String::from_utf8_lossy(req);
        assert_eq!(got.statuses(), [400], "{shown}: {}", got.text);
        assert!(got.closed, "{shown}: connection left open");
        assert!(got.text.contains("\r\n\r\ncutover: "), "{}", got.text);
    }
    assert_eq!(
        a.count() + b.count(),
        0,
        "a rejected request reached an upstream"
    );
}

/// An h2c connection made with the `h2` crate, which sends what it is given
/// (a `host` header next to `:authority` included).
async fn h2_send(p: &Proxy, uri: &str, host: Option<&str>) -> (u16, Bytes) {
    let tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
        out.extend_from_slice(&chunk.unwrap());
    }
    (status, Bytes::from(out))
}

#[tokio::test]
async fn h2_authority_wins_and_a_conflicting_host_is_400() {
    let (a, b, p) = two_hosts().await;
    let (status, body) = h2_send(&p, "http://a.example/x", Some("b.example")).await;
    assert_eq!(status, 400, "{body:?}");
    assert!(body.starts_with(b"cutover: "), "{body:?}");
    assert_eq!(
        a.count() + b.count(),
        0,
        "the conflicting request was forwarded"
    );

    let (status, body) = h2_send(&p, "http://a.example/x", Some("A.example")).await;
    assert_eq!(
        (status, &body[..]),
        (200, &b"a"[..]),
        "the same host in another case"
    );
    let (status, body) = h2_send(&p, "http://a.example/y", None).await;
    assert_eq!((status, &body[..]), (200, &b"a"[..]));
    let seen = a.requests();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            hosts(s),
            ["a.example"],
            "one Host, the :authority: {:?}",
            s.headers
        );
    }
    let (status, _) = h2_send(&p, "http://evil@a.example/", None).await;
    assert_eq!(status, 400, "userinfo in :authority");
}

#[tokio::test]
async fn connection_nominating_the_request_id_does_not_lose_it() {
    let (a, _b, p) = two_hosts().await;
    let req = b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close, x-request-id\r\n\
                X-Request-Id: client-id\r\n\r\n";
    let got = exchange(p.addr, req, WAIT).await;
    assert_eq!(got.statuses(), [200], "{}", got.text);
    let seen = &a.requests()[0];
    let ids: Vec<_> = seen.headers.get_all("x-request-id").iter().collect();
    assert_eq!(
        ids.len(),
        1,
        "the upstream gets the id cutover logs: {:?}",
        seen.headers
    );
    assert_ne!(ids[0], "client-id", "the hop-by-hop id is not adopted");
}

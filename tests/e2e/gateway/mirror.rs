//! RequestMirror, from the Gateway API text: "Requests are sent to the
//! specified destination, but responses from that destination are
//! ignored", to a single endpoint of the mirror backend, for `percent` or
//! `fraction` of the requests, several mirrors per rule. Echo upstreams
//! report what they received; a blackholed mirror must cost the primary
//! nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::net::TcpListener;

use super::{base, Running};
use crate::metrics::kit::sample;
use crate::support::*;

/// `cutover_mirror_requests_total{route,group,outcome}` from `/metrics`.
async fn mirrored(admin: std::net::SocketAddr, route: &str, group: &str, outcome: &str) -> u64 {
    let text = get(&http1_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .body;
    let labels = [("route", route), ("group", group), ("outcome", outcome)];
    sample(&text, "cutover_mirror_requests_total", &labels).map_or(0, |v| v as u64)
}

/// Waits (at most 5 s) until the mirrors' request counts stop moving for
/// 100 ms: copies are sent after the primary answers, not before.
async fn settle(mirrors: &[&Upstream]) -> Vec<usize> {
    let start = Instant::now();
    let mut last: Vec<usize> = mirrors.iter().map(|m| m.count()).collect();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now: Vec<usize> = mirrors.iter().map(|m| m.count()).collect();
        if now == last {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "mirrors never settled"
        );
        last = now;
    }
}

/// `got` of `n` within 3 standard deviations of `n * p`, as the issue asks
/// (a false failure about once in 370 runs per assertion).
fn within_3_sigma(got: usize, n: usize, p: f64, what: &str) {
    super::assert_share_within(got, n, p, 3.0, what);
}

fn route(filters: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: web
spec:
  hostnames: [shop.example.com]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{{name: x-rule, value: mirrored}}]
{filters}
    backendRefs:
    - name: shop-v1
      port: 8080
"#
    )
}

async fn start(tag: &str, groups: &[(&str, &Upstream)], filters: &str) -> (Running, TempDir) {
    let dir = TempDir::new(tag);
    std::fs::write(dir.path("00-cutover.yaml"), base(groups)).unwrap();
    std::fs::write(dir.path("httproute.yaml"), route(filters)).unwrap();
    (Running::start(&dir.0).await, dir)
}

/// The mirror receives the request as the primary does (method, path and
/// query, headers including the rule's, body, Host); its answer is never
/// the client's. A body over the mirror's limit is not copied, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_receives_what_the_primary_receives() {
    let primary = upstream("shop-v1").await;
    let shadow = upstream("shop-v2").await;
    let filters = "    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shop-v2, port: 8080}";
    let (p, _dir) = start(
        "mirror-copy",
        &[("shop-v1", &primary), ("shop-v2", &shadow)],
        filters,
    )
    .await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/orders?id=7", p.public))
        .header("host", "shop.example.com")
        .header("x-test", "one")
        .body(Full::new(Bytes::from_static(b"hello mirror")))
        .unwrap();
    let got = send(&http1_client(), req).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "shop-v1"));
    until("the copy arrives", Duration::from_secs(5), || {
        shadow.count() == 1
    })
    .await;
    let (a, b) = (&primary.requests()[0], &shadow.requests()[0]);
    assert_eq!(b.method, Method::POST);
    assert_eq!(b.uri.path_and_query(), a.uri.path_and_query());
    assert_eq!(b.uri.path_and_query().unwrap().as_str(), "/orders?id=7");
    assert_eq!(&b.body[..], b"hello mirror");
    assert_eq!(b.body, a.body);
    for name in [
        "host",
        "x-test",
        "x-rule",
        "x-request-id",
        "x-forwarded-for",
    ] {
        assert_eq!(b.headers.get(name), a.headers.get(name), "{name}");
    }
    assert_eq!(b.headers["host"], "shop.example.com");
    assert_eq!(b.headers["x-rule"], "mirrored");

    // Over the default 64 KiB: the primary gets it, the mirror does not.
    let big = vec![b'x'; 100 * 1024];
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{}/upload", p.public))
        .header("host", "shop.example.com")
        .body(Full::new(Bytes::from(big)))
        .unwrap();
    let got = send(&http1_client(), req).await;
    assert_eq!(got.status, 200);
    assert_eq!(primary.requests()[1].body_len, 100 * 1024);
    let admin = p.admin;
    let start = Instant::now();
    while mirrored(admin, "shop", "shop-v2", "body_too_large").await != 1 {
        assert!(start.elapsed() < Duration::from_secs(3), "not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mirrored(admin, "shop", "shop-v2", "answered").await, 1);
    assert_eq!(shadow.count(), 1);
    p.stop().await;
}

/// Two mirrors on one rule, one at `fraction: 3/10`, one at `percent: 50`:
/// over 600 requests each copies its share (3 sigma), every copy counted
/// `answered`, and the primary serves every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_mirrors_copy_their_percent_and_fraction() {
    let primary = upstream("shop-v1").await;
    let a = upstream("audit").await;
    let b = upstream("shop-v2").await;
    let filters = "    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: audit, port: 80}\n        fraction: {numerator: 3, denominator: 10}\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shop-v2, port: 8080}\n        percent: 50";
    let (p, _dir) = start(
        "mirror-share",
        &[("shop-v1", &primary), ("audit", &a), ("shop-v2", &b)],
        filters,
    )
    .await;
    let c = http1_client();
    let url = format!("http://{}/catalog", p.public);
    let n = 600;
    for _ in 0..n {
        let got = get(&c, &url, &[("host", "shop.example.com")]).await;
        assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "shop-v1"));
    }
    let counts = settle(&[&a, &b]).await;
    assert_eq!(primary.count(), n);
    within_3_sigma(counts[0], n, 0.3, "fraction 3/10");
    within_3_sigma(counts[1], n, 0.5, "percent 50");
    let admin = p.admin;
    assert_eq!(
        mirrored(admin, "shop", "audit", "answered").await,
        counts[0] as u64
    );
    assert_eq!(
        mirrored(admin, "shop", "shop-v2", "answered").await,
        counts[1] as u64
    );
    p.stop().await;
}

/// Accepts connections and never reads or answers: a blackholed mirror.
async fn blackhole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

/// cutover's own `mirror` list: one mirror blackholed (accepts, never
/// answers), one down (refused). Every primary request is answered at once
/// (far under the mirrors' 10 s timeout); the blackholed mirror holds its
/// `max_in_flight` copies and drops the rest, the refused one fails each;
/// nothing of it shows in the primary's series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_or_down_mirror_costs_the_primary_nothing() {
    let primary = upstream("app").await;
    let (hole, _task) = blackhole().await;
    let down = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
         groups:\n  app: {{endpoints: [\"{}\"]}}\n  \
           hole: {{endpoints: [\"{hole}\"]}}\n  \
           down: {{endpoints: [\"{down}\"]}}\n\
         routes:\n  - name: web\n    rules:\n      - name: all\n        backends: [{{group: app}}]\n        \
           mirror:\n          - {{group: hole, max_in_flight: 8, timeout: 10s}}\n          \
           - {{group: down, timeout: 10s}}\n",
        primary.addr
    );
    let p = launch(&yaml).admin(None).start().await;
    let admin = p.admin.unwrap();
    let c = http1_client();
    let n = 40;
    for i in 0..n {
        let started = Instant::now();
        let got = get(&c, &p.url("/"), &[]).await;
        assert_eq!(
            (got.status.as_u16(), got.body.as_str()),
            (200, "app"),
            "request {i}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "request {i} took {took:?}");
    }
    assert_eq!(primary.count(), n);
    let start = Instant::now();
    while mirrored(admin, "web", "down", "failed").await != n as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "refused copies not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        mirrored(admin, "web", "hole", "dropped").await,
        n as u64 - 8
    );
    assert_eq!(mirrored(admin, "web", "hole", "answered").await, 0);
    assert_eq!(mirrored(admin, "web", "hole", "timeout").await, 0);

    let text = get(&c, &p.admin_url("/metrics"), &[]).await.body;
    let attempts = sample(
        &text,
        "cutover_upstream_attempts_total",
        &[("route", "web"), ("group", "app")],
    );
    assert_eq!(attempts, Some(n as f64), "only the primary's attempts");
    for group in ["hole", "down"] {
        let needle = format!("group=\"{group}\"");
        let primary_series = [
            "cutover_requests",
            "cutover_request_duration",
            "http_request_duration",
            "cutover_upstream_attempts",
            "cutover_analysis",
        ];
        for line in text.lines().filter(|l| l.contains(&needle)) {
            assert!(
                !primary_series.iter().any(|f| line.starts_with(f)),
                "a mirror in the primary's series: {line}"
            );
        }
    }
    p.shut_down().await;
}

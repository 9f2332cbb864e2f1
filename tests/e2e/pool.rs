//! cutover's own upstream connections, seen from an upstream that counts
//! the connections it accepts and the ones that closed: reuse before any
//! connect, the h2 stream limit, the idle timeout, a pool's end with its
//! last table, and a connection closed while idle never carrying a request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::support::{get, http1_client, proxy, send, until};

/// How the counting upstream treats its connections.
#[derive(Clone, Copy)]
enum Serve {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/1.1, closing each connection this long after its first response.
    Http1ClosingAfter(Duration),
    /// h2c with this `SETTINGS_MAX_CONCURRENT_STREAMS`.
    H2(u32),
}

/// An upstream that counts accepted and closed connections and requests;
/// with `gate`, each request waits for a permit before it is answered.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Counting {
    async fn start(serve: Serve, gated: bool) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Counting {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            closed: Arc::default(),
            requests: Arc::default(),
            gate: Arc::new(Semaphore::new(if gated {
                0
            } else {
                Semaphore::MAX_PERMITS
            })),
        };
        let (accepted, closed) = (Arc::clone(&up.accepted), Arc::clone(&up.closed));
        let (requests, gate) = (Arc::clone(&up.requests), Arc::clone(&up.gate));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (closed, requests, gate) = (
                    Arc::clone(&closed),
                    Arc::clone(&requests),
                    Arc::clone(&gate),
                );
                tokio::spawn(async move {
                    let answered = Arc::new(tokio::sync::Notify::new());
                    let told = Arc::clone(&answered);
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (requests, gate, told) =
                            (Arc::clone(&requests), Arc::clone(&gate), Arc::clone(&told));
                        async move {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let _ = req.into_body().collect().await;
                            gate.acquire().await.unwrap().forget();
                            told.notify_one();
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let io = TokioIo::new(stream);
                    match serve {
                        Serve::Http1 => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await;
                        }
                        Serve::Http1ClosingAfter(after) => {
                            let conn = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service);
                            tokio::select! {
                                _ = conn => {}
                                () = async {
                                    answered.notified().await;
                                    tokio::time::sleep(after).await;
                                } => {}
                            }
                        }
                        Serve::H2(streams) => {
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .max_concurrent_streams(streams)
                                .serve_connection(io, service)
                                .await;
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        up
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn yaml(addr: SocketAddr, group_extra: &str, rule_extra: &str) -> String {
    format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
         groups: {{app: {{endpoints: [\"{addr}\"]{group_extra}}}}}\n\
         routes: [{{name: web, rules: [{{name: all, backends: [{{group: app}}]{rule_extra}}}]}}]\n"
    )
}

/// `cutover_upstream_<name>_total{group="app"}` from the scrape.
fn group_counter(p: &crate::support::Proxy, name: &str) -> u64 {
    let text = p.app.metrics().encode(
        p.app.routes.load().figures(0),
        cutover::metrics::Format::Prometheus,
    );
    let prefix = format!("cutover_upstream_{name}_total{{group=\"app\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection_and_the_ratio_says_so() {
    let up = Counting::start(Serve::Http1, false).await;
    let p = proxy(&yaml(up.addr, "", "")).await;
    let c = http1_client();
    for _ in 0..50 {
        assert_eq!(get(&c, &p.url("/"), &[]).await.status, 200);
    }
    assert_eq!(
        up.accepted(),
        1,
        "an idle connection existed for every request"
    );
    assert_eq!(group_counter(&p, "requests"), 50);
    assert_eq!(group_counter(&p, "connects"), 1);
}

#[tokio::test]
async fn the_h2_stream_limit_opens_a_second_connection_only_when_reached() {
    let up = Counting::start(Serve::H2(2), true).await;
    let p = proxy(&yaml(up.addr, ", protocol: h2", "")).await;
    let mut held = Vec::new();
    for n in 1..=3 {
        let url = p.url("/");
        held.push(tokio::spawn(async move {
            get(&http1_client(), &url, &[]).await
        }));
        until(
            "the upstream has the request",
            Duration::from_secs(5),
            || up.requests() == n,
        )
        .await;
        let want = if n <= 2 { 1 } else { 2 };
        assert_eq!(up.accepted(), want, "{n} streams open");
    }
    up.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
    // Both connections stay shared: more requests open none.
    let c = http1_client();
    for _ in 0..20 {
        assert_eq!(get(&c, &p.url("/"), &[]).await.status, 200);
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn idle_connections_close_at_their_timeout() {
    let up = Counting::start(Serve::Http1, false).await;
    let p = proxy(&yaml(up.addr, ", pool: {idle_timeout: 400ms}", "")).await;
    let started = std::time::Instant::now();
    assert_eq!(get(&http1_client(), &p.url("/"), &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(up.closed(), 0, "closed before its idle timeout");
    until("the idle connection closed", Duration::from_secs(5), || {
        up.closed() == 1
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    // The next request opens a new one.
    assert_eq!(get(&http1_client(), &p.url("/"), &[]).await.status, 200);
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn an_endpoints_pool_closes_with_its_last_table() {
    let old = Counting::start(Serve::Http1, false).await;
    let new = Counting::start(Serve::Http1, false).await;
    let p = proxy(&yaml(old.addr, "", "")).await;
    assert_eq!(get(&http1_client(), &p.url("/"), &[]).await.status, 200);
    assert_eq!((old.accepted(), old.closed()), (1, 0));
    let config = cutover::config::parse_yaml(&yaml(new.addr, "", "")).unwrap();
    cutover::reload::replace_base(&p.app, &config).unwrap();
    until(
        "the old endpoint's idle connection closed",
        Duration::from_secs(5),
        || old.closed() == 1,
    )
    .await;
    assert_eq!(p.app.inherited.upstream.cached_clients(), 1);
    assert_eq!(get(&http1_client(), &p.url("/"), &[]).await.status, 200);
    assert_eq!((new.accepted(), old.accepted()), (1, 1));
}

/// The upstream closes every connection 30 ms after its response; the POSTs
/// come later and cannot be retried, yet none fails: a closed idle
/// connection is dropped from the pool, never written to.
#[tokio::test]
async fn a_connection_closed_while_idle_never_carries_a_post() {
    let up = Counting::start(Serve::Http1ClosingAfter(Duration::from_millis(30)), false).await;
    let p = proxy(&yaml(up.addr, "", ", retry: {attempts: 0}")).await;
    let c = http1_client();
    for i in 0..5 {
        let req = Request::builder()
            .method(Method::POST)
            .uri(p.url("/"))
            .body(Full::new(Bytes::from_static(b"order")))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!(got.status, 200, "POST {i}: {}", got.body);
        until("the upstream closed it", Duration::from_secs(5), || {
            up.closed() == i + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.accepted(), 5, "one fresh connection per POST");
}

#[test]
fn a_zero_idle_timeout_and_an_unknown_pool_field_are_rejected_by_path() {
    let compile = |extra: &str| {
        let config = cutover::config::parse_yaml(&yaml("127.0.0.1:9".parse().unwrap(), extra, ""))
            .map_err(|e| e.to_string())?;
        cutover::compile::compile(&config, &cutover::route::Inherited::default(), 1)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let zero = compile(", pool: {idle_timeout: 0s}").unwrap_err();
    assert!(
        zero.contains("groups.app.pool.idle_timeout") && zero.contains("more than 0s"),
        "{zero}"
    );
    let unknown = compile(", pool: {max_idel: 3}").unwrap_err();
    assert!(unknown.contains("max_idel"), "{unknown}");
    compile(", pool: {idle_timeout: 5s, max_idle: 0}").unwrap();
}

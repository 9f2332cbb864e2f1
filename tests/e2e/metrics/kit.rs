//! Helpers for the metrics tests: an upstream with a delay and failing paths,
//! the proxy with an admin listener, scrapes and sample lookup.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::*;

/// Starts an upstream answering `name` after `delay`; paths under `/fail`
/// get a 500.
pub async fn slow_upstream(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |req: Request<Incoming>| async move {
                tokio::time::sleep(delay).await;
                let mut resp = Response::new(Full::new(Bytes::from(name)));
                if req.uri().path().starts_with("/fail") {
                    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                }
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A config with route `web`: requests with `x-canary: always` go to
/// `canary` (rule `testers`), the rest to `stable` (rule `default`), for
/// host `app.test` only (other hosts get 404 `no_route`).
pub fn two_versions(stable: SocketAddr, canary: SocketAddr, extra: &str) -> String {
    format!(
        r#"listeners:
  - name: public
    address: "127.0.0.1:0"
groups:
  stable: {{ endpoints: ["{stable}"] }}
  canary: {{ endpoints: ["{canary}"] }}
routes:
  - name: web
    hostnames: [app.test]
    rules:
      - name: testers
        matches: [{{ headers: [{{ name: x-canary, value: always }}] }}]
        backends: [{{ group: canary }}]
      - name: default
        backends: [{{ group: stable }}]
{extra}"#
    )
}

/// The proxy with an admin listener.
pub struct Admin {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    _proxy: crate::support::Proxy,
}

impl Admin {
    pub async fn start(yaml: &str) -> Admin {
        let proxy = crate::support::launch(yaml).admin(None).start().await;
        Admin {
            public: proxy.addr,
            admin: proxy.admin.unwrap(),
            _proxy: proxy,
        }
    }

    /// GET `path` on the public listener with `Host: app.test`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut all = vec![("host", "app.test")];
        all.extend_from_slice(headers);
        let url = format!("http://{}{}", self.public, path);
        get(&http1_client(), &url, &all).await
    }

    /// The scrape in the classic text format.
    pub async fn scrape(&self) -> String {
        let got = get(
            &http1_client(),
            &format!("http://{}/metrics", self.admin),
            &[],
        )
        .await;
        assert_eq!(got.status, 200);
        got.body
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Value {
        let url = format!("http://{}/v1/stats", self.admin);
        serde_json::from_str(&get(&http1_client(), &url, &[]).await.body).unwrap()
    }

    /// Scrapes until `check` holds (requests record when their response body
    /// is dropped, a moment after the client has read it).
    pub async fn scrape_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.scrape().await;
            if check(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{what} never held; last scrape:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The value of the sample `name{labels...}` whose labels include `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name).then_some((rest.trim_end_matches('}'), value))
        })
        .find(|(set, _)| {
            labels.iter().all(|(k, v)| {
                set.split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\"").as_str())
            })
        })
        .and_then(|(_, v)| v.parse().ok())
}

/// Samples in a scrape (lines that are not comments).
pub fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Runs futures concurrently on the runtime and waits for all.
pub async fn join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

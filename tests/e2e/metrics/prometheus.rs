//! The scrape checked by the real tools (Debian package `prometheus`):
//! `promtool check metrics` on a live scrape, and a Prometheus server that
//! scrapes the proxy and answers per-version success-rate queries.
//! Skipped, saying so, only when the binaries are absent; under
//! `CUTOVER_REQUIRE_ALL=1` (CI, which installs them) a skip is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kit::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_live_scrape() {
    if !tool_or_skip(
        "promtool_accepts_a_live_scrape",
        "promtool",
        "apt-get install prometheus",
    ) {
        return;
    }
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::ZERO).await;
    let p = Admin::start(&two_versions(stable, canary, "")).await;
    p.get("/", &[]).await;
    p.get("/fail", &[("x-canary", "always")]).await;
    get(
        &http1_client(),
        &format!("http://{}/", p.public),
        &[("host", "x.test")],
    )
    .await;
    let text = p
        .scrape_until("3 requests", |t| {
            sample(t, "cutover_requests_total", &[("reason", "no_route")]).is_some()
        })
        .await;
    let out = run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &text);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}

/// A Prometheus server, killed on drop.
pub(crate) struct Server {
    child: Child,
    /// Its HTTP API, `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Scrapes `target` every second, adding the labels Kubernetes service
    /// discovery adds (so Flagger's queries can select the "pod").
    fn start(target: std::net::SocketAddr) -> Server {
        let config = format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cutover
    static_configs:
      - targets: ["{target}"]
        labels:
          kubernetes_namespace: test
          kubernetes_pod_name: podinfo-6d5c7b9f4-x2k4p
"#
        );
        Server::run(config, free_port())
    }

    /// Scrapes every target each `interval` (e.g. `250ms`) as job `fleet`,
    /// listening on `port` (so configs can name it before it starts).
    pub(crate) fn fleet(targets: &[std::net::SocketAddr], interval: &str, port: u16) -> Server {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            r#"global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: 1s
scrape_configs:
  - job_name: fleet
    static_configs:
      - targets: [{}]
"#,
            targets.join(", ")
        );
        Server::run(config, port)
    }

    fn run(config: String, port: u16) -> Server {
        let dir = TempDir::new("prometheus");
        std::fs::write(dir.path("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path("log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Instant query; `None` while the server is not up yet.
    async fn query(&self, promql: &str) -> Option<Value> {
        let url = format!("{}/api/v1/query?query={}", self.url, urlencode(promql));
        let req = http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = http1_client().request(req).await.ok()?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).ok()?;
        (v["status"] == "success").then(|| v["data"]["result"].clone())
    }

    /// The single value of a query, or per label `by` when it has several.
    async fn values(&self, promql: &str, by: &str) -> Vec<(String, f64)> {
        let Some(Value::Array(result)) = self.query(promql).await else {
            return Vec::new();
        };
        result
            .iter()
            .filter_map(|r| {
                let v = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"][by].as_str().unwrap_or("").to_string(), v))
            })
            .collect()
    }

    /// Polls until `promql` returns exactly `want` (single value).
    pub(crate) async fn until(&self, promql: &str, want: f64) {
        let start = Instant::now();
        loop {
            let got = self.values(promql, "").await;
            if got.len() == 1 && got[0].1 == want {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(self.dir.path("log")).unwrap_or_default();
                panic!("{promql} = {got:?}, want {want}; prometheus log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends one batch: `n` requests to stable, and `n` to canary of which a
/// quarter fail (so the canary's success rate is 0.75 in every batch).
async fn batch(p: &Admin, n: usize) {
    for i in 0..n {
        p.get("/", &[]).await;
        let path = if i % 4 == 0 { "/fail" } else { "/" };
        p.get(path, &[("x-canary", "always")]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_computes_the_per_version_success_rate() {
    if !tool_or_skip(
        "prometheus_computes_the_per_version_success_rate",
        "prometheus",
        "apt-get install prometheus",
    ) {
        return;
    }
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::ZERO).await;
    let p = Admin::start(&two_versions(stable, canary, "")).await;
    let server = Server::start(p.admin);
    server.until(r#"up{job="cutover"}"#, 1.0).await;

    // Two batches with the same proportions, each waited for until scraped:
    // every series (also those first seen in batch 1) then has samples before
    // and after batch 2, and rate() keeps the ratios exact.
    let total = r#"sum(cutover_requests_total{group="canary"})"#;
    batch(&p, 4).await;
    server.until(total, 4.0).await;
    batch(&p, 16).await;
    server.until(total, 20.0).await;

    let per_version = r#"sum by (group) (rate(cutover_requests_total{route="web", code_class!="5xx"}[1m]))
        / sum by (group) (rate(cutover_requests_total{route="web"}[1m]))"#;
    let mut got = server.values(per_version, "group").await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let close = |(g, v): &(String, f64), (wg, wv): (&str, f64)| g == wg && (v - wv).abs() < 1e-9;
    assert!(
        got.len() == 2 && close(&got[0], ("canary", 0.75)) && close(&got[1], ("stable", 1.0)),
        "{got:?}"
    );

    // Flagger's built-in request-success-rate of the kubernetes provider,
    // rendered for namespace test, target podinfo, interval 1m.
    let flagger = r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[1m]))
        / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) * 100"#;
    let got = server.values(flagger, "").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!((got[0].1 - 87.5).abs() < 1e-9, "{got:?}");

    // The same, per version: the MetricTemplate the README documents.
    let canary_only = r#"sum(rate(http_request_duration_seconds_count{group="canary",status!~"5.*"}[1m]))
        / sum(rate(http_request_duration_seconds_count{group="canary"}[1m])) * 100"#;
    let got = server.values(canary_only, "").await;
    assert!(got.len() == 1 && (got[0].1 - 75.0).abs() < 1e-9, "{got:?}");

    let p99 = r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{group="canary"}[1m])))"#;
    let got = server.values(p99, "").await;
    assert!(
        got.len() == 1 && got[0].1 > 0.0 && got[0].1 <= 0.5,
        "{got:?}"
    );
}

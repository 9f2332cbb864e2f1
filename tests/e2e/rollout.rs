//! Rollouts judged by the proxy itself, end to end: real upstreams whose
//! error rate and latency the test sets, the real proxy with its admin API,
//! load from real clients. A bad canary is rolled back under load without a
//! lost request, a good one is promoted through every step, a restart
//! resumes at its step, pause/resume/abort work, and the Argo (`/v1/analysis`)
//! and Flagger (webhook) endpoints answer as documented.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::{get, http1_client, Launch, TempDir};

mod fleet;
mod httproute;

/// An upstream that answers `name`, fails every `fail_every`-th request
/// with 503 (0: never) and waits `delay_ms` first; both can change live.
#[derive(Clone)]
struct Version {
    addr: SocketAddr,
    fail_every: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

async fn version(name: &'static str, fail_every: u64, delay_ms: u64) -> Version {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let v = Version {
        addr: listener.local_addr().unwrap(),
        fail_every: Arc::new(AtomicU64::new(fail_every)),
        delay_ms: Arc::new(AtomicU64::new(delay_ms)),
        served: Arc::new(AtomicU64::new(0)),
    };
    let shared = v.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let v = shared.clone();
            let service = service_fn(move |_req: Request<Incoming>| {
                let v = v.clone();
                async move {
                    let n = v.served.fetch_add(1, Ordering::Relaxed) + 1;
                    let delay = v.delay_ms.load(Ordering::Relaxed);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let every = v.fail_every.load(Ordering::Relaxed);
                    let mut resp = Response::new(Full::new(Bytes::from(name)));
                    resp.headers_mut()
                        .insert("x-upstream", http::HeaderValue::from_static(name));
                    if every > 0 && n.is_multiple_of(every) {
                        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    v
}

/// A rule `web/split` between `stable` and `canary` with `rollout` (YAML
/// lines indented under `rollout:`).
fn config(stable: &Version, canary: &Version, rollout: &str) -> String {
    crate::support::config_at(
        &[("stable", stable.addr), ("canary", canary.addr)],
        &format!(
            r#"      - name: split
        backends: [{{ group: stable, weight: 100 }}, {{ group: canary, weight: 0 }}]
        rollout:
{rollout}"#
        ),
    )
}

/// The proxy with its admin listener (and a state directory, if given).
struct Proxy {
    public: SocketAddr,
    inner: crate::support::Proxy,
}

impl Proxy {
    async fn start(yaml: &str, state_dir: Option<PathBuf>) -> Proxy {
        let config = cutover::config::parse_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        Proxy::start_with(config, state_dir).await
    }

    async fn start_with(config: cutover::config::Config, state_dir: Option<PathBuf>) -> Proxy {
        let inner = Launch::config(config)
            .admin(None)
            .with(|o| o.state_dir = state_dir)
            .start()
            .await;
        Proxy {
            public: inner.addr,
            inner,
        }
    }

    async fn shut_down(self) {
        self.inner.shut_down().await;
    }

    fn admin_addr(&self) -> SocketAddr {
        self.inner.admin.expect("launched with admin")
    }

    async fn admin(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        self.inner.api(method, path, body).await
    }

    async fn analysis(&self) -> Value {
        let (status, v) = self.admin(Method::GET, "/v1/analysis/web/split", "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn scrape(&self) -> String {
        get(&http1_client(), &self.inner.admin_url("/metrics"), &[])
            .await
            .body
    }

    async fn act(&self, action: &str) -> (StatusCode, Value) {
        let path = format!("/v1/routes/web/rules/split/rollout/{action}");
        self.admin(Method::POST, &path, "").await
    }

    /// Waits until the analysis document satisfies `done` (at most `secs`).
    async fn wait_for(&self, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.analysis().await;
            if done(&v) || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    total: AtomicU64,
    canary: AtomicU64,
    /// Answered by the canary with its own 503.
    canary_errors: AtomicU64,
    /// Anything else that was not a 200 from an upstream: a lost request.
    lost: AtomicU64,
}

/// `clients` keep-alive clients sending until [`Load::finish`] (or 20 s
/// pass), counting what they saw.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let tasks = (0..clients)
            .map(|_| tokio::spawn(client(addr, Arc::clone(&seen), Arc::clone(&stop))))
            .collect();
        Load { stop, seen, tasks }
    }

    async fn finish(self) -> Arc<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.seen
    }
}

async fn client(addr: SocketAddr, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let client = http1_client();
    let url = format!("http://{addr}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let req = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
        seen.total.fetch_add(1, Ordering::Relaxed);
        match client.request(req).await {
            Ok(resp) => {
                let from = resp.headers().get("x-upstream").cloned();
                let canary = from.as_ref().is_some_and(|v| v == "canary");
                seen.canary.fetch_add(u64::from(canary), Ordering::Relaxed);
                let status = resp.status();
                if status == StatusCode::SERVICE_UNAVAILABLE && canary {
                    seen.canary_errors.fetch_add(1, Ordering::Relaxed);
                } else if status != StatusCode::OK || from.is_none() {
                    seen.lost.fetch_add(1, Ordering::Relaxed);
                }
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
            Err(_) => {
                seen.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Proxy {
    /// Sends load from `clients` clients until the analysis satisfies
    /// `done` (at most `secs`); the last document and what clients saw.
    async fn under_load(
        &self,
        clients: usize,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, Arc<Seen>) {
        let load = Load::start(self.public, clients);
        let v = self.wait_for(secs, done).await;
        (v, load.finish().await)
    }
}

fn weight(v: &Value, group: &str) -> u64 {
    v["weights"][group].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_under_load_and_no_request_is_lost() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 4, 0).await; // 25% errors
    let plan = "          canary: canary\n          steps: [10, 50]\n          hold: 200ms\n          metrics: { errors: {} }\n";
    let p = Proxy::start(&config(&stable, &canary, plan), None).await;
    let (status, started) = p.act("start").await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(weight(&started, "canary"), 10, "{started}");

    let load = Load::start(p.public, 4);
    let v = p.wait_for(15, |v| v["phase"] == "rolled_back").await;
    let rolled_back_at = Instant::now();
    // The canary gets nothing from the publish on; give in-flight requests
    // a moment, then count what it still receives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let canary_after = canary.served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;

    assert_eq!(v["phase"], "rolled_back", "{v}");
    assert_eq!(v["verdict"], "fail", "{v}");
    assert_eq!(weight(&v, "canary"), 0, "{v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("canary worse"),
        "{v}"
    );
    assert_eq!(
        canary.served.load(Ordering::Relaxed),
        canary_after,
        "the canary still got requests after the rollback"
    );
    let (total, lost) = (
        seen.total.load(Ordering::Relaxed),
        seen.lost.load(Ordering::Relaxed),
    );
    assert_eq!(lost, 0, "{lost} of {total} requests lost");
    let canary_requests = seen.canary.load(Ordering::Relaxed);
    assert!(
        canary_requests <= 400,
        "{canary_requests} canary requests before the rollback"
    );
    assert!(rolled_back_at.elapsed() < Duration::from_secs(2));

    let scrape = p.scrape().await;
    for want in [
        "cutover_rollout_rollbacks_total{route=\"web\",rule=\"split\"} 1",
        "cutover_analysis_verdict{route=\"web\",rule=\"split\",verdict=\"fail\"} 1",
        "cutover_rollout_step{route=\"web\",rule=\"split\"} 0",
    ] {
        assert!(scrape.contains(want), "missing {want} in the scrape");
    }
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_through_every_step() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    // A 5 pp tolerance keeps the evidence each step needs to a few hundred
    // canary requests.
    let plan = "          canary: canary\n          steps: [20, 50, 100]\n          hold: 300ms\n          tolerance: 5\n          metrics: { errors: {} }\n";
    let p = Proxy::start(&config(&stable, &canary, plan), None).await;
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let load = Load::start(p.public, 4);
    let mut steps_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(18);
    let v = loop {
        let v = p.analysis().await;
        let w = weight(&v, "canary");
        if steps_seen.last() != Some(&w) {
            steps_seen.push(w);
        }
        if v["phase"] != "running" || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen = load.finish().await;
    assert_eq!(v["phase"], "promoted", "{v}");
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(steps_seen, vec![20, 50, 100], "{v}");
    assert_eq!(weight(&v, "stable"), 0);
    assert_eq!(seen.lost.load(Ordering::Relaxed), 0);
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_twice_as_slow_is_rolled_back_on_latency() {
    let stable = version("stable", 0, 2).await;
    let canary = version("canary", 0, 60).await;
    let plan = "          canary: canary\n          steps: [20]\n          hold: 200ms\n";
    let p = Proxy::start(&config(&stable, &canary, plan), None).await;
    // The baseline's p99 is frozen from its last minute: give it some.
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let (v, _seen) = p.under_load(4, 15, |v| v["phase"] == "rolled_back").await;
    assert_eq!(v["phase"], "rolled_back", "{v}");
    assert!(
        v["reason"].as_str().unwrap_or("").contains("latency"),
        "{v}"
    );
    assert!(v["window"]["slow_threshold_ms"].as_f64().is_some(), "{v}");

    // Once the rollout is over (a tick later), requests are no longer timed
    // against its threshold: the request path is back to its idle cost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stable_series = |t: &str, name: &str| {
        let labels = [("route", "web"), ("rule", "split"), ("group", "stable")];
        crate::metrics::kit::sample(t, name, &labels).unwrap_or(-1.0)
    };
    let before = p.scrape().await;
    let client = http1_client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &format!("http://{}/", p.public), &[])
                .await
                .status,
            200
        );
    }
    let after = p.scrape().await;
    let timed = "cutover_analysis_timed_total";
    let requests = "cutover_analysis_requests_total";
    assert!(stable_series(&before, timed) > 0.0, "{before}");
    assert_eq!(stable_series(&after, timed), stable_series(&before, timed));
    assert_eq!(
        stable_series(&after, requests),
        stable_series(&before, requests) + 20.0
    );
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_abort_act_at_once_and_say_why_they_cannot() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    let plan = "          canary: canary\n          steps: [10, 50]\n          hold: 100ms\n          metrics: { errors: {} }\n";
    let p = Proxy::start(&config(&stable, &canary, plan), None).await;
    assert_eq!(
        p.act("pause").await.0,
        StatusCode::NOT_FOUND,
        "nothing to pause yet"
    );
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let (status, again) = p.act("start").await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(p.act("pause").await.0, StatusCode::OK);

    // Paused: a failing canary is not acted on, and keeps its weight.
    canary.fail_every.store(2, Ordering::Relaxed);
    let load = Load::start(p.public, 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let paused = p.analysis().await;
    assert_eq!(paused["phase"], "paused", "{paused}");
    assert_eq!(weight(&paused, "canary"), 10, "{paused}");
    canary.fail_every.store(0, Ordering::Relaxed);
    assert_eq!(p.act("resume").await.0, StatusCode::OK);
    assert_eq!(p.analysis().await["phase"], "running");
    // Abort: the canary's weight goes to 0 at once.
    let (status, aborted) = p.act("abort").await;
    load.finish().await;
    assert_eq!(status, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["phase"], "aborted", "{aborted}");
    assert_eq!(aborted["verdict"], "fail", "{aborted}");
    assert_eq!(weight(&aborted, "canary"), 0, "{aborted}");
    assert_eq!(p.act("abort").await.0, StatusCode::CONFLICT);
    assert_eq!(p.act("dance").await.0, StatusCode::NOT_FOUND);
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_rollout_at_its_step() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    let dir = TempDir::new("rollout-state");
    let plan = "          canary: canary\n          steps: [10, 30, 60]\n          hold: 300ms\n          tolerance: 8\n          metrics: { errors: {} }\n";
    let yaml = config(&stable, &canary, plan);
    let p = Proxy::start(&yaml, Some(dir.0.clone())).await;
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let (v, _seen) = p.under_load(3, 15, |v| v["step"]["index"] == 1).await;
    assert_eq!(v["step"]["index"], 1, "{v}");
    p.shut_down().await;

    let p = Proxy::start(&yaml, Some(dir.0.clone())).await;
    let v = p.analysis().await;
    assert_eq!(v["phase"], "running", "{v}");
    assert_eq!(v["step"]["index"], 1, "resumed at its step: {v}");
    assert_eq!(weight(&v, "canary"), 30, "{v}");
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_and_flagger_read_the_verdict_of_an_externally_driven_canary() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    let plan = "          canary: canary\n          drive: external\n          hold: 100ms\n          tolerance: 5\n          metrics: { errors: {} }\n";
    let p = Proxy::start(&config(&stable, &canary, plan), None).await;
    let flagger = |hook: &'static str| {
        let body = r#"{"name": "web", "namespace": "shop", "phase": "Progressing", "metadata": {"rule": "split"}}"#;
        let path = format!("/v1/flagger/{hook}");
        let p = &p;
        async move { p.admin(Method::POST, &path, body).await.0 }
    };
    // Before any traffic moves: inconclusive, 200 for Argo.
    let v = p.analysis().await;
    assert_eq!(v["verdict"], "inconclusive", "{v}");
    assert_eq!(
        flagger("confirm-traffic-increase").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(flagger("rollout").await, StatusCode::OK);
    assert_eq!(flagger("rollback").await, StatusCode::FORBIDDEN);

    // The controller moves the weight; cutover judges it.
    let set = |c: u32| {
        let body = format!(r#"{{"stable": {}, "canary": {c}}}"#, 100 - c);
        let p = &p;
        async move {
            p.admin(Method::PATCH, "/v1/routes/web/rules/split/weights", &body)
                .await
                .0
        }
    };
    assert_eq!(set(25).await, StatusCode::OK);
    let load = Load::start(p.public, 4);
    let v = p.wait_for(15, |v| v["verdict"] == "pass").await;
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["phase"], "running", "{v}");
    assert_eq!(
        weight(&v, "canary"),
        25,
        "cutover never moves an external canary"
    );
    assert_eq!(flagger("confirm-traffic-increase").await, StatusCode::OK);

    // The canary turns bad: fail, and the hooks say so.
    canary.fail_every.store(2, Ordering::Relaxed);
    // The verdict turns fail in the tick's report a moment before the
    // record's phase follows: wait for the phase.
    let v = p.wait_for(15, |v| v["phase"] == "failed").await;
    load.finish().await;
    assert_eq!(v["phase"], "failed", "{v}");
    assert_eq!(v["verdict"], "fail", "{v}");
    assert_eq!(
        weight(&v, "canary"),
        25,
        "the controller rolls back, not cutover"
    );
    assert_eq!(flagger("rollout").await, StatusCode::FORBIDDEN);
    assert_eq!(flagger("rollback").await, StatusCode::OK);
    assert_eq!(
        flagger("confirm-traffic-increase").await,
        StatusCode::FORBIDDEN
    );
    // The controller rolls back: the rollout ends.
    assert_eq!(set(0).await, StatusCode::OK);
    let v = p.wait_for(5, |v| v["phase"] == "ended").await;
    assert_eq!(v["phase"], "ended", "{v}");
    let (status, _) = p.admin(Method::GET, "/v1/analysis/web/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, all) = p.admin(Method::GET, "/v1/analysis", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["analyses"].as_array().map(Vec::len), Some(1), "{all}");
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_injected_on_the_canary_rehearses_the_rollback() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 0, 0).await;
    let yaml = format!(
        r#"listeners:
  - name: public
    address: "127.0.0.1:0"
groups:
  stable: {{ endpoints: ["{}"] }}
  canary: {{ endpoints: ["{}"] }}
routes:
  - name: web
    rules:
      - name: split
        backends:
          - {{ group: stable, weight: 100 }}
          - {{ group: canary, weight: 0, fault: {{ abort: {{ status: 503, fraction: 0.3 }} }} }}
        rollout: {{ canary: canary, steps: [20, 50], hold: 200ms, metrics: {{ errors: {{}} }} }}
"#,
        stable.addr, canary.addr
    );
    let p = Proxy::start(&yaml, None).await;
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let (v, seen) = p.under_load(4, 15, |v| v["phase"] == "rolled_back").await;
    assert_eq!(v["phase"], "rolled_back", "{v}");
    // The injected 503s are local replies: the clients saw them as lost
    // requests (no upstream answered), the analysis as canary errors.
    assert!(seen.lost.load(Ordering::Relaxed) > 0);
    let scrape = p.scrape().await;
    assert!(
        scrape
            .lines()
            .any(|l| l.contains("reason=\"fault_injected\"") && l.contains("group=\"canary\"")),
        "fault_injected is counted on the canary"
    );
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_fault_with_a_trigger_header_only_slows_requests_that_ask_for_it() {
    let stable = version("stable", 0, 0).await;
    let yaml = format!(
        r#"listeners:
  - name: public
    address: "127.0.0.1:0"
groups:
  stable: {{ endpoints: ["{}"] }}
routes:
  - name: web
    rules:
      - name: all
        fault: {{ delay: {{ duration: 300ms, fraction: 1.0 }}, header: x-chaos }}
        backends: [{{ group: stable }}]
"#,
        stable.addr
    );
    let p = Proxy::start(&yaml, None).await;
    let c = http1_client();
    let url = format!("http://{}/", p.public);
    let t = Instant::now();
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::OK);
    let plain = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        get(&c, &url, &[("x-chaos", "1")]).await.status,
        StatusCode::OK
    );
    let delayed = t.elapsed();
    assert!(plain < Duration::from_millis(250), "{plain:?}");
    assert!(delayed >= Duration::from_millis(300), "{delayed:?}");
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_healthy_rollouts_through_real_sockets_are_all_promoted() {
    // 20 rules, each a rollout of a canary exactly as good as its baseline
    // (both answer 1 request in 50 with a 503), driven by real clients.
    let stable = version("stable", 50, 0).await;
    let canary = version("canary", 50, 0).await;
    let mut yaml = format!(
        "listeners:\n  - name: public\n    address: \"127.0.0.1:0\"\ngroups:\n  stable: {{ endpoints: [\"{}\"] }}\n  canary: {{ endpoints: [\"{}\"] }}\nroutes:\n  - name: web\n    rules:\n",
        stable.addr, canary.addr
    );
    for i in 0..20 {
        yaml.push_str(&format!(
            "      - name: r{i}\n        matches: [{{ path: {{ type: PathPrefix, value: /r{i} }} }}]\n        backends: [{{ group: stable, weight: 100 }}, {{ group: canary, weight: 0 }}]\n        rollout: {{ canary: canary, steps: [50, 100], hold: 100ms, tolerance: 15, metrics: {{ errors: {{}} }} }}\n"
        ));
    }
    let p = Proxy::start(&yaml, None).await;
    for i in 0..20 {
        let path = format!("/v1/routes/web/rules/r{i}/rollout/start");
        assert_eq!(p.admin(Method::POST, &path, "").await.0, StatusCode::OK);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (stop, addr) = (Arc::clone(&stop), p.public);
            tokio::spawn(async move {
                let client = http1_client();
                let mut i = t;
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let _ = get(&client, &format!("http://{addr}/r{}", i % 20), &[]).await;
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let phases = loop {
        let (_, all) = p.admin(Method::GET, "/v1/analysis", "").await;
        let phases: Vec<String> = all["analyses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["phase"].as_str().unwrap_or("").to_string())
            .collect();
        if phases.iter().all(|ph| ph != "running") || Instant::now() > deadline {
            break phases;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let promoted = phases.iter().filter(|ph| *ph == "promoted").count();
    assert_eq!(promoted, 20, "phases: {phases:?}");
    p.shut_down().await;
}

#[test]
fn bad_rollout_and_fault_settings_are_rejected_with_their_field_paths() {
    let yaml = r#"listeners: [{ name: public, address: "127.0.0.1:0" }]
groups: { stable: { endpoints: ["127.0.0.1:1"] }, canary: { endpoints: ["127.0.0.1:2"] } }
routes:
  - name: web
    rules:
      - name: split
        fault: { max_active: 0 }
        backends:
          - { group: stable }
          - { group: canary, fault: { abort: { status: 99, fraction: 1.5 } } }
        rollout:
          canary: canry
          baseline: [stable, nope]
          steps: [10, 5, 100, 50]
          alpha: 0.5
          tolerance: 0
          metrics: {}
          source: { prometheus: { url: "https://prom:9090", interval: 50ms, timeout: 0ms, selector: 'job="x", route="web"' } }
"#;
    let cfg = cutover::config::parse_yaml(yaml).unwrap();
    let registry = cutover::route::Inherited::default();
    let errors = match cutover::compile::compile(&cfg, &registry, 1) {
        Ok(_) => panic!("a bad rollout was accepted"),
        Err(e) => e.to_string(),
    };
    let at = "routes[0].rules[0]";
    for want in [
        format!("{at}.rollout.canary: \"canry\" is not a backend of this rule"),
        format!("{at}.rollout.baseline: \"nope\" is not a backend of this rule"),
        format!("{at}.rollout.steps[1]: weight 5 does not grow (the step before is 10)"),
        format!("{at}.rollout.steps[2]: 100 (the promotion) can only be the last step"),
        format!("{at}.rollout.alpha: 0.5 is out of range (0, 0.2]"),
        format!("{at}.rollout.tolerance: 0 is out of range (0, 100) percentage points"),
        format!("{at}.rollout.metrics: names no metric (errors, latency)"),
        format!("{at}.rollout.source.prometheus.url: \"https://prom:9090\": only http:// is supported (run the query through a local sidecar for TLS)"),
        format!("{at}.rollout.source.prometheus.interval: 50ms is out of range 100ms..=10m"),
        format!("{at}.rollout.source.prometheus.timeout: 0ms must be above 0 and at most the interval (50ms)"),
        format!("{at}.rollout.source.prometheus.selector: must not match on \"route\" (the rollout sets it)"),
        format!("{at}.fault: needs abort, delay or both"),
        format!("{at}.fault.max_active: must be at least 1"),
        format!("{at}.backends[1].fault.abort.status: 99 is not a status in 200..=599"),
        format!("{at}.backends[1].fault.abort.fraction: 1.5 is out of range 0..=1"),
    ] {
        assert!(errors.contains(&want), "missing {want:?} in:\n{errors}");
    }
}

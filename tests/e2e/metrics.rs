//! Per-version observability: counters and histograms match the traffic,
//! series stay bounded whatever the requests carry, live quantiles follow
//! upstream latency, `traceparent` passes unchanged; real Prometheus tools
//! (prometheus/promtool) and the real binary (access log, ctl) in submodules.

mod binary;
pub(crate) mod kit;
pub(crate) mod prometheus;

use std::time::Duration;

use kit::*;

use crate::support::*;

/// `cutover_requests_total` of (route, rule, group, code class, reason).
fn requests(t: &str, names: [&str; 3], class: &str, reason: &str) -> Option<f64> {
    let labels = [
        ("route", names[0]),
        ("rule", names[1]),
        ("group", names[2]),
        ("code_class", class),
        ("reason", reason),
    ];
    sample(t, "cutover_requests_total", &labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_version_counters_and_histograms_match_the_traffic() {
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::ZERO).await;
    let p = Admin::start(&two_versions(stable, canary, "")).await;
    let canary_hdr = [("x-canary", "always")];
    for _ in 0..40 {
        assert_eq!(p.get("/", &[]).await.status, 200);
    }
    for i in 0..20 {
        let path = if i % 4 == 0 { "/fail" } else { "/ok" };
        p.get(path, &canary_hdr).await;
    }
    let url = format!("http://{}/", p.public);
    for _ in 0..3 {
        let got = get(&http1_client(), &url, &[("host", "elsewhere.test")]).await;
        assert_eq!(got.status, 404);
    }

    let (testers, default) = (["web", "testers", "canary"], ["web", "default", "stable"]);
    let text = p
        .scrape_until("63 requests counted", |t| {
            requests(t, ["", "", ""], "4xx", "no_route") == Some(3.0)
                && requests(t, testers, "5xx", "") == Some(5.0)
                && requests(t, default, "2xx", "") == Some(40.0)
        })
        .await;
    assert_eq!(requests(&text, testers, "2xx", ""), Some(15.0));
    assert_eq!(requests(&text, default, "5xx", ""), Some(0.0));
    assert_eq!(
        requests(&text, ["web", "default", "canary"], "2xx", ""),
        None,
        "rule default has no canary backend"
    );

    check_histograms_and_gauges(&text);
}

/// Histograms, attempts, weights and gauges after the traffic of
/// `per_version_counters_and_histograms_match_the_traffic`.
fn check_histograms_and_gauges(text: &str) {
    let h = |name: &str, labels: &[(&str, &str)]| sample(text, name, labels);
    let canary_500 = [("group", "canary"), ("status", "500")];
    assert_eq!(
        h("http_request_duration_seconds_count", &canary_500),
        Some(5.0)
    );
    let inf = [("group", "canary"), ("status", "500"), ("le", "+Inf")];
    assert_eq!(h("http_request_duration_seconds_bucket", &inf), Some(5.0));
    let stable_200 = [("group", "stable"), ("status", "200")];
    assert_eq!(
        h("http_request_duration_seconds_count", &stable_200),
        Some(40.0)
    );
    let canary_route = [("route", "web"), ("group", "canary")];
    assert_eq!(
        h("cutover_request_duration_seconds_count", &canary_route),
        Some(20.0)
    );
    assert_eq!(
        h("cutover_upstream_attempts_total", &canary_route),
        Some(20.0)
    );
    let sum = h("cutover_request_duration_seconds_sum", &canary_route).unwrap();
    assert!(sum > 0.0 && sum < 5.0, "plausible total duration {sum}");
    let weight = [("rule", "default"), ("group", "stable")];
    assert_eq!(h("cutover_backend_weight", &weight), Some(1.0));
    assert_eq!(h("cutover_config_generation", &[]), Some(1.0));
    let pooled = h("cutover_upstream_connections_active", &[]).unwrap();
    assert!(
        pooled >= 1.0,
        "keep-alive upstream connections are counted: {pooled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stay_bounded_under_distinct_paths_and_header_values() {
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::ZERO).await;
    let p = std::sync::Arc::new(Admin::start(&two_versions(stable, canary, "")).await);
    // Warm up: one request of each kind creates its lazily made series.
    p.get("/", &[]).await;
    p.get("/", &[("x-canary", "always")]).await;
    let url = format!("http://{}/", p.public);
    get(&http1_client(), &url, &[("host", "nowhere.test")]).await;
    let before = p
        .scrape_until("warm-up counted", |t| {
            sample(t, "cutover_requests_total", &[("reason", "no_route")]) == Some(1.0)
        })
        .await;

    let workers: Vec<_> = (0..8)
        .map(|w| {
            let p = std::sync::Arc::clone(&p);
            async move {
                let c = http1_client();
                for i in (w..10_000).step_by(8) {
                    let path = format!("/u/{i}/item?q={i}");
                    let value = format!("v{i}");
                    let host = format!("h{i}.test");
                    let url = format!("http://{}{path}", p.public);
                    let headers: &[(&str, &str)] = match i % 3 {
                        0 => &[("host", "app.test"), ("x-user", &value)],
                        1 => &[
                            ("host", "app.test"),
                            ("x-canary", "always"),
                            ("x-user", &value),
                        ],
                        _ => &[("host", &host), ("x-user", &value)],
                    };
                    get(&c, &url, headers).await;
                }
            }
        })
        .collect();
    join_all(workers).await;
    let after = p
        .scrape_until("10,000 requests counted", |t| {
            sample(t, "cutover_requests_total", &[("reason", "no_route")]) == Some(3334.0)
        })
        .await;
    assert_eq!(
        series_count(&before),
        series_count(&after),
        "paths, hosts and header values never become labels"
    );
    assert!(!after.contains("/u/") && !after.contains("v9999") && !after.contains("h1.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_past_the_cap_fold_into_other() {
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let mut yaml = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:0\"}}]\n\
         groups: {{stable: {{endpoints: [\"{stable}\"]}}}}\n\
         routes:\n  - name: web\n    rules:\n"
    );
    for i in 0..800 {
        yaml.push_str(&format!(
            "      - {{name: r{i}, matches: [{{headers: [{{name: x-n, value: \"{i}\"}}]}}], backends: [{{group: stable}}]}}\n"
        ));
    }
    let p = Admin::start(&yaml).await;
    let url = format!("http://{}/", p.public);
    for n in ["0", "799"] {
        assert_eq!(get(&http1_client(), &url, &[("x-n", n)]).await.status, 200);
    }
    let other = ["other", "other", "other"];
    let text = p
        .scrape_until("the late rule counted under other", |t| {
            requests(t, other, "2xx", "") == Some(1.0)
        })
        .await;
    assert_eq!(
        requests(&text, ["web", "r0", "stable"], "2xx", ""),
        Some(1.0)
    );
    assert_eq!(requests(&text, ["web", "r799", "stable"], "2xx", ""), None);
    assert!(sample(&text, "cutover_series_folded_total", &[]).unwrap() > 0.0);
    let rule_series = text
        .lines()
        .filter(|l| l.starts_with("cutover_requests_total{"))
        .count();
    assert!(rule_series <= 5 * 1000, "capped: {rule_series}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_quantiles_follow_a_known_upstream_delay() {
    let stable = slow_upstream("stable", Duration::ZERO).await;
    let canary = slow_upstream("canary", Duration::from_millis(60)).await;
    let p = std::sync::Arc::new(Admin::start(&two_versions(stable, canary, "")).await);
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let p = std::sync::Arc::clone(&p);
            async move {
                if i % 2 == 0 {
                    p.get("/", &[]).await
                } else {
                    p.get("/", &[("x-canary", "always")]).await
                }
            }
        })
        .collect();
    join_all(calls).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = p.stats().await;
    let group = |name: &str| {
        stats["routes"][0]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    let (s, c) = (group("stable"), group("canary"));
    assert_eq!(stats["routes"][0]["route"], "web");
    assert_eq!(
        (s["requests"].as_u64(), c["requests"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(c["error_rate"], 0.0);
    let ms = |g: &serde_json::Value, q: &str| g["latency_ms"][q].as_f64().unwrap();
    // The 60 ms delay is a floor; the ceiling and the gap to stable leave
    // room for a loaded CI machine (both arms share its slowness).
    assert!((60.0..1000.0).contains(&ms(&c, "p50")), "canary p50 {c}");
    assert!(ms(&c, "p99") >= ms(&c, "p50") && ms(&c, "p99_9") >= ms(&c, "p99"));
    assert!(
        ms(&s, "p50") + 30.0 < ms(&c, "p50"),
        "stable p50 {s}, canary {c}"
    );
    assert!(c["requests_per_second"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn traceparent_reaches_the_upstream_unchanged() {
    let up = upstream("stable").await;
    let p = proxy(&config(
        &[("stable", &up)],
        "      - name: all\n        backends: [{group: stable}]\n",
    ))
    .await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let state = "vendor1=opaque,vendor2=x";
    let got = get(
        &http1_client(),
        &p.url("/"),
        &[("traceparent", trace), ("tracestate", state)],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = &up.requests()[0].headers;
    assert_eq!(seen.get("traceparent").unwrap(), trace);
    assert_eq!(seen.get("tracestate").unwrap(), state);
}

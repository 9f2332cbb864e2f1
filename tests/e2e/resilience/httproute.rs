//! HTTPRoute `retry` as the retry GEP reads, on paused time: with a `retry`
//! stanza a `backendRequest` timeout is retried (on another endpoint), and
//! when retries run out the client gets what the spec expects: the last
//! upstream answer for a listed code, a 504 for a backend timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::kit::{self, Backend};
use crate::support::{Launch, Proxy, TempDir};

const HOUR: Duration = Duration::from_secs(3600);

/// One HTTPRoute rule per `(path, group, retry)`, with `backendRequest: 1s`.
fn route(rules: &[(&str, &str, &str)]) -> String {
    let mut y = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\nspec:\n  rules:\n",
    );
    for (path, group, retry) in rules {
        y.push_str(&format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    timeouts: {{request: 10s, backendRequest: 1s}}\n{retry}    backendRefs: [{{name: {group}}}]\n"
        ));
    }
    y
}

async fn start(tag: &str, groups: &[String], route: &str) -> (Proxy, TempDir) {
    let dir = TempDir::new(tag);
    let mut base = String::from("listeners: [{name: public, address: \"127.0.0.1:0\"}]\ngroups:\n");
    for g in groups {
        base.push_str(g);
    }
    std::fs::write(dir.path("00-cutover.yaml"), base).unwrap();
    std::fs::write(dir.path("httproute.yaml"), route).unwrap();
    let loaded = cutover::config::load_path(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    (Launch::config(loaded.config).start().await, dir)
}

#[tokio::test(start_paused = true)]
async fn a_retry_stanza_retries_backend_timeouts_and_answers_504_when_they_run_out() {
    let slow = Backend::start("slow").await;
    let fast = Backend::start("fast").await;
    let lone = Backend::start("lone").await;
    slow.set_delay(HOUR);
    lone.set_delay(HOUR);
    let off = ["outlier: {enabled: false}"];
    let groups = [
        kit::group("app", &[slow.addr, fast.addr], &off),
        kit::group("lone", &[lone.addr], &off),
    ];
    let retry = "    retry: {attempts: 2}\n";
    let yaml = route(&[
        ("/app", "app", retry),
        ("/plain", "lone", ""),
        ("/lone", "lone", retry),
    ]);
    let (p, _dir) = start("retry-timeouts", &groups, &yaml).await;
    let c = kit::client();

    // A backend timeout on the slow endpoint is retried on the fast one.
    for _ in 0..6 {
        let got = kit::get(&c, &p.url("/app")).await;
        assert_eq!((got.status, got.text()), (200, "fast"));
    }
    assert_eq!(fast.count(), 6);

    // Without a stanza: one attempt, 504 after backendRequest.
    let t = Instant::now();
    let got = kit::get(&c, &p.url("/plain")).await;
    assert_eq!(got.status, 504);
    assert!(got.text().contains("per_try"), "{got:?}");
    assert!(t.elapsed() < Duration::from_millis(1_100));
    assert_eq!(lone.count(), 1);

    // With one: three attempts, each cut at 1 s, then 504.
    let t = Instant::now();
    let got = kit::get(&c, &p.url("/lone")).await;
    let took = t.elapsed();
    assert_eq!(got.status, 504, "{got:?}");
    assert_eq!(lone.count(), 4);
    // Three backend timeouts and two backoffs of at most 250 ms.
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_millis(3_600),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retried_codes_end_with_the_last_upstream_answer() {
    let sick = Backend::start("sick").await;
    sick.set_status(503);
    let groups = [kit::group(
        "app",
        &[sick.addr],
        &["outlier: {enabled: false}"],
    )];
    let listed = "    retry: {attempts: 2, codes: [503]}\n";
    let other = "    retry: {attempts: 2, codes: [500]}\n";
    let yaml = route(&[("/listed", "app", listed), ("/other", "app", other)]);
    let (p, _dir) = start("retry-codes", &groups, &yaml).await;
    let c = kit::client();

    let got = kit::get(&c, &p.url("/listed")).await;
    assert_eq!(
        (got.status, got.text()),
        (503, "sick"),
        "the upstream's own answer"
    );
    assert_eq!(sick.count(), 3, "the first attempt and two retries");

    let got = kit::get(&c, &p.url("/other")).await;
    assert_eq!((got.status, got.text()), (503, "sick"));
    assert_eq!(sick.count(), 4, "503 is not listed: not retried");
}

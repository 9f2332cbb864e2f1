//! Version fallback: a failing canary attempt is retried on stable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::kit::{self, Backend};
use crate::support::proxy;

/// Issue 3: "canary answers 100% 503 at weight 10%; with fallback, >= 99.9%
/// of client requests succeed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_fallback_hides_a_failing_canary() {
    let s1 = Backend::start("stable").await;
    let s2 = Backend::start("stable").await;
    let canary = Backend::start("canary").await;
    canary.set_status(503);
    let backends = "[{group: stable, weight: 90}, {group: canary, weight: 10}]";
    let p = proxy(&kit::config(
        &[],
        &[
            kit::group("stable", &[s1.addr, s2.addr], &[]),
            kit::group("canary", &[canary.addr], &[]),
        ],
        &[
            kit::rule(
                "control",
                backends,
                &[
                    "matches: [{path: {value: /same-group}}]",
                    "retry: {attempts: 1, on: [gateway-error], fallback: same_group}",
                ],
            ),
            kit::rule(
                "all",
                backends,
                &["retry: {attempts: 1, on: [gateway-error], fallback: other_groups}"],
            ),
        ],
    ))
    .await;
    let url = p.url("/");
    let start = Instant::now();
    let (ok, total) = load(&url, 10_000, 32).await;
    let took = start.elapsed();
    let share = ok as f64 * 100.0 / total as f64;
    eprintln!(
        "fallback: {total} requests, {share:.2}% ok, canary tried {} times, {:.1} s",
        canary.count(),
        took.as_secs_f64()
    );
    assert!(ok * 1000 >= total * 999, "{ok}/{total} ok");
    assert!(canary.count() >= 500, "the canary took its share");

    // Control: retrying inside the canary group does not help.
    let before = canary.count();
    let (ok, total) = load(&p.url("/same-group"), 1_000, 16).await;
    eprintln!(
        "fallback control (same_group): {total} requests, {:.2}% ok",
        ok as f64 * 100.0 / total as f64
    );
    assert!(total - ok >= 50, "{ok}/{total} ok without fallback");
    assert!(canary.count() - before >= 100);
}

/// Sends `n` GETs to `url` from `concurrency` tasks; returns (2xx, n).
async fn load(url: &str, n: usize, concurrency: usize) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let c = kit::client();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, ok, c, url) = (next.clone(), ok.clone(), c.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let got = kit::get(&c, &url).await;
                if got.status == 200 && got.text() == "stable" {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), n)
}

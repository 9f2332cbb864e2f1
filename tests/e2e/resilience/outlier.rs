//! Passive outlier ejection, on real time (its clock is not tokio's) with
//! short ejection times.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::kit::{self, Backend, DELAY, STATUS};
use crate::support::proxy;

/// No retries: every failed attempt is a failure the client sees.
const NO_RETRY: &str = "retry: {attempts: 0}";

/// One client request of a load run.
#[derive(Debug, Clone)]
struct Sample {
    started: Instant,
    done: Instant,
    status: u16,
    served_by: String,
}

/// Issue 3: "upstream killed under load -> client-visible 5xx bounded by the
/// consecutive threshold, then ejection, then recovery".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_costs_few_errors_is_ejected_and_recovers() {
    const THRESHOLD: usize = 5;
    const CONCURRENCY: usize = 4;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr, c.addr],
            &[
                "outlier: {consecutive_gateway_failure: 5, consecutive_5xx: 5, \
               base_ejection_time: 300ms, max_ejection_time: 3s}",
            ],
        )],
        &[kit::rule("all", "[{group: app}]", &[NO_RETRY])],
    ))
    .await;
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (samples, stop, url, client) =
            (samples.clone(), stop.clone(), p.url("/"), kit::client());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let got = kit::get(&client, &url).await;
                let served_by = got.body.unwrap_or_default();
                samples.lock().unwrap().push(Sample {
                    started,
                    done: Instant::now(),
                    status: got.status,
                    served_by,
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served_before = a.count();
    assert!(served_before > 10, "a took traffic before the kill");

    let killed_at = Instant::now();
    a.kill();
    crate::support::until("the ejection", Duration::from_secs(3), || {
        kit::ejected(&p.app, "app", a.addr)
    })
    .await;
    let ejected_at = Instant::now();
    tokio::time::sleep_until((killed_at + Duration::from_millis(450)).into()).await;
    let state = kit::endpoint_state(&p.app, "app", a.addr);
    let ejections_at_restart = state.outlier.ejections();
    let restarted_at = Instant::now();
    a.restart().await;
    crate::support::until("a serves again", Duration::from_secs(5), || {
        samples
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.served_by == "a" && s.started > restarted_at)
    })
    .await;
    let back_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let samples = samples.lock().unwrap().clone();
    let errors: Vec<&Sample> = samples.iter().filter(|s| s.status != 200).collect();
    let first_burst = errors.iter().filter(|s| s.started < ejected_at).count();
    let ejections = state.outlier.ejections() as usize;
    let recovered_ms = samples
        .iter()
        .filter(|s| s.served_by == "a" && s.started > restarted_at)
        .map(|s| s.done.duration_since(restarted_at).as_millis())
        .min()
        .unwrap();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > back_at).collect();
    let a_share = after.iter().filter(|s| s.served_by == "a").count() as f64 / after.len() as f64;
    eprintln!(
        "ejection: {} requests, {} 5xx seen by clients ({first_burst} before the first \
         ejection, {}ms after the kill; threshold {THRESHOLD}, {CONCURRENCY} in flight), \
         {ejections} ejections, recovered {recovered_ms}ms after the restart, then a served \
         {:.0}% of {} requests",
        samples.len(),
        errors.len(),
        ejected_at.duration_since(killed_at).as_millis(),
        a_share * 100.0,
        after.len()
    );
    assert!(errors.iter().all(|s| s.status == 502), "{errors:?}");
    assert!(errors.iter().all(|s| s.done >= killed_at));
    // The threshold, plus what was in flight to a when it was reached; a
    // success of a that lands after the first failures (answered before the
    // kill) restarts the streak, so allow one more per request in flight.
    assert!(
        (THRESHOLD..THRESHOLD + 2 * CONCURRENCY).contains(&first_burst),
        "{first_burst} errors before the ejection"
    );
    // Each failed probe costs at most the requests in flight.
    assert!(ejections >= 2, "a was probed while dead");
    assert!(
        errors.len() <= first_burst + (ejections - 1) * CONCURRENCY,
        "{} errors",
        errors.len()
    );
    // Back within the ejection time in force when it came back.
    let in_force = 300 * u128::from(ejections_at_restart.max(1));
    assert!(recovered_ms <= in_force + 250, "{recovered_ms}ms");
    assert!(errors.iter().all(|s| s.started < back_at));
    assert!(a_share > 0.15, "a is back in rotation: {a_share}");
}

/// After its ejection time an endpoint gets exactly one request (the probe);
/// a failed probe ejects it again for base x ejections; a good one brings
/// it back.
#[tokio::test]
async fn one_probe_after_the_ejection_time_decides() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.set_status(503);
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["outlier: {consecutive_5xx: 3, base_ejection_time: 300ms, max_ejection_time: 5s}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[NO_RETRY])],
    ))
    .await;
    let c = kit::client();
    let start = Instant::now();
    let mut errors = 0;
    let mut flipped = false;
    while start.elapsed() < Duration::from_millis(1_500) {
        let got = kit::get(&c, &p.url("/")).await;
        if got.status != 200 {
            assert_eq!((got.status, got.text()), (503, "a"));
            errors += 1;
        }
        // Heal a after the first (failed) probe, during the second ejection.
        if !flipped && a.count() == 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            a.set_status(200);
            flipped = true;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let hits = a.hits();
    assert!(hits.len() > 8, "a came back: {} hits", hits.len());
    let gap = |i: usize| hits[i].at.duration_since(hits[i - 1].at);
    let (probe1, probe2) = (gap(3), gap(4));
    eprintln!(
        "ejection probes: first probe {}ms after the ejection, second {}ms after the failed \
         first; {errors} client errors in all",
        probe1.as_millis(),
        probe2.as_millis()
    );
    assert_eq!(errors, 4, "3 to reach the threshold + 1 failed probe");
    for i in 1..3 {
        assert!(gap(i) < Duration::from_millis(100), "before the ejection");
    }
    assert!(
        probe1 >= Duration::from_millis(295) && probe1 < Duration::from_millis(500),
        "{probe1:?}"
    );
    assert!(
        probe2 >= Duration::from_millis(595) && probe2 < Duration::from_millis(800),
        "second ejection is base x 2: {probe2:?}"
    );
    for i in 5..hits.len() {
        assert!(gap(i) < Duration::from_millis(100), "back in rotation");
    }
}

#[tokio::test]
async fn max_ejection_percent_is_exact_at_least_one_and_never_all() {
    // (endpoints, max_ejection_percent, ejected)
    let cases = [
        (4, 50, 2),
        (5, 60, 3),
        (4, 25, 1),
        (4, 49, 1),  // rounded down
        (3, 10, 1),  // at least one
        (2, 100, 1), // never every endpoint
        (1, 100, 0),
    ];
    for (n, percent, want) in cases {
        let mut backends = Vec::new();
        for _ in 0..n {
            let b = Backend::start("down").await;
            b.set_status(503);
            backends.push(b);
        }
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let outlier = format!(
            "outlier: {{consecutive_5xx: 2, base_ejection_time: 30s, max_ejection_percent: {percent}}}"
        );
        let p = proxy(&kit::config(
            &[],
            &[kit::group("app", &addrs, &[&outlier])],
            &[kit::rule("all", "[{group: app}]", &[NO_RETRY])],
        ))
        .await;
        let c = kit::client();
        for _ in 0..6 * n {
            kit::get(&c, &p.url("/")).await;
        }
        let before: Vec<usize> = backends.iter().map(Backend::count).collect();
        for _ in 0..8 * n {
            // Never a local "no healthy endpoint": the upstream's own 503.
            let got = kit::get(&c, &p.url("/")).await;
            assert_eq!((got.status, got.text()), (503, "down"));
        }
        let serving = backends
            .iter()
            .zip(&before)
            .filter(|(b, before)| b.count() > **before)
            .count();
        assert_eq!(
            n - serving,
            want,
            "{n} endpoints at {percent}%: {serving} still serve"
        );
    }
}

/// A result from a request sent before the ejection is not a probe: a slow
/// success landing mid-ejection does not bring the endpoint back early.
#[tokio::test]
async fn a_late_success_does_not_end_an_ejection() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.set_status(503);
    let p = proxy(&kit::config(
        &[],
        &[kit::group(
            "app",
            &[a.addr, b.addr],
            &["outlier: {consecutive_5xx: 3, base_ejection_time: 2s}"],
        )],
        &[kit::rule("all", "[{group: app}]", &[NO_RETRY])],
    ))
    .await;
    let c = kit::client();
    // The first pick of a new table is the first endpoint: a, slowly, 200.
    let slow = {
        let (c, url) = (c.clone(), p.url("/slow"));
        tokio::spawn(async move {
            kit::call(
                &c,
                http::Method::GET,
                &url,
                &[(DELAY, "400"), (STATUS, "200")],
                kit::empty(),
            )
            .await
        })
    };
    crate::support::until("the slow request on a", Duration::from_secs(2), || {
        a.count() == 1
    })
    .await;
    while !kit::ejected(&p.app, "app", a.addr) {
        kit::get(&c, &p.url("/")).await;
        assert!(a.count() < 10, "a never ejected");
    }
    let ejected_at = Instant::now();
    let hits = a.count();
    let got = slow.await.unwrap();
    assert_eq!((got.status, got.text()), (200, "a"));
    for _ in 0..20 {
        let got = kit::get(&c, &p.url("/")).await;
        assert_eq!((got.status, got.text()), (200, "b"), "a is still ejected");
    }
    assert!(
        ejected_at.elapsed() < Duration::from_secs(2),
        "too slow to tell"
    );
    assert_eq!(a.count(), hits);
}

/// Issue 3: "Outlier state survives a routing-table reload".
#[tokio::test]
async fn outlier_state_survives_a_reload() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    a.set_status(503);
    let yaml = |header: &str| {
        kit::config(
            &[],
            &[kit::group(
                "app",
                &[a.addr, b.addr],
                &["outlier: {consecutive_5xx: 3, base_ejection_time: 1500ms}"],
            )],
            &[kit::rule(
                "all",
                "[{group: app}]",
                &[
                    NO_RETRY,
                    &format!(
                        "response_header_modifier: {{set: [{{name: x-table, value: {header}}}]}}"
                    ),
                ],
            )],
        )
    };
    let p = proxy(&yaml("first")).await;
    let c = kit::client();
    while !kit::ejected(&p.app, "app", a.addr) {
        kit::get(&c, &p.url("/")).await;
        assert!(a.count() < 10, "a never ejected");
    }
    let ejected_at = Instant::now();
    let hits = a.count();
    let config = cutover::config::parse_yaml(&yaml("second")).unwrap();
    cutover::reload::replace_base(&p.app, &config).unwrap();
    for _ in 0..20 {
        let got = kit::get(&c, &p.url("/")).await;
        assert_eq!(got.headers["x-table"], "second", "served by the new table");
        assert_eq!((got.status, got.text()), (200, "b"), "a is still ejected");
    }
    assert!(
        ejected_at.elapsed() < Duration::from_millis(1_500),
        "too slow to tell"
    );
    assert_eq!(a.count(), hits);

    // And it comes back after its ejection time, on the new table.
    a.set_status(200);
    tokio::time::sleep_until((ejected_at + Duration::from_millis(1_500)).into()).await;
    for _ in 0..20 {
        let got = kit::get(&c, &p.url("/")).await;
        assert_eq!(got.status, 200);
    }
    assert!(a.count() - hits >= 5, "a is back: {}", a.count() - hits);
}

//! Active health checks, and what happens when a whole group has no healthy
//! endpoint.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::kit::{self, Backend};
use crate::support::proxy;

const CHECK: &str = "health_check: {path: /healthz, interval: 50ms, timeout: 40ms, \
                     unhealthy_threshold: 2, healthy_threshold: 1}";

fn healthy(p: &crate::support::Proxy, group: &str, b: &Backend) -> bool {
    kit::endpoint_state(&p.app, group, b.addr)
        .healthy
        .load(Ordering::Relaxed)
}

/// Sends `n` GETs to `path`; returns the bodies (local replies included).
async fn bodies(p: &crate::support::Proxy, path: &str, n: usize) -> Vec<(u16, String)> {
    let c = kit::client();
    let mut out = Vec::new();
    for _ in 0..n {
        let got = kit::get(&c, &p.url(path)).await;
        out.push((got.status, got.text().to_owned()));
    }
    out
}

#[tokio::test]
async fn an_endpoint_failing_its_health_check_is_not_picked_until_it_passes() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let p = proxy(&kit::config(
        &[],
        &[kit::group("app", &[a.addr, b.addr], &[CHECK])],
        &[kit::rule("all", "[{group: app}]", &[])],
    ))
    .await;
    let got = bodies(&p, "/", 10).await;
    assert_eq!(got.iter().filter(|(_, who)| who == "a").count(), 5);

    let failing_at = Instant::now();
    a.set_health(503);
    crate::support::until("a marked unhealthy", Duration::from_secs(3), || {
        !healthy(&p, "app", &a)
    })
    .await;
    let out_ms = failing_at.elapsed().as_millis();
    let before = a.count();
    let got = bodies(&p, "/", 20).await;
    assert!(
        got.iter().all(|(s, who)| *s == 200 && who == "b"),
        "{got:?}"
    );
    assert_eq!(a.count(), before);

    let passing_at = Instant::now();
    a.set_health(200);
    crate::support::until("a healthy again", Duration::from_secs(3), || {
        healthy(&p, "app", &a)
    })
    .await;
    let back_ms = passing_at.elapsed().as_millis();
    let got = bodies(&p, "/", 20).await;
    assert_eq!(got.iter().filter(|(_, who)| who == "a").count(), 10);
    eprintln!("health check: out of rotation after {out_ms}ms, back after {back_ms}ms");
}

#[tokio::test]
async fn a_group_without_healthy_endpoints_gives_its_share_away_or_fails() {
    let stable = Backend::start("stable").await;
    let canary = Backend::start("canary").await;
    let backends = "[{group: stable, weight: 50}, {group: canary, weight: 50}]";
    let p = proxy(&kit::config(
        &[],
        &[
            kit::group("stable", &[stable.addr], &[CHECK]),
            kit::group("canary", &[canary.addr], &[CHECK]),
        ],
        &[
            kit::rule(
                "strict",
                backends,
                &[
                    "matches: [{path: {value: /strict}}]",
                    "on_group_unavailable: fail",
                ],
            ),
            kit::rule("all", backends, &[]),
        ],
    ))
    .await;
    let share = |got: &[(u16, String)], who: &str| got.iter().filter(|(_, w)| w == who).count();
    let got = bodies(&p, "/", 100).await;
    assert!(share(&got, "canary") > 20, "both groups serve at first");

    canary.set_health(503);
    crate::support::until("canary unhealthy", Duration::from_secs(3), || {
        !healthy(&p, "canary", &canary)
    })
    .await;
    let before = canary.count();
    // redistribute (the default): the canary's share goes to stable.
    let got = bodies(&p, "/", 100).await;
    assert_eq!(share(&got, "stable"), 100, "{got:?}");
    // fail: the canary's share is a 503 naming the reason.
    let got = bodies(&p, "/strict", 100).await;
    let failed: Vec<_> = got.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        (20..=80).contains(&failed.len()),
        "{} of 100 failed",
        failed.len()
    );
    assert!(failed
        .iter()
        .all(|(_, body)| body.contains("no healthy endpoint")));
    assert_eq!(share(&got, "stable"), 100 - failed.len());
    assert_eq!(canary.count(), before);

    canary.set_health(200);
    crate::support::until("canary healthy", Duration::from_secs(3), || {
        healthy(&p, "canary", &canary)
    })
    .await;
    for path in ["/", "/strict"] {
        let got = bodies(&p, path, 100).await;
        assert!(got.iter().all(|(s, _)| *s == 200));
        assert!(share(&got, "canary") > 20, "{path}: the canary is back");
    }
}

/// A group scaled to zero counts as unavailable too.
#[tokio::test]
async fn an_empty_group_gives_its_share_away_or_fails() {
    let stable = Backend::start("stable").await;
    let backends = "[{group: stable, weight: 50}, {group: canary, weight: 50}]";
    let p = proxy(&kit::config(
        &[],
        &[
            kit::group("stable", &[stable.addr], &[]),
            kit::group("canary", &[], &[]),
        ],
        &[
            kit::rule(
                "strict",
                backends,
                &[
                    "matches: [{path: {value: /strict}}]",
                    "on_group_unavailable: fail",
                ],
            ),
            kit::rule("all", backends, &[]),
        ],
    ))
    .await;
    let got = bodies(&p, "/", 100).await;
    assert!(got.iter().all(|(s, who)| *s == 200 && who == "stable"));
    let got = bodies(&p, "/strict", 100).await;
    let failed = got.iter().filter(|(s, _)| *s == 503).count();
    assert!((20..=80).contains(&failed), "{failed} of 100 failed");
    assert!(got
        .iter()
        .all(|(s, body)| *s == 200 || body.contains("no endpoint")));
}

//! `source: prometheus`: two proxy replicas judge one canary from the
//! counters a real Prometheus scrapes from both (Debian package
//! `prometheus`; SKIPPED without it, a failure under CUTOVER_REQUIRE_ALL=1).
//! A bad canary is rolled back on both, a good one promoted on both, and a
//! Prometheus that does not answer holds the verdict, never fails it.

use super::*;
use crate::metrics::prometheus::Server;
use crate::support::free_port;
use crate::support::tool_or_skip;

/// Scrape and query every 250-300 ms, so a step's window opens quickly.
fn fleet_plan(prometheus_port: u16, plan: &str) -> String {
    format!(
        "{plan}          source:\n            prometheus:\n              url: \"http://127.0.0.1:{prometheus_port}\"\n              interval: 300ms\n              timeout: 250ms\n              selector: 'job=\"fleet\"'\n"
    )
}

/// Two replicas of one config, the Prometheus that scrapes both, and the
/// rollout started on each.
struct Fleet {
    replicas: [Proxy; 2],
    _prometheus: Server,
}

impl Fleet {
    /// The fleet with a canary failing every `fail_every`-th request (0:
    /// never) and answering after `delay_ms` (stable: 2 ms); `None`
    /// (SKIPPED) without a `prometheus` binary.
    async fn start_or_skip(
        test: &str,
        (fail_every, delay_ms): (u64, u64),
        plan: &str,
    ) -> Option<Fleet> {
        if !tool_or_skip(test, "prometheus", "apt-get install prometheus") {
            return None;
        }
        let stable = version("stable", 0, 2).await;
        let canary = version("canary", fail_every, delay_ms).await;
        Some(Fleet::start(&stable, &canary, plan).await)
    }

    async fn start(stable: &Version, canary: &Version, plan: &str) -> Fleet {
        let port = free_port();
        let yaml = config(stable, canary, &fleet_plan(port, plan));
        let replicas = [
            Proxy::start(&yaml, None).await,
            Proxy::start(&yaml, None).await,
        ];
        let prometheus = Server::fleet(
            &[replicas[0].admin_addr(), replicas[1].admin_addr()],
            "250ms",
            port,
        );
        prometheus
            .until(r#"count(up{job="fleet"} == 1)"#, 2.0)
            .await;
        for r in &replicas {
            let (status, v) = r.act("start").await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        Fleet {
            replicas,
            _prometheus: prometheus,
        }
    }

    /// Sends load from `clients[i]` clients to replica `i` until both
    /// analyses satisfy `done` (at most `secs`); the last documents, and
    /// what each replica's clients saw.
    async fn under_load(
        &self,
        clients: [usize; 2],
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> ([Value; 2], [Arc<Seen>; 2]) {
        let loads = [
            Load::start(self.replicas[0].public, clients[0]),
            Load::start(self.replicas[1].public, clients[1]),
        ];
        let deadline = Instant::now() + Duration::from_secs(secs);
        let got = loop {
            let got = [
                self.replicas[0].analysis().await,
                self.replicas[1].analysis().await,
            ];
            if got.iter().all(&done) || Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let [a, b] = loads;
        (got, [a.finish().await, b.finish().await])
    }

    async fn shut_down(self) {
        let [a, b] = self.replicas;
        a.shut_down().await;
        b.shut_down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_spread_over_two_replicas_is_rolled_back_on_both_by_the_fleet_verdict() {
    let test = "a_bad_canary_spread_over_two_replicas_is_rolled_back_on_both_by_the_fleet_verdict";
    let plan = "          canary: canary\n          steps: [20, 50]\n          hold: 200ms\n          metrics: { errors: {} }\n";
    // 25% of the canary's answers are errors.
    let Some(fleet) = Fleet::start_or_skip(test, (4, 0), plan).await else {
        return;
    };
    // Three clients on the first replica, none on the second: what the
    // second judges can only be the fleet's. (With a client of its own, its
    // count ran on while Prometheus' window lagged a scrape and a query
    // behind, and could pass the fleet's judged count on a busy machine.)
    let (got, seen) = fleet
        .under_load([3, 0], 25, |v| v["phase"] == "rolled_back")
        .await;
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v["phase"], "rolled_back", "replica {i}: {v}");
        assert_eq!(v["verdict"], "fail", "replica {i}: {v}");
        assert_eq!(v["source"], "prometheus", "replica {i}: {v}");
        assert_eq!(weight(v, "canary"), 0, "replica {i}: {v}");
        assert!(
            v["reason"].as_str().unwrap_or("").contains("canary worse"),
            "replica {i}: {v}"
        );
    }
    // The second replica judged the fleet's requests, not its own: its
    // window holds canary requests though it sent the canary none.
    let judged = got[1]["groups"]["canary"]["requests"].as_u64().unwrap_or(0);
    let own = seen[1].canary.load(Ordering::Relaxed);
    assert!(
        judged > own,
        "replica 1 judged {judged} canary requests, no more than its own {own}: {}",
        got[1]
    );
    for s in &seen {
        assert_eq!(s.lost.load(Ordering::Relaxed), 0);
    }
    fleet.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_judged_by_the_fleet_is_promoted_on_both_replicas() {
    let test = "a_good_canary_judged_by_the_fleet_is_promoted_on_both_replicas";
    let plan = "          canary: canary\n          steps: [20, 50, 100]\n          hold: 300ms\n          tolerance: 5\n          metrics: { errors: {} }\n";
    let Some(fleet) = Fleet::start_or_skip(test, (0, 0), plan).await else {
        return;
    };
    let (got, seen) = fleet
        .under_load([2, 2], 30, |v| v["phase"] == "promoted")
        .await;
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v["phase"], "promoted", "replica {i}: {v}");
        assert_eq!(v["verdict"], "pass", "replica {i}: {v}");
        assert_eq!(weight(v, "canary"), 100, "replica {i}: {v}");
        assert_eq!(seen[i].lost.load(Ordering::Relaxed), 0);
    }
    fleet.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_twice_as_slow_is_rolled_back_on_both_replicas_on_the_fleet_latency() {
    let test = "a_canary_twice_as_slow_is_rolled_back_on_both_replicas_on_the_fleet_latency";
    // Errors and latency (the default): each replica freezes its own
    // baseline p99, the fleet's slow and timed counts are summed.
    let plan = "          canary: canary\n          steps: [20]\n          hold: 200ms\n";
    let Some(fleet) = Fleet::start_or_skip(test, (0, 60), plan).await else {
        return;
    };
    let (got, _seen) = fleet
        .under_load([2, 2], 25, |v| v["phase"] == "rolled_back")
        .await;
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v["phase"], "rolled_back", "replica {i}: {v}");
        let reason = v["reason"].as_str().unwrap_or("");
        assert!(reason.contains("latency"), "replica {i}: {v}");
        let slow = v["groups"]["canary"]["slow"].as_u64().unwrap_or(0);
        assert!(slow > 0, "replica {i}: {v}");
    }
    fleet.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_does_not_answer_holds_the_verdict_and_never_fails_the_canary() {
    let stable = version("stable", 0, 0).await;
    let canary = version("canary", 2, 0).await; // 50% errors
    let plan = "          canary: canary\n          steps: [20, 50]\n          hold: 200ms\n          metrics: { errors: {} }\n";
    // Nothing listens there.
    let yaml = config(&stable, &canary, &fleet_plan(free_port(), plan));
    let p = Proxy::start(&yaml, None).await;
    assert_eq!(p.act("start").await.0, StatusCode::OK);
    let load = Load::start(p.public, 2);
    let v = p
        .wait_for(10, |v| {
            v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("prometheus: http://127.0.0.1")
        })
        .await;
    // Local evidence alone would fail this canary within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = p.analysis().await;
    let seen = load.finish().await;
    assert!(seen.canary_errors.load(Ordering::Relaxed) > 50, "{seen:?}");
    for v in [&v, &after] {
        assert_eq!(v["phase"], "running", "{v}");
        assert_eq!(v["verdict"], "inconclusive", "{v}");
        assert_eq!(weight(v, "canary"), 20, "{v}");
        let reason = v["reason"].as_str().unwrap_or("");
        assert!(reason.contains("the verdict holds"), "{v}");
    }
    let scrape = p.scrape().await;
    let failures = scrape
        .lines()
        .find(|l| l.starts_with(r#"cutover_rollout_source_errors_total{route="web",rule="split"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failures >= 2, "{failures} source errors counted:\n{scrape}");
    p.shut_down().await;
}

//! End-to-end tests: real upstreams, the real proxy, real sockets.

#![allow(
    clippy::disallowed_methods,
    reason = "the tests measure real elapsed time around a proxy on real sockets"
)]

mod deploy;
mod dns;
mod edge;
mod k8s;
mod kubernetes;
mod metrics;
mod pool;
mod reload;
mod resilience;
mod rollout;
mod semantics;
mod support;
mod ui;

mod smoke {
    use crate::support::*;

    #[tokio::test]
    async fn weighted_rule_reaches_both_groups() {
        let stable = upstream("stable").await;
        let canary = upstream("canary").await;
        let yaml = config(
            &[("stable", &stable), ("canary", &canary)],
            "      - name: split\n        backends: [{group: stable, weight: 50}, {group: canary, weight: 50}]\n",
        );
        let p = proxy(&yaml).await;
        let c = http1_client();
        for _ in 0..50 {
            let got = get(&c, &p.url("/"), &[]).await;
            assert_eq!(got.status, 200);
        }
        assert!(stable.count() > 5 && canary.count() > 5);
    }
}
mod cli;
mod gateway;
mod routing;
mod sticky;
mod tls;

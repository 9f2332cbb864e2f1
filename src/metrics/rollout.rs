//! The rollout series: the step, the verdict and its Bayes factor per rule,
//! and counters of automatic rollbacks and promotions. Set by the rollout
//! controller each tick; labels are config names and fixed words only.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The verdict words, each with its own 0/1 series.
const VERDICTS: [&str; 3] = ["pass", "fail", "inconclusive"];

/// Handles of the rollout families.
#[derive(Debug, Default, Clone)]
pub struct RolloutSeries {
    step: Family<Labels, Gauge>,
    verdict: Family<Labels, Gauge>,
    bayes_factor: Family<Labels, Gauge<f64, AtomicU64>>,
    rollbacks: Family<Labels, Counter>,
    promotions: Family<Labels, Counter>,
    source_errors: Family<Labels, Counter>,
}

fn labels(route: &str, rule: &str) -> Labels {
    vec![
        ("route".to_string(), route.to_string()),
        ("rule".to_string(), rule.to_string()),
    ]
}

impl RolloutSeries {
    /// Registers the families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cutover_rollout_step",
            "Index of the rollout step a rule is at",
            self.step.clone(),
        );
        registry.register(
            "cutover_analysis_verdict",
            "1 for the current analysis verdict of a rule (pass, fail, inconclusive), 0 for the others",
            self.verdict.clone(),
        );
        registry.register(
            "cutover_analysis_bayes_factor",
            "Bayes factor against 'canary no worse than baseline', per rule and metric",
            self.bayes_factor.clone(),
        );
        registry.register(
            "cutover_rollout_rollbacks",
            "Rollouts rolled back automatically on a fail verdict",
            self.rollbacks.clone(),
        );
        registry.register(
            "cutover_rollout_promotions",
            "Rollouts promoted automatically after their last step passed",
            self.promotions.clone(),
        );
        registry.register(
            "cutover_rollout_source_errors",
            "Failed queries of a rollout's counts source (source: prometheus); the verdict holds meanwhile",
            self.source_errors.clone(),
        );
    }

    /// A rule's latest verdict: step, verdict and each metric's factor.
    pub fn record(
        &self,
        route: &str,
        rule: &str,
        step: usize,
        verdict: &str,
        factors: &[(&str, f64)],
    ) {
        let base = labels(route, rule);
        self.step
            .get_or_create(&base)
            .set(i64::try_from(step).unwrap_or(i64::MAX));
        for v in VERDICTS {
            let mut l = base.clone();
            l.push(("verdict".to_string(), v.to_string()));
            self.verdict.get_or_create(&l).set(i64::from(v == verdict));
        }
        for (metric, factor) in factors {
            let mut l = base.clone();
            l.push(("metric".to_string(), (*metric).to_string()));
            self.bayes_factor.get_or_create(&l).set(*factor);
        }
    }

    /// Counts an automatic rollback of `route/rule`.
    pub fn rolled_back(&self, route: &str, rule: &str) {
        self.rollbacks.get_or_create(&labels(route, rule)).inc();
    }

    /// Counts a failed query of `route/rule`'s counts source.
    pub fn source_failed(&self, route: &str, rule: &str) {
        self.source_errors.get_or_create(&labels(route, rule)).inc();
    }

    /// Counts an automatic promotion of `route/rule`.
    pub fn promoted(&self, route: &str, rule: &str) {
        self.promotions.get_or_create(&labels(route, rule)).inc();
    }
}

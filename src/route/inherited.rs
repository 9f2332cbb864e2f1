//! What a newly compiled table inherits from the tables before it: the
//! upstream side's state (endpoints, pools, admission, DNS answers) and the
//! rules' own (retry budgets, observed-split counters), each by key.

use std::sync::Arc;

use super::budget::RetryBudget;
use super::observed::SplitCounter;
use crate::carry::WeakMap;
use crate::metrics::Metrics;
use crate::upstream::UpstreamState;

/// Everything the compiler carries over into a new table.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Endpoint state, pools, admission limits, DNS answers, metric handles.
    pub upstream: UpstreamState,
    /// Retry budgets and observed-split counters.
    pub rules: RuleState,
}

impl Inherited {
    /// Fresh state whose tables record into `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Inherited {
            upstream: UpstreamState::with_metrics(metrics),
            rules: RuleState::default(),
        }
    }

    /// The metrics every table of this state records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.upstream.metrics
    }
}

/// Per-route and per-rule state that outlives a table.
#[derive(Debug, Default)]
pub struct RuleState {
    /// Retry budgets by route name.
    budgets: WeakMap<String, RetryBudget>,
    /// Observed-split counters by `route/rule/group`.
    split_counters: WeakMap<String, SplitCounter>,
}

impl RuleState {
    /// The retry budget shared by every rule of `route`.
    pub fn budget(&self, route: &str) -> Arc<RetryBudget> {
        self.budgets
            .get_or_make(route.to_string(), RetryBudget::default)
    }

    /// The observed-split counter of `group` in `route/rule`.
    pub fn split_counter(&self, route: &str, rule: &str, group: &str) -> Arc<SplitCounter> {
        let key = format!("{route}/{rule}/{group}");
        self.split_counters.get_or_make(key, SplitCounter::default)
    }
}

//! A rule's `rollout`: the canary, what it is compared with, the weight
//! steps, and what to do on a verdict. Validated with the rest of the config;
//! run by the rollout controller (`src/rollout`).

use serde::{Deserialize, Serialize};

use super::error::ConfigErrors;
use super::model::RuleConfig;
use super::resilience::Dur;

/// A progressive rollout of one rule, judged by the proxy itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// The group under test; a backend of the rule.
    pub canary: String,
    /// What the canary is compared with in the same window; default: the
    /// rule's other backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<OneOrMany>,
    /// Who moves the weights: `proxy` (the steps below) or `external` (a
    /// controller such as Flagger or Argo Rollouts; cutover only judges).
    #[serde(default)]
    pub drive: Drive,
    /// Canary weights in percent, in order; a step of 100 is the promotion.
    /// Required with `drive: proxy`.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Least time per step (more if the evidence is not in yet).
    #[serde(default = "default_hold")]
    pub hold: Dur,
    /// Bound on the chance of failing a healthy canary over the whole
    /// rollout (split evenly between the metrics).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Largest excess of the canary's error (or slow) rate over the
    /// baseline's that still passes, in percentage points.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// What is compared; default: errors and latency.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// On a fail verdict.
    #[serde(default)]
    pub on_fail: OnFail,
    /// After the last step passes.
    #[serde(default)]
    pub on_pass: OnPass,
}

fn default_hold() -> Dur {
    Dur::secs(60)
}

fn default_alpha() -> f64 {
    0.01
}

fn default_tolerance() -> f64 {
    0.5
}

/// Who moves a rollout's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drive {
    /// cutover steps, rolls back and promotes.
    #[default]
    Proxy,
    /// Another controller moves the weights; cutover judges each weight it
    /// sees as a step and answers `/v1/analysis` and the Flagger webhooks.
    External,
}

/// `stable` or `[stable, stable-b]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One group.
    One(String),
    /// Several groups, counted as one arm.
    Many(Vec<String>),
}

/// `5`, or `{weight: 5, hold: 2m, requests: 2000}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Step {
    /// A weight with the rollout's hold.
    Weight(u32),
    /// A weight with its own hold.
    Detailed(StepConfig),
}

/// One step with its own minimum hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Canary weight in percent.
    pub weight: u32,
    /// Least time at this weight; default: the rollout's `hold`.
    #[serde(default)]
    pub hold: Option<Dur>,
    /// Least canary requests at this weight.
    #[serde(default)]
    pub requests: Option<u64>,
}

/// Which metrics are compared.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// 5xx (upstream or local), resets and timeouts per client request.
    #[serde(default)]
    pub errors: Option<ErrorsMetric>,
    /// The share of requests slower than a threshold.
    #[serde(default)]
    pub latency: Option<LatencyMetric>,
}

/// The error metric (no settings yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsMetric {}

/// The latency metric.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyMetric {
    /// `p99_of_baseline` (frozen at each step's start) or a fixed duration.
    #[serde(default)]
    pub slower_than: SlowerThan,
}

/// When a request counts as slow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SlowerThan {
    /// The baseline's p99 over the last minute, frozen at each step's start.
    #[default]
    BaselineP99,
    /// A fixed duration.
    Fixed(Dur),
}

impl<'de> Deserialize<'de> for SlowerThan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SlowerThan, D::Error> {
        let s = String::deserialize(d)?;
        if s == "p99_of_baseline" {
            return Ok(SlowerThan::BaselineP99);
        }
        s.parse().map(SlowerThan::Fixed).map_err(|e| {
            serde::de::Error::custom(format!("expected p99_of_baseline or a duration: {e}"))
        })
    }
}

impl Serialize for SlowerThan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SlowerThan::BaselineP99 => s.serialize_str("p99_of_baseline"),
            SlowerThan::Fixed(d) => s.collect_str(d),
        }
    }
}

/// What a fail verdict does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Canary weight to 0 at once.
    #[default]
    Rollback,
    /// Keep the weights and pause for a person to decide.
    Pause,
}

/// What passing the last step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPass {
    /// 100% to the canary.
    #[default]
    Promote,
    /// Stay at the last step's weights.
    Hold,
}

impl Step {
    /// The canary weight in percent.
    pub fn weight(&self) -> u32 {
        match self {
            Step::Weight(w) => *w,
            Step::Detailed(s) => s.weight,
        }
    }
}

impl RolloutConfig {
    /// The baseline groups the plan names; `None`: the rule's other
    /// backends.
    pub fn named_baselines(&self) -> Option<Vec<String>> {
        match &self.baseline {
            Some(OneOrMany::One(g)) => Some(vec![g.clone()]),
            Some(OneOrMany::Many(gs)) => Some(gs.clone()),
            None => None,
        }
    }

    /// The baseline groups: as named, or the rule's other backends.
    pub fn baselines(&self, rule: &RuleConfig) -> Vec<String> {
        self.named_baselines().unwrap_or_else(|| {
            rule.backends
                .iter()
                .filter(|b| b.group != self.canary)
                .map(|b| b.group.clone())
                .collect()
        })
    }

    /// Whether the latency metric is compared.
    pub fn latency(&self) -> Option<SlowerThan> {
        match &self.metrics {
            None => Some(SlowerThan::BaselineP99),
            Some(m) => m.latency.as_ref().map(|l| l.slower_than.clone()),
        }
    }

    /// Minimum time and canary requests at step `i`.
    pub fn hold_of(&self, i: usize) -> (Dur, u64) {
        match self.steps.get(i) {
            Some(Step::Detailed(s)) => (s.hold.unwrap_or(self.hold), s.requests.unwrap_or(0)),
            _ => (self.hold, 0),
        }
    }
}

/// Checks `rollout` of `rule` at `path` (the rule's path).
pub fn check(rollout: &RolloutConfig, rule: &RuleConfig, path: &str, errors: &mut ConfigErrors) {
    let at = format!("{path}.rollout");
    let backend = |g: &str| rule.backends.iter().any(|b| b.group == g);
    if !backend(&rollout.canary) {
        errors.push(
            format!("{at}.canary"),
            format!("\"{}\" is not a backend of this rule", rollout.canary),
        );
    }
    let baselines = rollout.baselines(rule);
    if baselines.is_empty() {
        errors.push(
            format!("{at}.baseline"),
            "needs a group to compare the canary with (the rule has no other backend)",
        );
    }
    for g in &baselines {
        if g == &rollout.canary {
            errors.push(format!("{at}.baseline"), "must not name the canary");
        } else if !backend(g) {
            errors.push(
                format!("{at}.baseline"),
                format!("\"{g}\" is not a backend of this rule"),
            );
        }
    }
    check_steps(rollout, &at, errors);
    if !(rollout.alpha > 0.0 && rollout.alpha <= 0.2) {
        errors.push(
            format!("{at}.alpha"),
            format!("{} is out of range (0, 0.2]", rollout.alpha),
        );
    }
    if !(rollout.tolerance > 0.0 && rollout.tolerance < 100.0) {
        errors.push(
            format!("{at}.tolerance"),
            format!(
                "{} is out of range (0, 100) percentage points",
                rollout.tolerance
            ),
        );
    }
    if let Some(m) = &rollout.metrics {
        if m.errors.is_none() && m.latency.is_none() {
            errors.push(format!("{at}.metrics"), "names no metric (errors, latency)");
        }
    }
}

fn check_steps(rollout: &RolloutConfig, at: &str, errors: &mut ConfigErrors) {
    match rollout.drive {
        Drive::Proxy if rollout.steps.is_empty() => {
            errors.push(format!("{at}.steps"), "needs at least one step");
        }
        Drive::External if !rollout.steps.is_empty() => {
            errors.push(
                format!("{at}.steps"),
                "with drive: external the controller moves the weights; remove the steps",
            );
        }
        _ => {}
    }
    let mut last = 0;
    for (i, step) in rollout.steps.iter().enumerate() {
        let w = step.weight();
        let path = format!("{at}.steps[{i}]");
        if !(1..=100).contains(&w) {
            errors.push(path, format!("weight {w} is out of range 1..=100"));
        } else if w <= last {
            errors.push(
                path,
                format!("weight {w} does not grow (the step before is {last})"),
            );
        } else if w == 100 && i + 1 != rollout.steps.len() {
            errors.push(path, "100 (the promotion) can only be the last step");
        }
        last = w;
    }
}

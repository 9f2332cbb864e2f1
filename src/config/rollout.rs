//! A rule's `rollout`: the canary, what it is compared with, the weight
//! steps, and what to do on a verdict. Validated with the rest of the config;
//! run by the rollout controller (`src/rollout`).

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::error::ConfigErrors;
use super::model::{Config, RuleConfig};
use super::resilience::Dur;

/// An entry of the top-level `rollouts:` list: a plan for a rule named by
/// route and rule, so an HTTPRoute's rule can have one without being
/// copied into a cutover document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutBinding {
    /// The route's name (an HTTPRoute's `metadata.name`).
    pub route: String,
    /// The rule's name (an HTTPRoute rule's `name`, else `rule-<index>`).
    pub rule: String,
    /// The plan, as under a rule's `rollout:`.
    pub rollout: RolloutConfig,
}

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
    /// Where the counts come from: this proxy's own (default), or a
    /// Prometheus that scrapes every replica, so a fleet reaches one verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceConfig>,
}

/// `source: {prometheus: {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The summed per-group counters of every replica, read from Prometheus.
    pub prometheus: PrometheusSource,
}

/// A Prometheus server that scrapes every replica of this proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    /// Base URL of its HTTP API, e.g. `http://prometheus:9090`.
    pub url: String,
    /// How often it is queried; at least its scrape interval, because each
    /// step's window opens one interval after the step (so that no request
    /// of the step before is counted in it).
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Extra label matchers that pick this fleet's series, e.g.
    /// `job="cutover", namespace="shop"`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Longest wait for one answer.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_interval() -> Dur {
    Dur::secs(10)
}

fn default_timeout() -> Dur {
    Dur::secs(2)
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

/// The plan of `route/rule`: its own `rollout:`, or its entry in the
/// top-level `rollouts:` list.
pub fn plan_of<'c>(
    cfg: &'c Config,
    route: &str,
    rule: &'c RuleConfig,
) -> Option<&'c RolloutConfig> {
    rule.rollout.as_ref().or_else(|| {
        cfg.rollouts
            .iter()
            .find(|b| b.route == route && b.rule == rule.name)
            .map(|b| &b.rollout)
    })
}

/// Checks the top-level `rollouts:` list: each entry names an existing
/// rule that has no other plan, and its plan fits that rule. Returns the
/// valid plans by (route, rule).
pub fn check_bindings<'c>(
    cfg: &'c Config,
    errors: &mut ConfigErrors,
) -> HashMap<(&'c str, &'c str), &'c RolloutConfig> {
    let mut bound: HashMap<(&str, &str), (usize, &RolloutConfig)> = HashMap::new();
    for (i, b) in cfg.rollouts.iter().enumerate() {
        let at = format!("rollouts[{i}]");
        let Some(route) = cfg.routes.iter().find(|r| r.name == b.route) else {
            let known: Vec<&str> = cfg.routes.iter().map(|r| r.name.as_str()).collect();
            errors.push(
                format!("{at}.route"),
                format!(
                    "no route is named \"{}\" (routes: {})",
                    b.route,
                    known.join(", ")
                ),
            );
            continue;
        };
        let Some(rule) = route.rules.iter().find(|r| r.name == b.rule) else {
            let known: Vec<&str> = route.rules.iter().map(|r| r.name.as_str()).collect();
            errors.push(
                format!("{at}.rule"),
                format!(
                    "route \"{}\" has no rule \"{}\" (rules: {})",
                    b.route,
                    b.rule,
                    known.join(", ")
                ),
            );
            continue;
        };
        if rule.rollout.is_some() {
            errors.push(
                at,
                format!(
                    "{}/{} has a rollout of its own; keep one of the two",
                    b.route, b.rule
                ),
            );
            continue;
        }
        if let Some((first, _)) = bound.get(&(b.route.as_str(), b.rule.as_str())) {
            errors.push(
                at,
                format!(
                    "{}/{} already has a rollout at rollouts[{first}]",
                    b.route, b.rule
                ),
            );
            continue;
        }
        check(&b.rollout, rule, &at, errors);
        bound.insert((b.route.as_str(), b.rule.as_str()), (i, &b.rollout));
    }
    bound.into_iter().map(|(k, (_, plan))| (k, plan)).collect()
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
    if let Some(source) = &rollout.source {
        check_prometheus(
            &source.prometheus,
            &format!("{at}.source.prometheus"),
            errors,
        );
    }
}

/// The base URL of a Prometheus HTTP API (`http://host:port[/prefix]`),
/// without a trailing slash; or why it is not one.
pub fn prometheus_base(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("\"{url}\" is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "\"{url}\": only http:// is supported (run the query through a local sidecar for TLS)"
        ));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("\"{url}\" names no host"));
    }
    if uri.query().is_some() {
        return Err(format!("\"{url}\" must not carry a query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Labels the controller sets itself in its queries.
const OWN_LABELS: [&str; 4] = ["__name__", "route", "rule", "group"];

fn check_prometheus(p: &PrometheusSource, at: &str, errors: &mut ConfigErrors) {
    if let Err(why) = prometheus_base(&p.url) {
        errors.push(format!("{at}.url"), why);
    }
    let ms = p.interval.0.as_millis();
    if !(100..=600_000).contains(&ms) {
        errors.push(
            format!("{at}.interval"),
            format!("{} is out of range 100ms..=10m", p.interval),
        );
    }
    if p.timeout.0.is_zero() || p.timeout > p.interval {
        errors.push(
            format!("{at}.timeout"),
            format!(
                "{} must be above 0 and at most the interval ({})",
                p.timeout, p.interval
            ),
        );
    }
    match label_matchers(&p.selector) {
        Err(why) => errors.push(format!("{at}.selector"), why),
        Ok(names) => {
            if let Some(own) = names.iter().find(|n| OWN_LABELS.contains(&n.as_str())) {
                errors.push(
                    format!("{at}.selector"),
                    format!("must not match on \"{own}\" (the rollout sets it)"),
                );
            }
        }
    }
}

/// The label names of a PromQL matcher list (`a="x", b=~"y|z"`), or why it
/// is not one. Quoted values may hold commas and escaped quotes.
pub fn label_matchers(selector: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = selector.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "expected a label name at \"{rest}\" (like job=\"cutover\")"
            ));
        }
        rest = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("expected =, !=, =~ or !~ after {name}"))?;
        rest = rest[op.len()..].trim_start();
        let value_len = quoted_len(rest)
            .ok_or_else(|| format!("the value of {name} must be a \"quoted\" string"))?;
        rest = rest[value_len..].trim_start();
        names.push(name.to_string());
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(format!("expected a comma before \"{rest}\"")),
        }
    }
    Ok(names)
}

/// Length of the double-quoted string `s` starts with, quotes included.
fn quoted_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 2),
            _ => {}
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_matchers_are_read_like_promql() {
        let ok = label_matchers(r#" job="cutover", ns=~"shop|cart" ,a!="x,\"y\"",b!~"" "#);
        assert_eq!(ok.unwrap(), ["job", "ns", "a", "b"]);
        assert_eq!(label_matchers("").unwrap(), Vec::<String>::new());
        for (bad, why) in [
            ("job=cutover", "must be a \"quoted\" string"),
            (r#"job="a" ns="b""#, "expected a comma"),
            (r#"job=="a""#, "must be a \"quoted\" string"),
            (r#"1job="a""#, "expected a label name"),
            (r#"job~"a""#, "expected =, !=, =~ or !~"),
            (r#"job="a"#, "must be a \"quoted\" string"),
        ] {
            let got = label_matchers(bad).unwrap_err();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn prometheus_urls_are_http_with_a_host_and_no_query() {
        assert_eq!(
            prometheus_base("http://prom:9090/").unwrap(),
            "http://prom:9090"
        );
        assert_eq!(
            prometheus_base("http://prom/sub/").unwrap(),
            "http://prom/sub"
        );
        for bad in ["prom:9090", "https://prom", "http://prom/?x=1", "ftp://p"] {
            assert!(prometheus_base(bad).is_err(), "{bad}");
        }
    }
}

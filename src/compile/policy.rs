//! Validates the resilience settings of rules and groups, with field paths.

use crate::config::error::ConfigErrors;
use crate::config::model::{GroupConfig, RetryOn, RuleConfig};
use crate::route::RulePolicy;
use crate::upstream::pool::IdleLimits;
use crate::upstream::GroupPolicy;

/// Most retries a rule may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Largest replay buffer (memory per in-flight request).
const MAX_REPLAY: u64 = 16 << 20;

/// A rule's policy; problems go to `errors` under `path`.
pub fn rule_policy(rule: &RuleConfig, path: &str, errors: &mut ConfigErrors) -> RulePolicy {
    let t = &rule.timeouts;
    if t.request.0.is_zero() {
        errors.push(format!("{path}.timeouts.request"), "must be more than 0");
    }
    if let Some(per_try) = t.per_try {
        if per_try.0.is_zero() || per_try > t.request {
            errors.push(
                format!("{path}.timeouts.per_try"),
                format!(
                    "{per_try} must be more than 0 and at most timeouts.request ({})",
                    t.request
                ),
            );
        }
    }
    let r = &rule.retry;
    let at = format!("{path}.retry");
    if r.attempts > MAX_RETRY_ATTEMPTS {
        errors.push(
            format!("{at}.attempts"),
            format!("{} must be 0..={MAX_RETRY_ATTEMPTS}", r.attempts),
        );
    }
    if r.backoff.base > r.backoff.max {
        errors.push(format!("{at}.backoff.base"), "must be at most backoff.max");
    }
    if r.replay_buffer.0 > MAX_REPLAY {
        errors.push(
            format!("{at}.replay_buffer"),
            format!("{} is over the 16MiB limit", r.replay_buffer),
        );
    }
    if !(0.0..=10.0).contains(&r.budget.ratio) || r.budget.ratio.is_nan() {
        errors.push(format!("{at}.budget.ratio"), "must be 0.0..=10.0");
    }
    for (i, code) in r.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            errors.push(
                format!("{at}.retriable_status_codes[{i}]"),
                format!("{code} is not an HTTP status"),
            );
        }
    }
    if !r.retriable_status_codes.is_empty() && !r.on.contains(&RetryOn::RetriableStatusCodes) {
        errors.push(
            format!("{at}.retriable_status_codes"),
            "has no effect unless retry.on lists retriable-status-codes",
        );
    }
    RulePolicy {
        timeouts: t.clone(),
        retry: r.clone(),
        on_unavailable: rule.on_group_unavailable,
    }
}

/// A group's policy; problems go to `errors` under `path`.
pub fn group_policy(g: &GroupConfig, path: &str, errors: &mut ConfigErrors) -> GroupPolicy {
    let o = &g.outlier;
    let at = format!("{path}.outlier");
    if o.max_ejection_percent > 100 {
        errors.push(format!("{at}.max_ejection_percent"), "must be 0..=100");
    }
    if o.failure_percentage.is_some_and(|p| p == 0 || p > 100) {
        errors.push(format!("{at}.failure_percentage"), "must be 1..=100");
    }
    if o.base_ejection_time.0.is_zero() || o.base_ejection_time > o.max_ejection_time {
        errors.push(
            format!("{at}.base_ejection_time"),
            "must be more than 0 and at most max_ejection_time",
        );
    }
    if o.interval.0.is_zero() {
        errors.push(format!("{at}.interval"), "must be more than 0");
    }
    let l = &g.limits;
    for (field, v) in [
        ("max_connections", l.max_connections),
        ("max_requests", l.max_requests),
    ] {
        if v == 0 {
            errors.push(format!("{path}.limits.{field}"), "must be at least 1");
        }
    }
    if g.connect_timeout.0.is_zero() {
        errors.push(format!("{path}.connect_timeout"), "must be more than 0");
    }
    if g.body_idle_timeout.0.is_zero() {
        errors.push(format!("{path}.body_idle_timeout"), "must be more than 0");
    }
    if let Some(h) = &g.health_check {
        let at = format!("{path}.health_check");
        if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
            errors.push(
                format!("{at}.path"),
                format!("{:?} must be a path starting with '/'", h.path),
            );
        }
        if h.interval.0.is_zero() || h.timeout.0.is_zero() || h.timeout > h.interval {
            errors.push(
                format!("{at}.timeout"),
                "interval and timeout must be more than 0, timeout at most interval",
            );
        }
        if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
            errors.push(
                format!("{at}.healthy_threshold"),
                "thresholds must be at least 1",
            );
        }
    }
    if g.pool.idle_timeout.0.is_zero() {
        errors.push(format!("{path}.pool.idle_timeout"), "must be more than 0s");
    }
    GroupPolicy {
        idle: IdleLimits {
            timeout: g.pool.idle_timeout.0,
            max: g.pool.max_idle as usize,
        },
        outlier: o.enabled.then(|| o.clone()),
        limits: l.clone(),
        health_check: g.health_check.clone(),
        connect_timeout: Some(g.connect_timeout),
        body_idle_timeout: Some(g.body_idle_timeout),
        tls: g
            .tls
            .as_ref()
            .and_then(|t| crate::tls::client::build(t, g.protocol, &format!("{path}.tls"), errors)),
    }
}

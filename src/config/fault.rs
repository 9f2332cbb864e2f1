//! `fault`: injected aborts and delays, on a rule or on one backend, to
//! rehearse a rollback or run a chaos test. Off unless configured; bounded by
//! `max_active`; optionally only for requests carrying a trigger header.

use serde::{Deserialize, Serialize};

use super::resilience::Dur;

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Answer with `status` instead of forwarding, for `fraction` of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortConfig>,
    /// Wait `duration` before forwarding, for `fraction` of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConfig>,
    /// Only requests with this header (any value) get faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Most requests being delayed or aborted at once; more pass untouched.
    #[serde(default = "default_max_active")]
    pub max_active: u32,
}

fn default_max_active() -> u32 {
    100
}

/// `abort: {status: 503, fraction: 0.05}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    /// The status answered (200..=599).
    pub status: u16,
    /// Share of requests, 0..=1.
    pub fraction: f64,
}

/// `delay: {duration: 200ms, fraction: 0.1}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// How long to wait.
    pub duration: Dur,
    /// Share of requests, 0..=1.
    pub fraction: f64,
}

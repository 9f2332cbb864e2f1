//! `fault`: injected aborts and delays, on a rule or on one backend, to
//! rehearse a rollback or run a chaos test. Off unless configured; bounded by
//! `max_active`; optionally only for requests carrying a trigger header.

use std::sync::Arc;

use http::{HeaderName, StatusCode};
use serde::{Deserialize, Serialize};

use super::error::ConfigErrors;
use super::resilience::Dur;
use crate::route::fault::{Fault, PER_MILLION};

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

fn fraction(f: f64, path: &str, errors: &mut ConfigErrors) -> u32 {
    if !(0.0..=1.0).contains(&f) {
        errors.push(path, format!("{f} is out of range 0..=1"));
        return 0;
    }
    (f * f64::from(PER_MILLION)).round() as u32
}

/// Compiles `fault` at `path`; `None` (with errors) when a field is wrong.
pub fn compile(fault: &FaultConfig, path: &str, errors: &mut ConfigErrors) -> Option<Arc<Fault>> {
    let before = errors.0.len();
    let abort = fault.abort.as_ref().and_then(|a| {
        let share = fraction(a.fraction, &format!("{path}.abort.fraction"), errors);
        match StatusCode::from_u16(a.status) {
            Ok(s) if (200..=599).contains(&a.status) => Some((s, share)),
            _ => {
                errors.push(
                    format!("{path}.abort.status"),
                    format!("{} is not a status in 200..=599", a.status),
                );
                None
            }
        }
    });
    let delay = fault.delay.as_ref().map(|d| {
        let share = fraction(d.fraction, &format!("{path}.delay.fraction"), errors);
        (d.duration.0, share)
    });
    let header = fault.header.as_ref().and_then(|h| {
        HeaderName::try_from(h.as_str())
            .map_err(|_| {
                errors.push(
                    format!("{path}.header"),
                    format!("{h:?} is not a header name"),
                )
            })
            .ok()
    });
    if abort.is_none() && delay.is_none() && errors.0.len() == before {
        errors.push(path, "needs abort, delay or both");
    }
    if fault.max_active == 0 {
        errors.push(format!("{path}.max_active"), "must be at least 1");
    }
    (errors.0.len() == before).then(|| Arc::new(Fault::new(abort, delay, header, fault.max_active)))
}

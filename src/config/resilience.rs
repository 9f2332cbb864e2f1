//! Config model of the resilience settings: timeouts, retries, outlier
//! ejection, load limits, health checks; plus the `Duration` and `Size`
//! value types ("250ms", "64KiB") they use. Every field has a default, so a
//! config without any of them gets safe behaviour.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `250ms`, `15s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// `n` milliseconds.
    pub const fn ms(n: u64) -> Dur {
        Dur(Duration::from_millis(n))
    }

    /// `n` seconds.
    pub const fn secs(n: u64) -> Dur {
        Dur(Duration::from_secs(n))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) && ms > 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 250ms, 15s, 5m)"))?;
        let ms = match unit {
            "ms" => n,
            "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
        };
        Ok(Dur::ms(ms))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A byte size written as a number or with `KiB`, `MiB`, `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (n, unit) in UNITS {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{unit}", self.0 / n);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size (e.g. 65536, 64KiB, 1GiB)"))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(format!("{s:?}: unit must be KiB, MiB or GiB")),
        };
        Ok(Size(n.saturating_mul(mult)))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Per-rule timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Whole exchange until the response head, retries included. Default 15s.
    pub request: Dur,
    /// One upstream attempt until its response head; default: no separate limit.
    pub per_try: Option<Dur>,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            request: Dur::secs(15),
            per_try: None,
        }
    }
}

/// What counts as a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The connection could not be made (nothing reached the upstream).
    ConnectFailure,
    /// The connection was reset or closed before a response.
    Reset,
    /// The connection was reset or closed before the first response byte
    /// (an origin that died, a pooled connection closed as it was reused):
    /// idempotent requests are sent again, any request that was not written.
    ResetBeforeResponse,
    /// HTTP/2 REFUSED_STREAM (the upstream did not process the request).
    RefusedStream,
    /// 502, 503 or 504 from the upstream.
    GatewayError,
    /// Any 5xx from the upstream.
    #[serde(rename = "5xx")]
    ServerError,
    /// The statuses in `retriable_status_codes`.
    RetriableStatusCodes,
}

/// Where retries may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Another endpoint of the group first picked.
    #[default]
    SameGroup,
    /// Another group of the rule (a failed canary attempt retries on stable).
    OtherGroups,
    /// Any endpoint of any group of the rule.
    Any,
}

/// Retry policy of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries after the first attempt, 0..=10. Default 1.
    pub attempts: u32,
    /// Retryable failures. Default: connect-failure, refused-stream (both
    /// mean the upstream never processed the request), reset-before-response
    /// (for idempotent methods, which may repeat).
    pub on: Vec<RetryOn>,
    /// Statuses retried with `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Full-jitter exponential backoff between attempts.
    pub backoff: BackoffConfig,
    /// Where a retry may go.
    pub fallback: Fallback,
    /// Retry non-idempotent methods (POST, PATCH) too. Default false.
    pub non_idempotent: bool,
    /// Request bodies up to this size are kept for a retry; a larger body is
    /// streamed and never retried. Default 64KiB.
    pub replay_buffer: Size,
    /// Cap on retries, shared by every rule of the route.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 1,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::RefusedStream,
                RetryOn::ResetBeforeResponse,
            ],
            retriable_status_codes: Vec::new(),
            backoff: BackoffConfig::default(),
            fallback: Fallback::SameGroup,
            non_idempotent: false,
            replay_buffer: Size(64 * 1024),
            budget: BudgetConfig::default(),
        }
    }
}

/// Backoff between attempts: a random wait in [0, min(max, base * 2^n)].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Default 25ms.
    pub base: Dur,
    /// Default 250ms.
    pub max: Dur,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Dur::ms(25),
            max: Dur::ms(250),
        }
    }
}

/// Retries may add at most `ratio` of the route's requests plus
/// `min_per_sec` per second (over a 10 s window).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Default 0.2.
    pub ratio: f64,
    /// Default 10.
    pub min_per_sec: u32,
}

impl Eq for BudgetConfig {}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            min_per_sec: 10,
        }
    }
}

/// What to do when a chosen group has no healthy endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnGroupUnavailable {
    /// Send its share to the rule's other groups, by weight.
    #[default]
    Redistribute,
    /// Answer 503 (Gateway API's behaviour).
    Fail,
}

/// Passive outlier ejection, per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Default true.
    pub enabled: bool,
    /// Eject after this many 5xx in a row. Default 5.
    pub consecutive_5xx: u32,
    /// Eject after this many connect errors, resets, 502/503/504 in a row. Default 5.
    pub consecutive_gateway_failure: u32,
    /// Window of the failure-percentage check. Default 10s.
    pub interval: Dur,
    /// Eject when this percentage of requests in a window failed (5xx or
    /// gateway failure); off when absent.
    pub failure_percentage: Option<u32>,
    /// Requests a window needs before the percentage counts. Default 50.
    pub minimum_requests: u32,
    /// First ejection time, multiplied by the number of ejections. Default 30s.
    pub base_ejection_time: Dur,
    /// Cap on the ejection time. Default 300s.
    pub max_ejection_time: Dur,
    /// Most endpoints of a group ejected at once, in percent; at least one may
    /// always be ejected, never all. Default 50.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            interval: Dur::secs(10),
            failure_percentage: None,
            minimum_requests: 50,
            base_ejection_time: Dur::secs(30),
            max_ejection_time: Dur::secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Circuit breaking: load limits of a group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Upstream connections per endpoint. Default 1024.
    pub max_connections: u32,
    /// Requests in flight to the group. Default 1024.
    pub max_requests: u32,
    /// Requests waiting for a `max_requests` slot. Default 1024.
    pub max_pending: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 1024,
            max_requests: 1024,
            max_pending: 1024,
        }
    }
}

/// A circuit-breaking limit that turned a request away: the one name for
/// it in the 503's reason, the log and the `limit` label of
/// `cutover_overflows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Connections to the group's endpoints.
    MaxConnections,
    /// Requests waiting for a connection.
    MaxPendingRequests,
    /// Requests in flight.
    MaxRequests,
    /// Retries in flight.
    MaxRetries,
}

impl Limit {
    /// Every limit, in label order.
    pub const ALL: [Limit; 4] = [
        Limit::MaxConnections,
        Limit::MaxPendingRequests,
        Limit::MaxRequests,
        Limit::MaxRetries,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxPendingRequests => "max_pending_requests",
            Limit::MaxRequests => "max_requests",
            Limit::MaxRetries => "max_retries",
        }
    }

    /// The local reply's reason (`overflow_` and the config field).
    pub fn reason(self) -> &'static str {
        match self {
            Limit::MaxConnections => "overflow_max_connections",
            Limit::MaxPendingRequests => "overflow_max_pending",
            Limit::MaxRequests => "overflow_max_requests",
            Limit::MaxRetries => "overflow_max_retries",
        }
    }

    /// The local reply's message, naming the config field.
    pub fn message(self) -> &'static str {
        match self {
            Limit::MaxConnections => {
                "circuit breaker: limits.max_connections of the endpoint reached"
            }
            Limit::MaxPendingRequests => "circuit breaker: limits.max_pending of the group reached",
            Limit::MaxRequests => "circuit breaker: limits.max_requests of the group reached",
            Limit::MaxRetries => "circuit breaker: retry limit reached",
        }
    }
}

/// Active health check of a group's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path to GET, e.g. `/health/ready`; 2xx is healthy.
    pub path: String,
    /// Default 5s.
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
    /// Default 1s.
    #[serde(default = "default_hc_timeout")]
    pub timeout: Dur,
    /// Successes in a row to become healthy. Default 1.
    #[serde(default = "one")]
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy. Default 3.
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
}

fn default_hc_interval() -> Dur {
    Dur::secs(5)
}
fn default_hc_timeout() -> Dur {
    Dur::secs(1)
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_and_print() {
        assert_eq!("250ms".parse::<Dur>().unwrap(), Dur::ms(250));
        assert_eq!("15s".parse::<Dur>().unwrap(), Dur::secs(15));
        assert_eq!("5m".parse::<Dur>().unwrap(), Dur::secs(300));
        assert!("15".parse::<Dur>().is_err());
        assert!("1.5s".parse::<Dur>().is_err());
        assert_eq!(Dur::ms(1500).to_string(), "1500ms");
        assert_eq!(Dur::secs(2).to_string(), "2s");
        assert_eq!("64KiB".parse::<Size>().unwrap(), Size(65536));
        assert_eq!("1GiB".parse::<Size>().unwrap().to_string(), "1GiB");
        assert!("1GB".parse::<Size>().is_err());
    }
}

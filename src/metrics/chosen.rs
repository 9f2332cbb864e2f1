//! What the pipeline chose for one request (rule, backend, endpoint,
//! attempts, request id), filled in as it decides and read when the request
//! is recorded.

use http::HeaderValue;

use super::series::RuleMetrics;

/// What the pipeline chose for one request, handed back for metrics and the
/// access log. The pipeline fills it in as it decides; indices refer to the
/// table the request routes on.
#[derive(Debug, Default)]
pub struct Chosen {
    /// Index of the matched rule in `table.rules`.
    pub rule: Option<u32>,
    /// Position of the picked backend in the rule's split.
    pub backend: Option<u32>,
    /// Index of the endpoint in the group (the last attempt's).
    pub endpoint: Option<u32>,
    /// Attempts reported with [`Chosen::attempt`]; while none are, a chosen
    /// endpoint counts as one attempt.
    pub attempts: u32,
    /// The `x-request-id` sent upstream.
    pub request_id: Option<HeaderValue>,
}

impl Chosen {
    /// Resilience: call once per attempt sent upstream, with where it went
    /// (a retry or fallback may change backend and endpoint). Counts
    /// `cutover_upstream_attempts_total` and the log's `attempts`.
    pub fn attempt(&mut self, rule: &RuleMetrics, backend: usize, endpoint: usize) {
        if self.attempts > 0 {
            // A new attempt means the last one failed: count it on its group.
            let previous = self.backend.and_then(|b| rule.backends.get(b as usize));
            if let Some(s) = previous {
                s.arm.failed_attempt();
            }
        }
        if let Some(s) = rule.backends.get(backend) {
            s.route_group.upstream_attempt();
        }
        self.attempts += 1;
        self.backend = u32::try_from(backend).ok();
        self.endpoint = u32::try_from(endpoint).ok();
    }
}

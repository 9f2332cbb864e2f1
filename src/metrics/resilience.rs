//! Route- and group-level counters that the resilience work (retries,
//! fallback, retry budget, outlier ejection, circuit breakers) records into:
//! handles compiled into the table, one relaxed atomic add per event.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::model::Limit;

/// Route-level resilience counters.
#[derive(Debug, Default)]
pub struct RouteSeries {
    retries: AtomicU64,
    fallbacks: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl RouteSeries {
    /// Resilience: a retry was sent -> `cutover_retries_total`.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Resilience: a request fell back to another group ->
    /// `cutover_fallbacks_total`.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Resilience: a retry was refused by the retry budget ->
    /// `cutover_retry_budget_exhausted_total`.
    pub fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    /// `(retries, fallbacks, budget exhausted)`.
    pub fn values(&self) -> [u64; 3] {
        [&self.retries, &self.fallbacks, &self.budget_exhausted].map(|a| a.load(Ordering::Relaxed))
    }
}

/// Group-level resilience counters.
#[derive(Debug, Default)]
pub struct GroupSeries {
    ejections: AtomicU64,
    ejected: AtomicI64,
    overflows: [AtomicU64; Limit::ALL.len()],
    dns_failures: AtomicU64,
    upstream_requests: AtomicU64,
    upstream_connects: AtomicU64,
}

impl GroupSeries {
    /// A lookup of one of the group's host names failed ->
    /// `cutover_dns_failures_total`.
    pub fn dns_failure(&self) {
        self.dns_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A request (one attempt) went to one of the group's endpoints ->
    /// `cutover_upstream_requests_total`.
    pub fn upstream_request(&self) {
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A new upstream connection was opened for the group ->
    /// `cutover_upstream_connects_total`. Against the requests it gives
    /// the connection reuse ratio.
    pub fn upstream_connect(&self) {
        self.upstream_connects.fetch_add(1, Ordering::Relaxed);
    }

    /// `(requests sent upstream, connections opened)` so far.
    pub fn upstream_traffic(&self) -> (u64, u64) {
        (
            self.upstream_requests.load(Ordering::Relaxed),
            self.upstream_connects.load(Ordering::Relaxed),
        )
    }

    /// Failed lookups of the group's host names so far.
    pub fn dns_failures(&self) -> u64 {
        self.dns_failures.load(Ordering::Relaxed)
    }

    /// Resilience: an endpoint of the group was ejected ->
    /// `cutover_outlier_ejections_total` and `cutover_outlier_ejections_active` + 1.
    pub fn ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.ejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Resilience: an ejected endpoint came back ->
    /// `cutover_outlier_ejections_active` - 1.
    pub fn ejection_ended(&self) {
        self.ejected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Resilience: a request was refused by a circuit-breaker limit ->
    /// `cutover_overflows_total{limit}`.
    pub fn overflow(&self, limit: Limit) {
        let i = Limit::ALL.iter().position(|&l| l == limit).unwrap_or(0);
        self.overflows[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(ejections total, ejections active, overflows per Limit::ALL)`.
    pub fn values(&self) -> (u64, i64, [u64; Limit::ALL.len()]) {
        (
            self.ejections.load(Ordering::Relaxed),
            self.ejected.load(Ordering::Relaxed),
            self.overflows.each_ref().map(|a| a.load(Ordering::Relaxed)),
        )
    }
}

//! Passive outlier ejection, per endpoint. The state machine is
//! `Healthy -> Ejected(until) -> Probation -> Healthy | Ejected(longer)`:
//! after its ejection time an endpoint takes traffic again, and the first
//! result decides: success makes it healthy, failure re-ejects it for
//! `base * ejections` (capped). State lives in [`OutlierState`], outside any
//! routing table, so it survives a reload.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::model::OutlierConfig;

/// What one upstream attempt did, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any non-5xx response.
    Success,
    /// A 5xx other than 502/503/504.
    ServerError,
    /// Connect failure, reset, timeout, or 502/503/504.
    GatewayFailure,
}

/// Per-endpoint outlier counters and ejection state.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// 0 when not ejected; else when the ejection ends (ms, see [`crate::clock::now_ms`]).
    ejected_until: AtomicU64,
    /// Ejections so far (multiplies the ejection time).
    ejections: AtomicU32,
    window_start: AtomicU64,
    window_total: AtomicU32,
    window_failed: AtomicU32,
}

/// What [`OutlierState::observe`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Unchanged,
    /// Threshold reached: eject if the group's limit allows.
    ShouldEject(&'static str),
    /// A probe after ejection succeeded: back to healthy.
    Recovered,
}

impl OutlierState {
    /// Whether the endpoint may take traffic at `now` (not ejected, or its
    /// ejection time is over and it is on probation).
    pub fn available(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || now >= until
    }

    /// Ejected before and not yet recovered (inside an ejection or on
    /// probation after it).
    pub fn on_probation(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// Whether the endpoint is inside an ejection at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        !self.available(now)
    }

    /// Records an attempt's outcome and says whether to eject.
    pub fn observe(&self, cfg: &OutlierConfig, outcome: Outcome, now: u64) -> Verdict {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if now < until {
            // Still ejected: a request sent before the ejection finished. It
            // is not a probe and must neither end nor extend the ejection.
            return Verdict::Unchanged;
        }
        let on_probation = until != 0;
        let failed = outcome != Outcome::Success;
        if let Some(v) = self.window(cfg, failed, now) {
            return v;
        }
        if on_probation {
            if failed {
                return Verdict::ShouldEject("failed probe after ejection");
            }
            self.ejected_until.store(0, Ordering::Relaxed);
            self.reset_streaks();
            return Verdict::Recovered;
        }
        match outcome {
            Outcome::Success => {
                self.reset_streaks();
                Verdict::Unchanged
            }
            Outcome::ServerError => {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                self.streak(
                    &self.consecutive_5xx,
                    cfg.consecutive_5xx,
                    "consecutive 5xx",
                )
            }
            Outcome::GatewayFailure => {
                let v = self.streak(
                    &self.consecutive_gateway,
                    cfg.consecutive_gateway_failure,
                    "consecutive gateway failures",
                );
                let v5 = self.streak(
                    &self.consecutive_5xx,
                    cfg.consecutive_5xx,
                    "consecutive 5xx",
                );
                if v == Verdict::Unchanged {
                    v5
                } else {
                    v
                }
            }
        }
    }

    fn streak(&self, counter: &AtomicU32, threshold: u32, why: &'static str) -> Verdict {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && n >= threshold {
            Verdict::ShouldEject(why)
        } else {
            Verdict::Unchanged
        }
    }

    /// Failure-percentage check over `interval` windows.
    fn window(&self, cfg: &OutlierConfig, failed: bool, now: u64) -> Option<Verdict> {
        let pct = cfg.failure_percentage?;
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) >= cfg.interval.0.as_millis() as u64 {
            self.window_start.store(now, Ordering::Relaxed);
            self.window_total.store(0, Ordering::Relaxed);
            self.window_failed.store(0, Ordering::Relaxed);
        }
        let total = self.window_total.fetch_add(1, Ordering::Relaxed) + 1;
        let bad = self
            .window_failed
            .fetch_add(u32::from(failed), Ordering::Relaxed)
            + u32::from(failed);
        (total >= cfg.minimum_requests.max(1) && bad * 100 >= pct * total).then(|| {
            self.window_total.store(0, Ordering::Relaxed);
            self.window_failed.store(0, Ordering::Relaxed);
            Verdict::ShouldEject("failure percentage")
        })
    }

    fn reset_streaks(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
    }

    /// Ejects now; returns for how long. Each ejection lasts
    /// `base * ejections`, capped at `max_ejection_time`.
    pub fn eject(&self, cfg: &OutlierConfig, now: u64) -> Duration {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = cfg
            .base_ejection_time
            .0
            .saturating_mul(n)
            .min(cfg.max_ejection_time.0);
        self.ejected_until
            .store(now + time.as_millis() as u64, Ordering::Relaxed);
        self.reset_streaks();
        time
    }

    /// Ejections so far.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }
}

/// Records an attempt's outcome for `endpoint` of `group`, ejecting it when a
/// threshold is reached and the group's ejection limit allows.
pub fn record(
    group: &super::Group,
    endpoint: &super::Endpoint,
    cfg: &OutlierConfig,
    outcome: Outcome,
    now: u64,
) {
    let state = &endpoint.state.outlier;
    match state.observe(cfg, outcome, now) {
        Verdict::Unchanged => {}
        Verdict::Recovered => {
            group.metrics.ejection_ended();
            tracing::info!(
                group = &*group.name,
                endpoint = &*endpoint.state.address,
                "outlier endpoint passed its probe and is back"
            )
        }
        Verdict::ShouldEject(why) => {
            let ejected = group
                .endpoints
                .iter()
                .filter(|e| e.state.outlier.is_ejected(now))
                .count();
            let limit = max_ejected(group.endpoints.len(), cfg.max_ejection_percent);
            if ejected >= limit {
                tracing::warn!(
                    group = &*group.name,
                    endpoint = &*endpoint.state.address,
                    reason = why,
                    ejected,
                    limit,
                    "outlier not ejected: the group's max_ejection_percent is reached"
                );
                return;
            }
            let re_ejection = state.on_probation();
            let time = state.eject(cfg, now);
            group.metrics.ejection();
            if re_ejection {
                // A failed probe: one more ejection, but not one more active.
                group.metrics.ejection_ended();
            }
            tracing::warn!(
                group = &*group.name,
                endpoint = &*endpoint.state.address,
                reason = why,
                ejection_ms = time.as_millis() as u64,
                ejections = state.ejections(),
                "outlier endpoint ejected"
            );
        }
    }
}

/// How many endpoints of a group of `n` may be ejected at once: the
/// percentage, but at least one, and never all.
pub fn max_ejected(n: usize, percent: u32) -> usize {
    let by_percent = n * percent.min(100) as usize / 100;
    by_percent.max(1).min(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Dur;

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            base_ejection_time: Dur::ms(100),
            max_ejection_time: Dur::ms(250),
            ..OutlierConfig::default()
        }
    }

    #[test]
    fn ejection_limit_is_at_least_one_and_never_all() {
        assert_eq!(max_ejected(1, 50), 0);
        assert_eq!(max_ejected(2, 10), 1);
        assert_eq!(max_ejected(10, 50), 5);
        assert_eq!(max_ejected(10, 100), 9);
        assert_eq!(max_ejected(3, 0), 1);
    }

    #[test]
    fn streaks_eject_and_probes_decide() {
        let (s, c) = (OutlierState::default(), cfg());
        for _ in 0..4 {
            assert_eq!(s.observe(&c, Outcome::ServerError, 1), Verdict::Unchanged);
        }
        assert!(matches!(
            s.observe(&c, Outcome::ServerError, 1),
            Verdict::ShouldEject(_)
        ));
        assert_eq!(s.eject(&c, 1), Duration::from_millis(100));
        assert!(!s.available(50));
        assert!(s.available(101), "probation after the ejection time");
        assert!(matches!(
            s.observe(&c, Outcome::GatewayFailure, 101),
            Verdict::ShouldEject(_)
        ));
        assert_eq!(
            s.eject(&c, 101),
            Duration::from_millis(200),
            "longer each time"
        );
        assert_eq!(s.eject(&c, 301), Duration::from_millis(250), "capped");
        assert_eq!(s.observe(&c, Outcome::Success, 600), Verdict::Recovered);
        assert!(s.available(600));
    }

    #[test]
    fn results_landing_during_an_ejection_are_not_probes() {
        let (s, c) = (OutlierState::default(), cfg());
        for _ in 0..5 {
            s.observe(&c, Outcome::ServerError, 1);
        }
        s.eject(&c, 1);
        assert_eq!(s.observe(&c, Outcome::Success, 50), Verdict::Unchanged);
        assert_eq!(s.observe(&c, Outcome::ServerError, 60), Verdict::Unchanged);
        assert!(!s.available(60), "still ejected");
        assert_eq!(s.observe(&c, Outcome::Success, 101), Verdict::Recovered);
    }

    #[test]
    fn success_resets_the_streak() {
        let (s, c) = (OutlierState::default(), cfg());
        for _ in 0..10 {
            for _ in 0..4 {
                s.observe(&c, Outcome::GatewayFailure, 1);
            }
            assert_eq!(s.observe(&c, Outcome::Success, 1), Verdict::Unchanged);
        }
    }

    /// On the shared clock, with time paused: an ejected endpoint is out of
    /// rotation until its ejection time has passed, then back for a probe,
    /// with no real sleep.
    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_on_the_shared_clock() {
        use crate::clock::now_ms;
        use crate::upstream::{Endpoint, Group, UpstreamState};
        let registry = UpstreamState::default();
        let endpoints = ["10.0.0.1:80", "10.0.0.2:80"]
            .iter()
            .map(|a| Endpoint {
                authority: a.parse().unwrap(),
                state: registry.get_or_create(a),
            })
            .collect();
        let group = Group::new(
            "g".into(),
            endpoints,
            crate::config::model::Balance::RoundRobin,
            crate::config::model::UpstreamProtocol::Http1,
        );
        let (c, first) = (cfg(), &group.endpoints[0]);
        for _ in 0..5 {
            record(&group, first, &c, Outcome::GatewayFailure, now_ms());
        }
        assert!(!first.state.available(now_ms()), "ejected");
        tokio::time::advance(Duration::from_millis(90)).await;
        assert!(!first.state.available(now_ms()), "still ejected at 90 ms");
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(first.state.available(now_ms()), "on probation after 100 ms");
        record(&group, first, &c, Outcome::Success, now_ms());
        assert!(!first.state.outlier.on_probation(), "the probe decided");
    }
}

//! What the release analysis counts per (route, rule, group): client
//! requests and failed attempts, errors, and requests slower than a
//! threshold the rollout freezes at each step's start. Counted whether or not
//! `--no-metrics` is set: a rollout must see its canary. Exported as the
//! `cutover_analysis_*_total` families, which a rollout with
//! `source: prometheus` sums over every replica.

use std::sync::atomic::{AtomicU64, Ordering};

/// No slow threshold set: nothing counts as slow.
const OFF: u64 = u64::MAX;

/// The analysis counters of one (route, rule, group).
#[derive(Debug)]
pub struct ArmCounters {
    trials: AtomicU64,
    errors: AtomicU64,
    slow: AtomicU64,
    /// Requests that ended while a slow threshold was in force: the
    /// denominator of `slow` once replicas freeze at different moments.
    timed: AtomicU64,
    slow_over_us: AtomicU64,
}

impl Default for ArmCounters {
    fn default() -> Self {
        ArmCounters {
            trials: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            slow_over_us: AtomicU64::new(OFF),
        }
    }
}

/// The counters at one moment; the analysis works on differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmSnapshot {
    /// Client requests answered through this group, plus attempts that
    /// failed here and were retried elsewhere.
    pub trials: u64,
    /// Of those, errors: 5xx (upstream or local), resets, timeouts.
    pub errors: u64,
    /// Requests slower than the threshold in force when they ended.
    pub slow: u64,
    /// Requests that ended while a threshold was in force.
    pub timed: u64,
}

impl ArmSnapshot {
    /// `self − earlier`, counter by counter (never below zero).
    pub fn since(&self, earlier: &ArmSnapshot) -> ArmSnapshot {
        ArmSnapshot {
            trials: self.trials.saturating_sub(earlier.trials),
            errors: self.errors.saturating_sub(earlier.errors),
            slow: self.slow.saturating_sub(earlier.slow),
            timed: self.timed.saturating_sub(earlier.timed),
        }
    }

    /// Both snapshots added (several baseline groups form one arm).
    pub fn plus(&self, other: &ArmSnapshot) -> ArmSnapshot {
        ArmSnapshot {
            trials: self.trials + other.trials,
            errors: self.errors + other.errors,
            slow: self.slow + other.slow,
            timed: self.timed + other.timed,
        }
    }
}

impl ArmCounters {
    /// One client request answered through this group: two relaxed
    /// atomic adds at most and one load; two more while a running rollout's
    /// latency threshold is in force (lifted when it stops running).
    pub fn record(&self, error: bool, us: u64) {
        self.trials.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let over = self.slow_over_us.load(Ordering::Relaxed);
        if over != OFF {
            self.timed.fetch_add(1, Ordering::Relaxed);
            if us > over {
                self.slow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An attempt that failed here and was retried (possibly on another
    /// group): a retry must not hide a canary's failure.
    pub fn failed_attempt(&self) {
        self.trials.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests longer than `us` count as slow from now on; `None` stops it.
    pub fn set_slow_threshold(&self, us: Option<u64>) {
        self.slow_over_us
            .store(us.unwrap_or(OFF), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ArmSnapshot {
        ArmSnapshot {
            trials: self.trials.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
            timed: self.timed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_counts_only_over_the_threshold_in_force() {
        let c = ArmCounters::default();
        c.record(false, 10_000);
        c.set_slow_threshold(Some(5_000));
        c.record(false, 4_000);
        c.record(true, 6_000);
        c.failed_attempt();
        let s = c.snapshot();
        assert_eq!((s.trials, s.errors, s.slow, s.timed), (4, 2, 1, 2));
        c.set_slow_threshold(None);
        c.record(false, 60_000);
        assert_eq!(
            c.snapshot().since(&s),
            ArmSnapshot {
                trials: 1,
                errors: 0,
                slow: 0,
                timed: 0
            }
        );
    }
}

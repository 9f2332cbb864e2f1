//! A rollout's two arms in the live table (the canary's series and the
//! baselines' series of its rule) and the step's counts since its start.

use std::sync::Arc;

use crate::analysis::{Arm, Counts};
use crate::config::rollout::SlowerThan;
use crate::metrics::arms::ArmSnapshot;
use crate::metrics::RuleGroupSeries;
use crate::reload::rollouts::RolloutRecord;
use crate::route::RouteTable;

/// Baseline requests in the last minute needed before its p99 is frozen as
/// the step's latency threshold.
const MIN_LATENCY_SAMPLES: u64 = 50;

/// The rule's series for the canary and for each baseline, with weights.
#[derive(Debug)]
pub struct Arms {
    canary: Arc<RuleGroupSeries>,
    canary_weight: u32,
    baseline: Vec<Arc<RuleGroupSeries>>,
    baseline_weight: u32,
    /// The baseline group names, in the rule's order.
    pub baselines: Vec<String>,
}

impl Arms {
    /// Finds the rollout's rule and groups in `table`; the reason if they
    /// are gone (the config changed under the rollout).
    pub fn find(table: &RouteTable, record: &RolloutRecord) -> Result<Arms, String> {
        let rule = table
            .rules
            .iter()
            .find(|r| *r.route == *record.route && *r.name == *record.rule)
            .ok_or_else(|| {
                format!(
                    "rule {}/{} is no longer in the config",
                    record.route, record.rule
                )
            })?;
        let wanted = record.plan.named_baselines();
        let mut canary = None;
        let (mut baseline, mut baselines, mut baseline_weight) = (Vec::new(), Vec::new(), 0);
        for (slot, (group, weight)) in rule.split.backends().enumerate() {
            let Some(name) = table.groups.get(group as usize).map(|g| &*g.name) else {
                continue;
            };
            let Some(series) = rule.metrics.backends.get(slot) else {
                continue;
            };
            if name == record.plan.canary {
                canary = Some((Arc::clone(series), weight));
            } else if wanted.as_ref().is_none_or(|w| w.iter().any(|g| g == name)) {
                baseline.push(Arc::clone(series));
                baselines.push(name.to_string());
                baseline_weight += weight;
            }
        }
        let (canary, canary_weight) = canary.ok_or_else(|| {
            format!(
                "group {} is no longer a backend of {}/{}",
                record.plan.canary, record.route, record.rule
            )
        })?;
        if baseline.is_empty() {
            return Err(format!(
                "{}/{} has no baseline group any more",
                record.route, record.rule
            ));
        }
        Ok(Arms {
            canary,
            canary_weight,
            baseline,
            baseline_weight,
            baselines,
        })
    }

    /// The canary's share of canary + baselines, in whole percent.
    pub fn canary_percent(&self) -> u32 {
        let total = u64::from(self.canary_weight) + u64::from(self.baseline_weight);
        if total == 0 {
            return 0;
        }
        let pct = (u64::from(self.canary_weight) * 100 + total / 2) / total;
        u32::try_from(pct).unwrap_or(100)
    }

    fn snapshot(&self) -> (ArmSnapshot, ArmSnapshot) {
        let baseline = self
            .baseline
            .iter()
            .fold(ArmSnapshot::default(), |acc, s| acc.plus(&s.arm.snapshot()));
        (self.canary.arm.snapshot(), baseline)
    }

    /// The baselines' p99 over the last minute, once there is enough data.
    fn baseline_p99_us(&self) -> Option<u64> {
        let mut p99 = None::<f64>;
        let mut samples = 0;
        for s in &self.baseline {
            let stats = s.route_group.window.read();
            samples += stats.requests;
            if let Some(ms) = stats.quantile_ms(0.99) {
                p99 = Some(p99.map_or(ms, |p| p.max(ms)));
            }
        }
        let p99 = p99.filter(|_| samples >= MIN_LATENCY_SAMPLES)?;
        Some((p99 * 1000.0).round() as u64)
    }

    /// Requests of both arms slower than `us` count as slow; `None`: none
    /// do, and none are timed (the request path's extra work stops).
    pub fn set_slow_threshold(&self, us: Option<u64>) {
        self.canary.arm.set_slow_threshold(us);
        for s in &self.baseline {
            s.arm.set_slow_threshold(us);
        }
    }
}

/// The counters when the step started, and when its latency threshold was
/// frozen.
#[derive(Debug)]
pub struct StepStart {
    at_start: (ArmSnapshot, ArmSnapshot),
    latency: Option<Frozen>,
}

/// The step's frozen latency threshold.
#[derive(Debug)]
struct Frozen {
    /// Requests slower than this count as slow, in microseconds.
    threshold_us: u64,
    at_freeze: (ArmSnapshot, ArmSnapshot),
}

impl StepStart {
    /// The counters now, as a new step's start.
    pub fn now(arms: &Arms) -> StepStart {
        StepStart {
            at_start: arms.snapshot(),
            latency: None,
        }
    }

    /// Freezes the slow threshold the first time it can be known.
    pub fn freeze_latency(&mut self, arms: &Arms, slower_than: Option<&SlowerThan>) {
        if self.latency.is_some() {
            return;
        }
        let threshold_us = match slower_than {
            None => return,
            Some(SlowerThan::Fixed(d)) => u64::try_from(d.0.as_micros()).unwrap_or(u64::MAX),
            Some(SlowerThan::BaselineP99) => match arms.baseline_p99_us() {
                Some(us) => us,
                None => return,
            },
        };
        arms.set_slow_threshold(Some(threshold_us));
        self.latency = Some(Frozen {
            threshold_us,
            at_freeze: arms.snapshot(),
        });
    }

    /// The frozen latency threshold, if any.
    pub fn threshold_us(&self) -> Option<u64> {
        self.latency.as_ref().map(|f| f.threshold_us)
    }

    /// (errors, slow) counts since the step's start (slow: since the freeze).
    pub fn counts(&self, arms: &Arms) -> (Counts, Counts) {
        let (canary, baseline) = arms.snapshot();
        let arm = |now: &ArmSnapshot, then: &ArmSnapshot, slow: bool| {
            let d = now.since(then);
            Arm {
                requests: d.trials,
                bad: if slow { d.slow } else { d.errors },
            }
        };
        let errors = Counts {
            canary: arm(&canary, &self.at_start.0, false),
            baseline: arm(&baseline, &self.at_start.1, false),
        };
        let slow = match &self.latency {
            Some(f) => Counts {
                canary: arm(&canary, &f.at_freeze.0, true),
                baseline: arm(&baseline, &f.at_freeze.1, true),
            },
            None => Counts::default(),
        };
        (errors, slow)
    }
}

//! Release analysis: is the canary worse than the baseline it runs beside?
//! Pure (counts in, verdict out; no clock, no I/O) so that the statistics
//! are table- and simulation-tested on their own.
//!
//! Per metric (errors; optionally slow requests) the canary is compared with
//! the baseline in the same window, so a change in total traffic or in the
//! baseline's own rate is no evidence. Each weight step restarts the count
//! test at that step's share, and the rollout is judged on the product of
//! the step factors, which stays a test martingale: the chance that a
//! healthy canary is ever failed, however often the verdict is read, is at
//! most `alpha` (split evenly between the metrics).
//!
//! - **Fail** when a metric's Bayes factor reaches `metrics / alpha`.
//! - **Pass** when the step's minimum hold is over and, for every metric, the
//!   confidence sequence of (canary rate − baseline rate) lies below the
//!   tolerance.
//! - Otherwise **inconclusive**: the step holds, with an estimate of how many
//!   more canary requests would decide it.

pub mod confidence;
pub mod sequential;
mod special;

#[cfg(test)]
mod tests;

use confidence::Interval;
use serde::{Deserialize, Serialize};

/// How strict the analysis is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Bound on the chance of failing a healthy canary over the whole
    /// rollout; also one minus the confidence of a pass.
    pub alpha: f64,
    /// Largest acceptable excess of the canary's rate over the baseline's
    /// (0.005 = half a percentage point) for a step to pass.
    pub tolerance: f64,
    /// The count test's prior concentration ([`sequential::DEFAULT_CONCENTRATION`]).
    pub concentration: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.01,
            tolerance: 0.005,
            concentration: sequential::DEFAULT_CONCENTRATION,
        }
    }
}

/// Requests and bad events (errors, or slow requests) of one arm in the
/// current step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arm {
    /// Client requests the arm served.
    pub requests: u64,
    /// Of those, the bad ones.
    pub bad: u64,
}

impl Arm {
    /// Bad events per request; 0 with no requests.
    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.bad as f64 / self.requests as f64
        }
    }
}

/// One metric's counts in the current step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// The group under test.
    pub canary: Arm,
    /// What it is compared with.
    pub baseline: Arm,
}

/// What the metrics being judged are called in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// 5xx answers, resets and timeouts per client request.
    Errors,
    /// Requests slower than the baseline's p99 frozen at the step's start.
    Latency,
}

impl Metric {
    /// The name used in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Errors => "errors",
            Metric::Latency => "latency",
        }
    }
}

/// The analysis's answer, as controllers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The step has enough evidence that the canary is no worse.
    Pass,
    /// The canary is worse, with the rollout's false-fail bound.
    Fail,
    /// Not enough evidence either way yet: hold the step.
    Inconclusive,
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`, as the API and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The evidence of one metric carried from step to step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// ln of the product of the finished steps' factors.
    ln_done: f64,
    /// The highest ln factor seen at any look, for the anytime p-value.
    ln_peak: f64,
}

impl Evidence {
    /// ln of the rollout's factor with the current step's counts.
    fn ln_factor(&self, share: f64, counts: &Counts, concentration: f64) -> f64 {
        self.ln_done
            + sequential::ln_bayes_factor(
                share,
                counts.canary.bad,
                counts.baseline.bad,
                concentration,
            )
    }
}

/// One metric's part of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    /// Which metric.
    pub metric: Metric,
    /// The step's counts.
    pub counts: Counts,
    /// The rollout's Bayes factor against "canary no worse".
    pub bayes_factor: f64,
    /// Anytime-valid p-value: 1 / the highest factor seen, at most 1.
    pub p_value: f64,
    /// Confidence interval of (canary rate − baseline rate) in this step.
    pub effect: Interval,
    /// More canary requests expected before this metric can pass, at the
    /// rates seen so far; `None` when those rates would never pass.
    pub requests_needed: Option<u64>,
}

/// A verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The decision.
    pub verdict: Verdict,
    /// Per metric, errors first.
    pub metrics: Vec<MetricReport>,
    /// One sentence a person reads: why this verdict.
    pub reason: String,
}

impl Report {
    /// The most canary requests any metric still needs (`None`: some metric
    /// would not pass at the rates seen).
    pub fn requests_needed(&self) -> Option<u64> {
        self.metrics
            .iter()
            .try_fold(0, |most, m| m.requests_needed.map(|n| most.max(n)))
    }
}

/// The analysis of one rollout: the settings and each metric's evidence.
/// Serialisable, so a restarted proxy resumes with the evidence it had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    settings: Settings,
    errors: Evidence,
    latency: Option<Evidence>,
}

impl Analysis {
    /// A new rollout; `latency` adds the slow-request metric.
    pub fn new(settings: Settings, latency: bool) -> Analysis {
        Analysis {
            settings,
            errors: Evidence::default(),
            latency: latency.then(Evidence::default),
        }
    }

    /// The settings it judges with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn metrics(&self) -> f64 {
        if self.latency.is_some() {
            2.0
        } else {
            1.0
        }
    }

    /// ln of the factor at which a metric fails: ln(metrics / alpha).
    fn ln_threshold(&self) -> f64 {
        (self.metrics() / self.settings.alpha).ln()
    }

    /// Whether the canary fails with the current step's counts (the cheap
    /// part of [`Analysis::judge`], for checking after every bad event).
    /// `slow` is ignored unless the analysis has the latency metric.
    pub fn fails(&mut self, share: f64, errors: &Counts, slow: &Counts) -> bool {
        let (k, threshold) = (self.settings.concentration, self.ln_threshold());
        let mut failed = false;
        for (evidence, counts) in self.evidence_mut(errors, slow) {
            let ln = evidence.ln_factor(share, counts, k);
            evidence.ln_peak = evidence.ln_peak.max(ln);
            failed |= ln >= threshold;
        }
        failed
    }

    /// The verdict for the current step: `share` is the canary's share of
    /// the step's requests, `hold_done` whether its minimum hold is over.
    pub fn judge(&mut self, share: f64, hold_done: bool, errors: &Counts, slow: &Counts) -> Report {
        let failed = self.fails(share, errors, slow);
        let settings = self.settings;
        let k = settings.concentration;
        // Each metric's pass interval at alpha / metrics, like its test.
        let alpha = settings.alpha / self.metrics();
        let mut metrics = Vec::with_capacity(2);
        for (metric, evidence, counts) in self.evidence_with(errors, slow) {
            let effect = effect_interval(counts, alpha);
            let requests_needed = if effect.high < settings.tolerance {
                Some(0)
            } else {
                canary_requests_needed(share, counts, effect, alpha, settings.tolerance)
            };
            metrics.push(MetricReport {
                metric,
                counts: *counts,
                bayes_factor: evidence.ln_factor(share, counts, k).exp(),
                p_value: (-evidence.ln_peak).exp().min(1.0),
                effect,
                requests_needed,
            });
        }
        let precise = metrics.iter().all(|m| m.effect.high < settings.tolerance);
        let verdict = match (failed, precise && hold_done) {
            (true, _) => Verdict::Fail,
            (false, true) => Verdict::Pass,
            (false, false) => Verdict::Inconclusive,
        };
        let reason = explain(verdict, hold_done, &metrics, &settings, self.metrics());
        Report {
            verdict,
            metrics,
            reason,
        }
    }

    /// Folds the finished step into the carried evidence; the next step's
    /// counts start from zero at its own share.
    pub fn finish_step(&mut self, share: f64, errors: &Counts, slow: &Counts) {
        let k = self.settings.concentration;
        for (evidence, counts) in self.evidence_mut(errors, slow) {
            evidence.ln_done = evidence.ln_factor(share, counts, k);
            evidence.ln_peak = evidence.ln_peak.max(evidence.ln_done);
        }
    }

    fn evidence_mut<'a>(
        &'a mut self,
        errors: &'a Counts,
        slow: &'a Counts,
    ) -> impl Iterator<Item = (&'a mut Evidence, &'a Counts)> {
        std::iter::once((&mut self.errors, errors)).chain(self.latency.as_mut().map(|e| (e, slow)))
    }

    fn evidence_with<'a>(
        &'a self,
        errors: &'a Counts,
        slow: &'a Counts,
    ) -> impl Iterator<Item = (Metric, &'a Evidence, &'a Counts)> {
        std::iter::once((Metric::Errors, &self.errors, errors))
            .chain(self.latency.as_ref().map(|e| (Metric::Latency, e, slow)))
    }
}

/// The step's (canary − baseline) interval from its counts.
fn effect_interval(counts: &Counts, alpha: f64) -> Interval {
    let arm = |a: &Arm| (a.bad as f64, a.requests as f64);
    confidence::difference(arm(&counts.canary), arm(&counts.baseline), alpha)
}

/// Most canary requests this estimate looks ahead; beyond it, "never".
const NEEDED_HORIZON: f64 = 1e9;

/// How many more canary requests, with the baseline growing by its share,
/// until the interval's upper end drops below the tolerance. The rates are
/// projected as seen, except that a canary not yet told apart from the
/// baseline (`effect` reaches 0) is projected at the baseline's rate: the
/// answer to "how long if it is as good?", not to the noise of a few
/// requests. `None` if that would not happen within the horizon.
fn canary_requests_needed(
    share: f64,
    counts: &Counts,
    effect: Interval,
    alpha: f64,
    tolerance: f64,
) -> Option<u64> {
    if !(0.0..1.0).contains(&share) || share == 0.0 {
        return None;
    }
    let (c, b) = (counts.canary, counts.baseline);
    let canary_rate = if effect.low <= 0.0 {
        b.rate()
    } else {
        c.rate()
    };
    let per_canary = (1.0 - share) / share;
    let high_after = |more: f64| {
        let canary = (c.bad as f64 + more * canary_rate, c.requests as f64 + more);
        let base_more = more * per_canary;
        let baseline = (
            b.bad as f64 + base_more * b.rate(),
            b.requests as f64 + base_more,
        );
        confidence::difference(canary, baseline, alpha).high
    };
    if high_after(NEEDED_HORIZON) >= tolerance {
        return None;
    }
    let (mut low, mut high) = (0.0, 1.0);
    while high_after(high) >= tolerance {
        low = high;
        high *= 2.0;
    }
    while high - low > 1.0 {
        let mid = 0.5 * (low + high);
        if high_after(mid) < tolerance {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high.ceil() as u64)
}

/// The report's sentence.
fn explain(
    verdict: Verdict,
    hold_done: bool,
    metrics: &[MetricReport],
    settings: &Settings,
    count: f64,
) -> String {
    let pp = |x: f64| format!("{:+.2} pp", x * 100.0);
    let describe = |m: &MetricReport| {
        let (c, b) = (m.counts.canary, m.counts.baseline);
        format!(
            "{}: canary {} of {} ({:.2}%) vs baseline {} of {} ({:.2}%)",
            m.metric.as_str(),
            c.bad,
            c.requests,
            c.rate() * 100.0,
            b.bad,
            b.requests,
            b.rate() * 100.0
        )
    };
    match verdict {
        Verdict::Fail => {
            let threshold = count / settings.alpha;
            let worst = metrics
                .iter()
                .max_by(|a, b| a.bayes_factor.total_cmp(&b.bayes_factor));
            match worst {
                Some(m) => format!(
                    "canary worse: {}; Bayes factor {:.0} reached {:.0}",
                    describe(m),
                    m.bayes_factor,
                    threshold
                ),
                None => "canary worse".to_string(),
            }
        }
        Verdict::Pass => {
            let highs: Vec<String> = metrics
                .iter()
                .map(|m| format!("{} at most {}", m.metric.as_str(), pp(m.effect.high)))
                .collect();
            format!(
                "canary no worse than baseline within {}: {}",
                pp(settings.tolerance),
                highs.join(", ")
            )
        }
        Verdict::Inconclusive => {
            let open = metrics.iter().find(|m| m.effect.high >= settings.tolerance);
            match (open, hold_done) {
                (None, false) => {
                    "evidence is enough; holding for the step's minimum time".to_string()
                }
                (None, true) => "evidence is enough".to_string(),
                (Some(m), _) => {
                    let needed = match m.requests_needed {
                        Some(n) => format!("about {n} more canary requests to decide"),
                        None => "the rates seen so far would not pass".to_string(),
                    };
                    format!(
                        "not enough evidence yet: {}; effect up to {} (tolerance {}); {needed}",
                        describe(m),
                        pp(m.effect.high),
                        pp(settings.tolerance)
                    )
                }
            }
        }
    }
}

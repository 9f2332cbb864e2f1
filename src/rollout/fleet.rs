//! The fleet's counts for rollouts with `source: prometheus`: a task per
//! rollout queries the raw samples of every replica's analysis counters
//! each `interval`, and the controller judges their sum instead of this
//! proxy's own counters, so every replica reaches the same verdict.
//!
//! - **Window:** per step, counts are deltas from the first answer at least
//!   one interval after the step began (by then every replica has been
//!   scraped at the new weights, so no request of the step before counts).
//! - **Counter resets** (a replica restarted): each series is followed
//!   sample by sample; a value below the one before counts from zero, as
//!   Prometheus's `increase()` does, without its extrapolation (counts
//!   stay whole). A series that vanishes keeps what it counted.
//! - **Failures** (no answer, an error, nothing fresh within three
//!   intervals) leave the verdict inconclusive with the reason, and count
//!   `cutover_rollout_source_errors_total`; they never fail a canary.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::prometheus::{quote, Prometheus, Series};
use crate::analysis::{Arm, Counts};
use crate::config::rollout::PrometheusSource;
use crate::metrics::rollout::RolloutSeries;

/// Fewer fleet requests than this in the window: the canary's share is the
/// step's weight, not the share measured.
const MEASURED_SHARE_FROM: u64 = 100;

/// The counted families, by their name in Prometheus, in [`Kind`] order.
const FAMILIES: [&str; 4] = [
    "cutover_analysis_requests_total",
    "cutover_analysis_errors_total",
    "cutover_analysis_timed_total",
    "cutover_analysis_slow_total",
];

/// Index into [`FAMILIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    Errors,
    Timed,
    Slow,
}

/// The running watches, by `route/rule`.
#[derive(Debug, Default)]
pub struct Fleet {
    watches: Mutex<HashMap<String, Watch>>,
}

#[derive(Debug)]
struct Watch {
    source: PrometheusSource,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a rollout's poller and its controller share.
#[derive(Debug)]
struct State {
    /// The step the window belongs to.
    step: Step,
    /// The window opens with the first answer from this moment on.
    opens: Instant,
    window: Option<Window>,
    /// Why the latest query failed; `None` after a good answer.
    error: Option<String>,
    /// When the latest good answer came.
    answered: Option<Instant>,
}

/// One step of one run of a rollout (a resume starts a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index into the plan's steps.
    pub index: usize,
    /// The canary's weight in percent.
    pub percent: u32,
    /// When this proxy began it.
    pub started: Instant,
}

/// Who the rollout compares: its groups.
#[derive(Debug, Clone)]
pub struct Arms<'a> {
    /// The group under test.
    pub canary: &'a str,
    /// The groups it is compared with.
    pub baselines: &'a [String],
}

/// The fleet's counts in the step so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetCounts {
    /// The canary's share of the fleet's requests in the window (the step's
    /// weight until there are enough of them).
    pub share: f64,
    /// Errors per arm.
    pub errors: Counts,
    /// Slow requests per arm, out of those timed against a threshold.
    pub slow: Counts,
}

impl Fleet {
    fn watches(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fleet's counts for `key` in `step`, starting its poller if need
    /// be; why there are none yet otherwise.
    pub fn counts(
        &self,
        (key, route, rule): (&str, &str, &str),
        source: &PrometheusSource,
        arms: Arms<'_>,
        step: Step,
        now: Instant,
        series: &RolloutSeries,
    ) -> Result<FleetCounts, String> {
        let mut watches = self.watches();
        if watches.get(key).is_none_or(|w| w.source != *source) {
            let watch = Watch::start((route, rule), source, arms.clone(), step, series)?;
            watches.insert(key.to_string(), watch);
        }
        let Some(watch) = watches.get(key) else {
            return Err("the prometheus watch did not start".into());
        };
        let interval = source.interval.0;
        let mut s = watch.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.step != step {
            s.step = step;
            s.opens = step.started + interval;
            s.window = None;
        }
        if let Some(e) = &s.error {
            return Err(format!(
                "prometheus: {e}; the verdict holds until it answers"
            ));
        }
        let stale = interval * 3 + source.timeout.0;
        match s.answered {
            Some(at) if now.duration_since(at) <= stale => {}
            Some(at) => {
                return Err(format!(
                    "prometheus: no answer for {:.1}s; the verdict holds until it answers",
                    now.duration_since(at).as_secs_f64()
                ))
            }
            None if now.duration_since(s.opens) > stale => {
                return Err("prometheus: no answer yet; the verdict holds until it answers".into())
            }
            None => {}
        }
        let Some(window) = &s.window else {
            return Err(format!(
                "prometheus: the step's window opens one interval ({}) after the step, once every replica was scraped at its weights",
                source.interval
            ));
        };
        Ok(window.counts(&arms, f64::from(step.percent) / 100.0))
    }

    /// Stops the watches of rollouts not in `running`.
    pub fn retain(&self, running: &[String]) {
        self.watches().retain(|k, _| running.contains(k));
    }
}

impl Watch {
    fn start(
        (route, rule): (&str, &str),
        source: &PrometheusSource,
        arms: Arms<'_>,
        step: Step,
        series: &RolloutSeries,
    ) -> Result<Watch, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "prometheus: no runtime to query from".to_string())?;
        let state = Arc::new(Mutex::new(State {
            step,
            opens: step.started + source.interval.0,
            window: None,
            error: None,
            answered: None,
        }));
        let poller = Poller {
            prometheus: Prometheus::new(&source.url, source.timeout.0),
            promql: query(route, rule, source),
            groups: std::iter::once(arms.canary.to_string())
                .chain(arms.baselines.iter().cloned())
                .collect(),
            interval: source.interval.0,
            state: Arc::clone(&state),
            series: series.clone(),
            names: (route.to_string(), rule.to_string()),
        };
        Ok(Watch {
            source: source.clone(),
            state,
            task: runtime.spawn(poller.run()),
        })
    }
}

/// The range-vector query of a rollout's raw samples: every analysis
/// family of its rule, over three intervals (at least 30 s), so that each
/// answer overlaps the one before and no sample is missed between them.
fn query(route: &str, rule: &str, source: &PrometheusSource) -> String {
    let names: Vec<&str> = FAMILIES
        .iter()
        .map(|n| {
            n.trim_start_matches("cutover_analysis_")
                .trim_end_matches("_total")
        })
        .collect();
    let lookback = (source.interval.0 * 3).max(Duration::from_secs(30));
    let mut matchers = format!(
        "__name__=~\"cutover_analysis_({})_total\",route=\"{}\",rule=\"{}\"",
        names.join("|"),
        quote(route),
        quote(rule)
    );
    if !source.selector.trim().is_empty() {
        matchers.push(',');
        matchers.push_str(source.selector.trim());
    }
    format!("{{{matchers}}}[{}s]", lookback.as_secs().max(1))
}

struct Poller {
    prometheus: Prometheus,
    promql: String,
    groups: Vec<String>,
    interval: Duration,
    state: Arc<Mutex<State>>,
    series: RolloutSeries,
    names: (String, String),
}

impl Poller {
    async fn run(self) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let answer = self.prometheus.matrix(&self.promql).await;
            let now = Instant::now();
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match answer {
                Ok(found) => {
                    let found: Vec<_> = found
                        .into_iter()
                        .filter(|f| {
                            f.metric
                                .get("group")
                                .is_some_and(|g| self.groups.contains(g))
                        })
                        .collect();
                    let opens = s.opens;
                    match &mut s.window {
                        Some(w) => w.advance(&found),
                        None if now >= opens => s.window = Some(Window::open(&found)),
                        None => {}
                    }
                    if s.error.take().is_some() {
                        tracing::info!(route = %self.names.0, rule = %self.names.1, "prometheus answers again");
                    }
                    s.answered = Some(now);
                }
                Err(e) => {
                    if s.error.is_none() {
                        tracing::warn!(route = %self.names.0, rule = %self.names.1, "rollout source failing: {e}");
                    }
                    s.error = Some(e);
                    self.series.source_failed(&self.names.0, &self.names.1);
                }
            }
        }
    }
}

/// One series followed from the window's start.
#[derive(Debug, Clone, PartialEq)]
struct Track {
    last_ts: f64,
    last: f64,
    counted: f64,
}

impl Track {
    /// Counts every sample after the last one seen; a drop is a reset.
    fn advance(&mut self, samples: impl Iterator<Item = (f64, f64)>) {
        for (ts, v) in samples {
            if ts <= self.last_ts {
                continue;
            }
            self.counted += if v >= self.last { v - self.last } else { v };
            (self.last_ts, self.last) = (ts, v);
        }
    }
}

/// Every series of a step's window, by its labels.
#[derive(Debug, Default)]
struct Window {
    tracks: HashMap<BTreeMap<String, String>, Track>,
}

impl Window {
    /// Opens at the latest sample of each series.
    fn open(found: &[Series]) -> Window {
        let mut w = Window::default();
        for s in found {
            if let Some((last_ts, last)) = s.samples().last() {
                let t = Track {
                    last_ts,
                    last,
                    counted: 0.0,
                };
                w.tracks.insert(s.metric.clone(), t);
            }
        }
        w
    }

    /// Adds what each series counted since the answer before; a series
    /// first seen now (a new replica) counts from its first sample.
    fn advance(&mut self, found: &[Series]) {
        for s in found {
            let mut samples = s.samples().peekable();
            let Some(&(first_ts, first)) = samples.peek() else {
                continue;
            };
            self.tracks
                .entry(s.metric.clone())
                .or_insert(Track {
                    last_ts: first_ts,
                    last: first,
                    counted: 0.0,
                })
                .advance(samples);
        }
    }

    /// The summed counts per arm; `weight` is the step's canary share.
    fn counts(&self, arms: &Arms<'_>, weight: f64) -> FleetCounts {
        let mut canary = [0.0; 4];
        let mut baseline = [0.0; 4];
        for (labels, t) in &self.tracks {
            let (Some(group), Some(name)) = (labels.get("group"), labels.get("__name__")) else {
                continue;
            };
            let Some(i) = FAMILIES.iter().position(|n| n == name) else {
                continue;
            };
            if group == arms.canary {
                canary[i] += t.counted;
            } else if arms.baselines.contains(group) {
                baseline[i] += t.counted;
            }
        }
        let whole = |v: f64| v.round().max(0.0) as u64;
        let arm = |c: &[f64; 4], n: Kind, bad: Kind| Arm {
            requests: whole(c[n as usize]),
            bad: whole(c[bad as usize]),
        };
        let errors = Counts {
            canary: arm(&canary, Kind::Requests, Kind::Errors),
            baseline: arm(&baseline, Kind::Requests, Kind::Errors),
        };
        let slow = Counts {
            canary: arm(&canary, Kind::Timed, Kind::Slow),
            baseline: arm(&baseline, Kind::Timed, Kind::Slow),
        };
        let total = errors.canary.requests + errors.baseline.requests;
        // Replicas step at slightly different moments, so the fleet's
        // canary share is measured rather than assumed.
        let share = if total >= MEASURED_SHARE_FROM {
            (errors.canary.requests as f64 / total as f64).clamp(0.001, 0.999)
        } else {
            weight
        };
        FleetCounts {
            share,
            errors,
            slow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, group: &str, instance: &str, samples: &[(f64, f64)]) -> Series {
        let metric = [("__name__", name), ("group", group), ("instance", instance)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Series {
            metric,
            values: samples.iter().map(|(t, v)| (*t, v.to_string())).collect(),
        }
    }

    const REQ: &str = "cutover_analysis_requests_total";
    const ERR: &str = "cutover_analysis_errors_total";

    fn arms(baselines: &[String]) -> Arms<'_> {
        Arms {
            canary: "canary",
            baselines,
        }
    }

    #[test]
    fn deltas_from_the_window_start_summed_over_replicas() {
        let stable = ["stable".to_string()];
        let mut w = Window::open(&[
            series(REQ, "canary", "a", &[(1.0, 50.0), (2.0, 100.0)]),
            series(REQ, "canary", "b", &[(2.0, 7.0)]),
            series(REQ, "stable", "a", &[(2.0, 900.0)]),
            series(ERR, "canary", "a", &[(2.0, 4.0)]),
        ]);
        // Overlapping answers: samples already seen are not counted twice.
        w.advance(&[
            series(REQ, "canary", "a", &[(2.0, 100.0), (3.0, 110.0)]),
            series(REQ, "canary", "b", &[(2.0, 7.0), (3.0, 17.0)]),
            series(REQ, "stable", "a", &[(3.0, 1080.0)]),
            series(ERR, "canary", "a", &[(3.0, 6.0)]),
        ]);
        w.advance(&[series(REQ, "canary", "a", &[(3.0, 110.0), (4.0, 130.0)])]);
        let c = w.counts(&arms(&stable), 0.1);
        assert_eq!(
            c.errors.canary,
            Arm {
                requests: 40,
                bad: 2
            }
        );
        assert_eq!(
            c.errors.baseline,
            Arm {
                requests: 180,
                bad: 0
            }
        );
        assert!((c.share - 40.0 / 220.0).abs() < 1e-12);
    }

    #[test]
    fn a_restarted_replica_counts_from_zero_and_a_new_one_from_its_first_sample() {
        let stable = ["stable".to_string()];
        let mut w = Window::open(&[series(ERR, "canary", "a", &[(1.0, 40.0)])]);
        // Replica a restarts between samples 2 and 3 (40 -> 45 -> 3 -> 8),
        // replica c appears at 10 errors and reaches 12.
        w.advance(&[
            series(ERR, "canary", "a", &[(2.0, 45.0), (3.0, 3.0), (4.0, 8.0)]),
            series(ERR, "canary", "c", &[(3.0, 10.0), (4.0, 12.0)]),
        ]);
        // Replica a is gone from the answers: what it counted stays.
        w.advance(&[series(ERR, "canary", "c", &[(5.0, 13.0)])]);
        let c = w.counts(&arms(&stable), 0.05);
        assert_eq!(c.errors.canary.bad, 5 + 3 + 5 + 2 + 1);
        // Too few requests to measure the share: the step's weight.
        assert_eq!(c.share, 0.05);
    }

    #[test]
    fn groups_outside_the_rollout_are_not_counted() {
        let stable = ["stable".to_string()];
        let mut w = Window::open(&[series(REQ, "other", "a", &[(1.0, 0.0)])]);
        w.advance(&[series(REQ, "other", "a", &[(2.0, 500.0)])]);
        let c = w.counts(&arms(&stable), 0.2);
        assert_eq!(c.errors, Counts::default());
    }

    #[test]
    fn the_query_selects_the_rule_and_the_fleet() {
        let source = PrometheusSource {
            url: "http://p:9090".into(),
            interval: crate::config::resilience::Dur::ms(500),
            selector: r#"job="cutover""#.into(),
            timeout: crate::config::resilience::Dur::ms(200),
        };
        assert_eq!(
            query("web", "split", &source),
            r#"{__name__=~"cutover_analysis_(requests|errors|timed|slow)_total",route="web",rule="split",job="cutover"}[30s]"#
        );
    }
}

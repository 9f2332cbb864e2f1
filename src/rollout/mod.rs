//! The rollout controller: every tick it reads each running rollout's
//! counters from the live table (or, with `source: prometheus`, the whole
//! fleet's, which [`fleet`] keeps), asks [`crate::analysis`] for a verdict, and
//! steps the weights, rolls back or promotes through the one change path
//! (overrides with origin `rollout`, persisted with the rollout's record).
//!
//! What is persisted ([`RolloutRecord`]: plan, step, phase, the evidence of
//! the finished steps) survives a restart; what is not (the counters at the
//! step's start, the frozen latency threshold, the last report) starts
//! afresh, so a restarted proxy resumes at its step with a new hold.

pub mod actions;
mod counts;
pub mod fleet;
pub mod prometheus;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::analysis::{Analysis, Counts, Report, Settings, Verdict};
use crate::config::rollout::{Drive, OnFail, OnPass, RolloutConfig};
use crate::reload::rollouts::{Phase, RolloutRecord};
use crate::reload::{self, overrides::Weights, Tables};
use counts::{Arms, StepStart};
use fleet::FleetCounts;

/// How often running rollouts are judged: a fail moves the weights within
/// this (plus one publish) of the evidence arriving.
pub const TICK: Duration = Duration::from_millis(100);

/// The controller's handles: the published tables, read and changed only
/// through `reload`, and the rollouts' in-memory state.
#[derive(Debug)]
pub struct Control {
    /// The published table and the desired state.
    pub tables: Arc<Tables>,
    /// Each running rollout's step state and last report.
    pub rollouts: Rollouts,
}

impl Control {
    /// A controller with no rollout in memory yet (records are restored
    /// with the desired state).
    pub fn new(tables: Arc<Tables>) -> Control {
        Control {
            tables,
            rollouts: Rollouts::default(),
        }
    }
}

/// The in-memory part of every rollout, by `route/rule`.
#[derive(Debug, Default)]
pub struct Rollouts {
    live: Mutex<HashMap<String, Live>>,
    /// Each rollout's last report once its step ended, so a finished
    /// rollout still shows the evidence of its verdict.
    last: Mutex<HashMap<String, Last>>,
    /// The fleet's counts of rollouts with `source: prometheus`.
    fleet: fleet::Fleet,
    /// Rollouts whose arms have a latency threshold in force, so that it is
    /// lifted once they stop running.
    timed: Mutex<HashSet<String>>,
}

/// What the API still shows of an ended step.
#[derive(Debug, Clone)]
struct Last {
    report: Option<Report>,
    step_secs: f64,
    slow_threshold_ms: Option<f64>,
}

impl Live {
    fn last(&self) -> Last {
        Last {
            report: self.report.clone(),
            step_secs: self.started.elapsed().as_secs_f64(),
            slow_threshold_ms: self.start.threshold_us().map(|us| us as f64 / 1000.0),
        }
    }
}

/// What a running step keeps in memory.
#[derive(Debug)]
struct Live {
    /// The step this state belongs to, and the canary's weight in it.
    step: usize,
    percent: u32,
    started: Instant,
    start: StepStart,
    /// The record's evidence plus this step's looks (their peak is the
    /// anytime p-value).
    analysis: Analysis,
    /// The latest verdict, for the API and metrics.
    report: Option<Report>,
    /// With `source: prometheus`: the fleet's counts at the last tick.
    fleet: Option<FleetCounts>,
}

impl Live {
    fn new(record: &RolloutRecord, arms: &Arms, percent: u32, now: Instant) -> Live {
        Live {
            step: record.step,
            percent,
            started: now,
            start: StepStart::now(arms),
            analysis: record.analysis.clone(),
            report: None,
            fleet: None,
        }
    }

    /// The canary's share and the step's (errors, slow) counts: the fleet's
    /// with `source: prometheus`, else this proxy's own.
    fn step_counts(&self, arms: &Arms, percent: u32) -> (f64, Counts, Counts) {
        match &self.fleet {
            Some(f) => (f.share, f.errors, f.slow),
            None => {
                let (errors, slow) = self.start.counts(arms);
                (f64::from(percent) / 100.0, errors, slow)
            }
        }
    }
}

/// A rollout as the API shows it.
#[derive(Debug, Clone)]
pub struct View {
    /// The persisted record.
    pub record: RolloutRecord,
    /// The latest report (none before the first tick of a step).
    pub report: Option<Report>,
    /// Seconds into the current step.
    pub step_secs: f64,
    /// The step's frozen latency threshold, in milliseconds.
    pub slow_threshold_ms: Option<f64>,
}

impl Rollouts {
    fn with_live<T>(&self, f: impl FnOnce(&mut HashMap<String, Live>) -> T) -> T {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut live)
    }

    /// Forgets a rollout's in-memory state, so its next tick starts the step
    /// afresh (after a start, resume or step change).
    fn reset(&self, key: &str) {
        if let Some(ended) = self.with_live(|l| l.remove(key)) {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.insert(key.to_string(), ended.last());
        }
    }

    /// Lifts the latency threshold of rollouts that no longer run: their
    /// requests stop being timed (one relaxed add less per request).
    fn thaw(&self, table: &crate::route::RouteTable, records: &[RolloutRecord]) {
        let mut timed = self.timed.lock().unwrap_or_else(|p| p.into_inner());
        timed.retain(|key| {
            let record = records
                .iter()
                .find(|r| RolloutRecord::key(&r.route, &r.rule) == *key);
            match record {
                Some(r) if r.phase == Phase::Running => true,
                Some(r) => {
                    if let Ok(arms) = Arms::find(table, r) {
                        arms.set_slow_threshold(None);
                    }
                    false
                }
                None => false,
            }
        });
    }

    /// Every rollout with its latest report.
    pub fn views(&self, tables: &Tables) -> Vec<View> {
        let records = reload::rollout_records(tables);
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.with_live(|live| {
            records
                .into_iter()
                .map(|record| {
                    let key = RolloutRecord::key(&record.route, &record.rule);
                    let seen = live.get(&key).map(Live::last).or_else(|| {
                        // A running step's report is its own, never the last one's.
                        let ended = !matches!(record.phase, Phase::Running);
                        last.get(&key).filter(|_| ended).cloned()
                    });
                    View {
                        report: seen.as_ref().and_then(|l| l.report.clone()),
                        step_secs: seen.as_ref().map_or(0.0, |l| l.step_secs),
                        slow_threshold_ms: seen.and_then(|l| l.slow_threshold_ms),
                        record,
                    }
                })
                .collect()
        })
    }
}

/// Judges every running rollout each [`TICK`] until the task is aborted.
pub async fn supervise(shared: Arc<Control>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        tick(&shared);
    }
}

/// One round over the rollouts (public so tests can drive it).
pub fn tick(shared: &Control) {
    start_external(shared);
    let records = reload::rollout_records(&shared.tables);
    shared.rollouts.thaw(&shared.tables.routes.load(), &records);
    let mut watched = Vec::new();
    for record in records {
        match record.phase {
            Phase::Running => {
                if record.plan.source.is_some() {
                    watched.push(RolloutRecord::key(&record.route, &record.rule));
                }
                judge(shared, record);
            }
            Phase::Failed => end_once_moved(shared, record),
            _ => {}
        }
    }
    shared.rollouts.fleet.retain(&watched);
}

/// A failed externally driven rollout keeps saying `fail` until its
/// controller has moved the canary to 0% (or 100%).
fn end_once_moved(shared: &Control, record: RolloutRecord) {
    let percent =
        Arms::find(&shared.tables.routes.load(), &record).map_or(0, |a| a.canary_percent());
    if !(1..100).contains(&percent) {
        end(shared, record, percent);
    }
}

/// The settings a plan asks for.
pub fn settings(plan: &RolloutConfig) -> Settings {
    Settings {
        alpha: plan.alpha,
        tolerance: plan.tolerance / 100.0,
        ..Settings::default()
    }
}

/// `drive: external` plans need no start: judging begins when the
/// controller gives the canary some (not all) of the traffic.
fn start_external(shared: &Control) {
    let table = shared.tables.routes.load_full();
    let mut records = None;
    for rule in table.rules.iter() {
        let Some(plan) = rule.rollout.as_ref().filter(|p| p.drive == Drive::External) else {
            continue;
        };
        let key = RolloutRecord::key(&rule.route, &rule.name);
        let records = records.get_or_insert_with(|| reload::rollout_records(&shared.tables));
        let active = records.iter().any(|r| {
            RolloutRecord::key(&r.route, &r.rule) == key
                && (!r.phase.is_final() || r.phase == Phase::Failed)
        });
        if active {
            continue;
        }
        let record = new_record(&rule.route, &rule.name, (**plan).clone());
        let percent = Arms::find(&table, &record).map_or(0, |a| a.canary_percent());
        if (1..100).contains(&percent) {
            tracing::info!(route = %rule.route, rule = %rule.name, weight = percent, "judging the externally driven canary");
            store(shared, "rollout: judging", record, None);
        }
    }
}

fn judge(shared: &Control, record: RolloutRecord) {
    let key = RolloutRecord::key(&record.route, &record.rule);
    let table = shared.tables.routes.load_full();
    let arms = match Arms::find(&table, &record) {
        Ok(arms) => arms,
        Err(why) => return pause(shared, record, &why),
    };
    let percent = arms.canary_percent();
    let external = record.plan.drive == Drive::External;
    if external && !(1..100).contains(&percent) {
        return end(shared, record, percent);
    }
    let step_weight = record.plan.steps.get(record.step).map_or(0, |s| s.weight());
    if !external && percent != step_weight {
        let why = format!(
            "the canary's weight was changed outside the rollout (it is {percent}%, the step says {step_weight}%); paused"
        );
        return pause(shared, record, &why);
    }
    let now = Instant::now();
    let looked = shared.rollouts.with_live(|live| {
        let l = live
            .entry(key.clone())
            .or_insert_with(|| Live::new(&record, &arms, percent, now));
        if l.step != record.step {
            *l = Live::new(&record, &arms, percent, now);
        }
        if l.percent != percent {
            // An external controller moved the weight: the step is over.
            let (share, errors, slow) = l.step_counts(&arms, l.percent);
            return Err(Box::new((l.analysis.clone(), share, errors, slow)));
        }
        l.start
            .freeze_latency(&arms, record.plan.latency().as_ref());
        if l.start.threshold_us().is_some() {
            let mut timed = shared
                .rollouts
                .timed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !timed.contains(&key) {
                timed.insert(key.clone());
            }
        }
        if let Some(source) = &record.plan.source {
            let fleet_arms = fleet::Arms {
                canary: &record.plan.canary,
                baselines: &arms.baselines,
            };
            let step = fleet::Step {
                index: record.step,
                percent,
                started: l.started,
            };
            let counted = shared.rollouts.fleet.counts(
                (&key, &record.route, &record.rule),
                &source.prometheus,
                fleet_arms,
                step,
                now,
                &shared.tables.metrics().rollout,
            );
            match counted {
                Ok(c) => l.fleet = Some(c),
                Err(why) => {
                    let report = holding(l.report.as_ref(), why);
                    l.report = Some(report.clone());
                    return Ok(report);
                }
            }
        }
        let (share, errors, slow) = l.step_counts(&arms, percent);
        let (hold, least_requests) = record.plan.hold_of(record.step);
        let hold_over =
            now.duration_since(l.started) >= hold.0 && errors.canary.requests >= least_requests;
        let report = l.analysis.judge(share, hold_over, &errors, &slow);
        l.report = Some(report.clone());
        Ok(report)
    });
    let report = match looked {
        Ok(report) => report,
        Err(moved) => {
            let (analysis, share, errors, slow) = *moved;
            return next_external_step(shared, record, analysis, share, &errors, &slow);
        }
    };
    let factors: Vec<(&str, f64)> = report
        .metrics
        .iter()
        .map(|m| (m.metric.as_str(), m.bayes_factor))
        .collect();
    shared.tables.metrics().rollout.record(
        &record.route,
        &record.rule,
        record.step,
        report.verdict.as_str(),
        &factors,
    );
    match (report.verdict, external) {
        (Verdict::Fail, _) => fail(shared, record, &report),
        (Verdict::Pass, false) => advance(shared, record, &report, &arms),
        _ => {}
    }
}

/// An inconclusive verdict while the counts cannot be read: the last
/// report's evidence stays on show, with `why` as the reason.
fn holding(last: Option<&Report>, why: String) -> Report {
    Report {
        verdict: Verdict::Inconclusive,
        metrics: last.map(|r| r.metrics.clone()).unwrap_or_default(),
        reason: why,
    }
}

/// Folds the step an external controller just ended into the evidence; the
/// next tick judges the new weight as a new step.
fn next_external_step(
    shared: &Control,
    mut record: RolloutRecord,
    mut analysis: Analysis,
    share: f64,
    errors: &Counts,
    slow: &Counts,
) {
    analysis.finish_step(share, errors, slow);
    record.analysis = analysis;
    record.step += 1;
    store(shared, "rollout: weight moved", record, None);
}

/// An externally driven canary back at 0% or at 100%: judging stops.
fn end(shared: &Control, mut record: RolloutRecord, percent: u32) {
    record.phase = Phase::Ended;
    record.reason = format!("the controller moved the canary to {percent}%");
    tracing::info!(route = %record.route, rule = %record.rule, "rollout ended: {}", record.reason);
    store(shared, "rollout: ended", record, None);
}

/// Weights with the canary at `percent` and the baselines sharing the rest
/// (evenly; the first takes the remainder).
pub fn step_weights(record: &RolloutRecord, baselines: &[String], percent: u32) -> Weights {
    let mut w = Weights::new();
    w.insert(record.plan.canary.clone(), percent);
    let rest = 100 - percent.min(100);
    let n = u32::try_from(baselines.len().max(1)).unwrap_or(u32::MAX);
    for (i, g) in baselines.iter().enumerate() {
        let extra = if i == 0 { rest % n } else { 0 };
        w.insert(g.clone(), rest / n + extra);
    }
    w
}

fn fail(shared: &Control, mut record: RolloutRecord, report: &Report) {
    record.reason = report.reason.clone();
    let arms = Arms::find(&shared.tables.routes.load(), &record).ok();
    let (phase, weights, what) = match record.plan.on_fail {
        _ if record.plan.drive == Drive::External => (Phase::Failed, None, "rollout: failed"),
        OnFail::Rollback => {
            let baselines = arms.map(|a| a.baselines).unwrap_or_default();
            let w = step_weights(&record, &baselines, 0);
            (Phase::RolledBack, Some(w), "rollout: rolled back")
        }
        OnFail::Pause => (Phase::Paused, None, "rollout: paused on fail"),
    };
    record.phase = phase;
    tracing::warn!(
        route = %record.route, rule = %record.rule, step = record.step,
        "rollout failed ({}): {}", phase.as_str(), report.reason
    );
    if phase == Phase::RolledBack {
        shared
            .tables
            .metrics()
            .rollout
            .rolled_back(&record.route, &record.rule);
    }
    store(shared, what, record, weights);
}

fn advance(shared: &Control, mut record: RolloutRecord, report: &Report, arms: &Arms) {
    let key = RolloutRecord::key(&record.route, &record.rule);
    let percent = arms.canary_percent();
    let looked = shared.rollouts.with_live(|live| {
        live.get(&key)
            .map(|l| (l.analysis.clone(), l.step_counts(arms, percent)))
    });
    if let Some((analysis, (share, errors, slow))) = looked {
        record.analysis = analysis;
        record.analysis.finish_step(share, &errors, &slow);
    }
    record.reason = report.reason.clone();
    let next = record.step + 1;
    let last_judged = next >= record.plan.steps.len()
        || record
            .plan
            .steps
            .get(next)
            .is_some_and(|s| s.weight() == 100);
    let (weights, what) = if last_judged {
        match record.plan.on_pass {
            OnPass::Promote => {
                record.phase = Phase::Promoted;
                record.step = record.plan.steps.len().saturating_sub(1);
                shared
                    .tables
                    .metrics()
                    .rollout
                    .promoted(&record.route, &record.rule);
                (
                    Some(step_weights(&record, &arms.baselines, 100)),
                    "rollout: promoted",
                )
            }
            OnPass::Hold => {
                record.phase = Phase::Passed;
                (None, "rollout: passed, holding")
            }
        }
    } else {
        record.step = next;
        let w = record.plan.steps[next].weight();
        (
            Some(step_weights(&record, &arms.baselines, w)),
            "rollout: next step",
        )
    };
    tracing::info!(
        route = %record.route, rule = %record.rule, step = record.step,
        phase = record.phase.as_str(), "{what}: {}", report.reason
    );
    store(shared, what, record, weights);
}

fn pause(shared: &Control, mut record: RolloutRecord, why: &str) {
    tracing::warn!(route = %record.route, rule = %record.rule, "rollout paused: {why}");
    record.phase = Phase::Paused;
    record.reason = why.to_string();
    store(shared, "rollout: paused", record, None);
}

/// Publishes the record (and weights); the step's in-memory state restarts.
fn store(shared: &Control, what: &str, record: RolloutRecord, weights: Option<Weights>) {
    let key = RolloutRecord::key(&record.route, &record.rule);
    if let Err(e) = reload::set_rollout(&shared.tables, what, record, weights) {
        tracing::error!(rollout = %key, "rollout change not applied: {e}");
    }
    shared.rollouts.reset(&key);
}

/// A new record at step 0 for a rule's plan.
pub fn new_record(route: &str, rule: &str, plan: RolloutConfig) -> RolloutRecord {
    RolloutRecord {
        route: route.to_string(),
        rule: rule.to_string(),
        analysis: Analysis::new(settings(&plan), plan.latency().is_some()),
        plan,
        step: 0,
        phase: Phase::Running,
        reason: "started".to_string(),
    }
}

//! What a person (or a controller) can do to a rollout through the control
//! API: start, pause, resume, abort. Each is one change through the reload
//! path.

use super::Control;
use crate::config::rollout::{plan_of as plan_for, RolloutConfig};
use crate::reload::overrides::find_rule;
use crate::reload::rollouts::{Phase, RolloutRecord};
use crate::reload::{self, ChangeError};

use super::{new_record, step_weights};

/// Why an action was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// No such rule, or it has no `rollout` plan, or no rollout to act on.
    NotFound(String),
    /// The rollout is not in a phase the action applies to.
    Conflict(String),
    /// The change path refused it.
    Change(ChangeError),
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionError::NotFound(m) | ActionError::Conflict(m) => f.write_str(m),
            ActionError::Change(e) => e.fmt(f),
        }
    }
}

/// The rule's plan and baseline groups in the effective config.
fn plan_of(
    shared: &Control,
    route: &str,
    rule: &str,
) -> Result<(RolloutConfig, Vec<String>), ActionError> {
    let (_, _, effective) = reload::snapshot(&shared.tables);
    let r = find_rule(&effective, route, rule).map_err(|m| ActionError::NotFound(m.0))?;
    let plan = plan_for(&effective, route, r).cloned().ok_or_else(|| {
        ActionError::NotFound(format!(
            "rule \"{rule}\" of route \"{route}\" has no rollout plan (add `rollout:` to it, or an entry to `rollouts:`)"
        ))
    })?;
    let baselines = plan.baselines(r);
    Ok((plan, baselines))
}

fn record_of(shared: &Control, route: &str, rule: &str) -> Result<RolloutRecord, ActionError> {
    let key = RolloutRecord::key(route, rule);
    reload::rollout_records(&shared.tables)
        .into_iter()
        .find(|r| RolloutRecord::key(&r.route, &r.rule) == key)
        .ok_or_else(|| {
            ActionError::NotFound(format!("no rollout of {route}/{rule}; start one first"))
        })
}

/// Starts the rule's plan at its first step (weights set at once). A
/// rollout still running or paused must be aborted first.
pub fn start(shared: &Control, route: &str, rule: &str) -> Result<u64, ActionError> {
    if let Ok(r) = record_of(shared, route, rule) {
        if !r.phase.is_final() {
            return Err(ActionError::Conflict(format!(
                "a rollout of {route}/{rule} is {} at step {}; abort it first",
                r.phase.as_str(),
                r.step
            )));
        }
    }
    let (plan, baselines) = plan_of(shared, route, rule)?;
    let record = new_record(route, rule, plan);
    let first = record.plan.steps.first().map_or(0, |s| s.weight());
    let weights = step_weights(&record, &baselines, first);
    tracing::info!(%route, %rule, weight = first, "rollout started");
    let key = RolloutRecord::key(route, rule);
    let generation = reload::set_rollout(&shared.tables, "rollout: started", record, Some(weights))
        .map_err(ActionError::Change)?;
    shared.rollouts.reset(&key);
    Ok(generation)
}

/// Holds a running rollout at its step.
pub fn pause(shared: &Control, route: &str, rule: &str) -> Result<u64, ActionError> {
    let mut r = record_of(shared, route, rule)?;
    if r.phase != Phase::Running {
        return Err(ActionError::Conflict(format!(
            "the rollout is {}, not running",
            r.phase.as_str()
        )));
    }
    r.phase = Phase::Paused;
    r.reason = "paused through the control API".to_string();
    reload::set_rollout(&shared.tables, "rollout: paused", r, None).map_err(ActionError::Change)
}

/// Resumes a paused rollout at its step. After a fail that paused it, the
/// evidence starts afresh (resuming means a person judged it acceptable).
pub fn resume(shared: &Control, route: &str, rule: &str) -> Result<u64, ActionError> {
    let mut r = record_of(shared, route, rule)?;
    if r.phase != Phase::Paused {
        return Err(ActionError::Conflict(format!(
            "the rollout is {}, not paused",
            r.phase.as_str()
        )));
    }
    let (plan, baselines) = plan_of(shared, route, rule)?;
    let fresh = new_record(route, rule, plan);
    r.analysis = fresh.analysis;
    r.phase = Phase::Running;
    r.reason = "resumed through the control API".to_string();
    // The weights of the step it is at, in case they were moved meanwhile.
    let weight = r.plan.steps.get(r.step).map_or(0, |s| s.weight());
    let weights = step_weights(&r, &baselines, weight);
    let key = RolloutRecord::key(route, rule);
    let generation = reload::set_rollout(&shared.tables, "rollout: resumed", r, Some(weights))
        .map_err(ActionError::Change)?;
    shared.rollouts.reset(&key);
    Ok(generation)
}

/// Stops a running or paused rollout; the canary's weight goes to 0.
pub fn abort(shared: &Control, route: &str, rule: &str) -> Result<u64, ActionError> {
    let mut r = record_of(shared, route, rule)?;
    if r.phase.is_final() {
        return Err(ActionError::Conflict(format!(
            "the rollout is already {}",
            r.phase.as_str()
        )));
    }
    let (_, baselines) = plan_of(shared, route, rule)?;
    r.phase = Phase::Aborted;
    r.reason = "aborted through the control API".to_string();
    let weights = step_weights(&r, &baselines, 0);
    tracing::warn!(%route, %rule, "rollout aborted: canary weight 0");
    reload::set_rollout(&shared.tables, "rollout: aborted", r, Some(weights))
        .map_err(ActionError::Change)
}

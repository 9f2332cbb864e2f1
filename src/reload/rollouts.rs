//! The persisted part of a rollout: its plan as started, the step it is
//! at, its phase and its evidence. Kept in the desired state, so every
//! change goes through the one change path and `--state-dir` restores it.

use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;
use crate::config::rollout::RolloutConfig;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Judged and stepped by the proxy.
    Running,
    /// Held by a person (or by a fail with `on_fail: pause`).
    Paused,
    /// Failed; the canary is at weight 0.
    RolledBack,
    /// Passed every step; the canary has 100%.
    Promoted,
    /// Passed every step; held at the last step's weights (`on_pass: hold`).
    Passed,
    /// Stopped by a person; the canary is at weight 0.
    Aborted,
    /// Failed under an external controller (`drive: external`): the
    /// verdict stays `fail` and the weights are the controller's to move.
    Failed,
    /// The external controller moved the canary to 0% or 100%.
    Ended,
}

impl Phase {
    /// `running`, `paused`, ... as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::RolledBack => "rolled_back",
            Phase::Promoted => "promoted",
            Phase::Passed => "passed",
            Phase::Aborted => "aborted",
            Phase::Failed => "failed",
            Phase::Ended => "ended",
        }
    }

    /// Whether the rollout is over (a new start may begin another).
    pub fn is_final(self) -> bool {
        !matches!(self, Phase::Running | Phase::Paused)
    }
}

/// One rule's rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Route name.
    pub route: String,
    /// Rule name.
    pub rule: String,
    /// The plan as it was when the rollout started.
    pub plan: RolloutConfig,
    /// Index into `plan.steps`.
    pub step: usize,
    /// Where it is.
    pub phase: Phase,
    /// The evidence of the finished steps.
    pub analysis: Analysis,
    /// Why it is in its phase (the last verdict's reason, or who paused it).
    pub reason: String,
}

impl RolloutRecord {
    /// The key of the record in the desired state: `route/rule`.
    pub fn key(route: &str, rule: &str) -> String {
        format!("{route}/{rule}")
    }
}

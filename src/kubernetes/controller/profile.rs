//! Where a controller round's time goes, phase by phase: logged at debug
//! level, and kept for the scale benchmark when it asks
//! ([`super::ControllerOptions::profile`]).

use std::sync::Mutex;
use std::time::Duration;

use crate::carry::lock;
use crate::clock;

/// Which path a round took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundKind {
    /// Everything rebuilt and compiled.
    Full,
    /// Only the groups of Services whose EndpointSlices changed.
    Endpoints,
}

/// One round: each phase's duration, in order.
#[derive(Debug, Clone)]
pub struct Round {
    /// Which path.
    pub kind: RoundKind,
    /// `(phase, time)`; a phase run twice (a refused HTTPRoute) adds up.
    pub phases: Vec<(&'static str, Duration)>,
    /// Whether a new table was published.
    pub published: bool,
}

impl Round {
    /// All phases together.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

/// The rounds of a controller, for the benchmark to print.
#[derive(Debug, Default)]
pub struct Profile {
    rounds: Mutex<Vec<Round>>,
}

impl Profile {
    /// Every round so far.
    pub fn rounds(&self) -> Vec<Round> {
        lock(&self.rounds).clone()
    }

    fn push(&self, round: Round) {
        lock(&self.rounds).push(round);
    }
}

/// Times the phases of one round.
#[derive(Debug)]
pub(super) struct Stopwatch {
    round: Round,
    lap_start: Duration,
}

impl Stopwatch {
    pub fn start(kind: RoundKind) -> Self {
        Stopwatch {
            round: Round {
                kind,
                phases: Vec::new(),
                published: false,
            },
            lap_start: clock::uptime(),
        }
    }

    /// Ends phase `name` (begun at the last lap).
    pub fn lap(&mut self, name: &'static str) {
        let now = clock::uptime();
        let took = now.saturating_sub(self.lap_start);
        self.lap_start = now;
        match self.round.phases.iter_mut().find(|(n, _)| *n == name) {
            Some((_, d)) => *d += took,
            None => self.round.phases.push((name, took)),
        }
    }

    /// Restarts the lap without counting the time since (a wait).
    pub fn skip(&mut self) {
        self.lap_start = clock::uptime();
    }

    pub fn published(&mut self) {
        self.round.published = true;
    }

    /// Logs the round and hands it to `profile`.
    pub fn finish(self, profile: Option<&Profile>) {
        let r = self.round;
        tracing::debug!(kind = ?r.kind, published = r.published, phases = ?r.phases, "kubernetes: round");
        if let Some(p) = profile {
            p.push(r);
        }
    }
}

//! Request mirroring's counters and in-flight bound, per (route, mirror
//! group): `cutover_mirror_requests_total{route,group,outcome}`. Kept apart
//! from the primary's series so a copy never shows in them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// How one mirrored copy ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// The mirror answered (any status; the answer is discarded).
    Answered,
    /// No connection, or the connection failed before an answer.
    Failed,
    /// No answer within the mirror's `timeout`.
    Timeout,
    /// Not copied: the body was larger than the mirror's `max_body`.
    BodyTooLarge,
    /// Not copied: `max_in_flight` copies were already on their way.
    Dropped,
    /// Not copied: the mirror group had no available endpoint.
    NoEndpoint,
}

impl MirrorOutcome {
    /// Every outcome, in exposition order.
    pub const ALL: [MirrorOutcome; 6] = [
        MirrorOutcome::Answered,
        MirrorOutcome::Failed,
        MirrorOutcome::Timeout,
        MirrorOutcome::BodyTooLarge,
        MirrorOutcome::Dropped,
        MirrorOutcome::NoEndpoint,
    ];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            MirrorOutcome::Answered => "answered",
            MirrorOutcome::Failed => "failed",
            MirrorOutcome::Timeout => "timeout",
            MirrorOutcome::BodyTooLarge => "body_too_large",
            MirrorOutcome::Dropped => "dropped",
            MirrorOutcome::NoEndpoint => "no_endpoint",
        }
    }
}

/// The copies of one (route, mirror group): outcome counters and the number
/// in flight. Carried across reloads by name, so a reload neither resets
/// the counters nor lets a second batch of copies past the bound.
#[derive(Debug, Default)]
pub struct MirrorSeries {
    outcomes: [AtomicU64; MirrorOutcome::ALL.len()],
    in_flight: AtomicUsize,
}

impl MirrorSeries {
    /// Counts one copy's outcome.
    pub fn count(&self, outcome: MirrorOutcome) {
        let i = MirrorOutcome::ALL
            .iter()
            .position(|&o| o == outcome)
            .unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts per [`MirrorOutcome::ALL`].
    pub fn values(&self) -> [u64; MirrorOutcome::ALL.len()] {
        self.outcomes.each_ref().map(|a| a.load(Ordering::Relaxed))
    }

    /// A place for one more copy in flight, if fewer than `max` are; the
    /// place is given back when the returned guard drops.
    pub fn try_start(self: &Arc<Self>, max: usize) -> Option<MirrorInFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(MirrorInFlight(Arc::clone(self)))
    }
}

/// One copy in flight; dropping it frees its place.
#[derive(Debug)]
pub struct MirrorInFlight(Arc<MirrorSeries>);

impl MirrorInFlight {
    /// Counts the copy's outcome on its series.
    pub fn finish(self, outcome: MirrorOutcome) {
        self.0.count(outcome);
    }
}

impl Drop for MirrorInFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_places_come_back() {
        let s = Arc::new(MirrorSeries::default());
        let a = s.try_start(2).unwrap();
        let b = s.try_start(2).unwrap();
        assert!(s.try_start(2).is_none());
        a.finish(MirrorOutcome::Answered);
        let c = s.try_start(2).unwrap();
        drop((b, c));
        assert!(s.try_start(0).is_none());
        s.count(MirrorOutcome::Dropped);
        assert_eq!(s.values(), [1, 0, 0, 0, 1, 0]);
    }
}

//! A compiled fault and the roll that decides, per request, whether it
//! applies: pure, with the RNG passed in; the proxy sleeps or answers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use rand::Rng;

/// Fractions are kept in millionths.
pub const PER_MILLION: u32 = 1_000_000;

/// A rule's or backend's fault.
#[derive(Debug)]
pub struct Fault {
    abort: Option<(StatusCode, u32)>,
    delay: Option<(Duration, u32)>,
    header: Option<HeaderName>,
    max_active: u32,
    active: Arc<AtomicU32>,
}

/// What to do to one request; holding it counts against `max_active`.
#[derive(Debug)]
pub struct Injected {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer this status instead of forwarding.
    pub abort: Option<StatusCode>,
    active: Arc<AtomicU32>,
}

impl Drop for Injected {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Fault {
    /// A fault from validated parts (fractions in millionths).
    pub fn new(
        abort: Option<(StatusCode, u32)>,
        delay: Option<(Duration, u32)>,
        header: Option<HeaderName>,
        max_active: u32,
    ) -> Fault {
        Fault {
            abort,
            delay,
            header,
            max_active,
            active: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Whether this request gets the fault, and which part of it.
    pub fn roll<R: Rng>(&self, headers: &HeaderMap, rng: &mut R) -> Option<Injected> {
        if self
            .header
            .as_ref()
            .is_some_and(|h| !headers.contains_key(h))
        {
            return None;
        }
        let mut hit = |share: u32| rng.random_range(0..PER_MILLION) < share;
        let delay = self.delay.filter(|&(_, share)| hit(share)).map(|(d, _)| d);
        let abort = self.abort.filter(|&(_, share)| hit(share)).map(|(s, _)| s);
        if delay.is_none() && abort.is_none() {
            return None;
        }
        let before = self.active.fetch_add(1, Ordering::Relaxed);
        let injected = Injected {
            delay,
            abort,
            active: Arc::clone(&self.active),
        };
        // Over the cap: dropping `injected` gives the slot back.
        (before < self.max_active).then_some(injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fractions_triggers_and_the_cap_hold() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let f = Fault::new(
            Some((StatusCode::SERVICE_UNAVAILABLE, 250_000)),
            None,
            None,
            1_000,
        );
        let hits = (0..10_000)
            .filter(|_| f.roll(&HeaderMap::new(), &mut rng).is_some())
            .count();
        assert!((2_200..2_800).contains(&hits), "{hits}");

        let gated = Fault::new(
            Some((StatusCode::IM_A_TEAPOT, PER_MILLION)),
            None,
            Some(HeaderName::from_static("x-fault")),
            1,
        );
        assert!(gated.roll(&HeaderMap::new(), &mut rng).is_none());
        let mut h = HeaderMap::new();
        h.insert("x-fault", "1".parse().unwrap());
        let held = gated.roll(&h, &mut rng);
        assert!(held.is_some());
        assert!(gated.roll(&h, &mut rng).is_none(), "max_active 1 is taken");
        drop(held);
        assert!(gated.roll(&h, &mut rng).is_some(), "the slot came back");
    }
}

//! A rule's request mirrors (Gateway API `RequestMirror`): which share of
//! the requests each copies and the bounds a copy is held to. The decision
//! is pure (the rng is passed in); `proxy::mirror` sends the copies.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::metrics::mirror::MirrorSeries;

/// One mirror of a rule.
#[derive(Debug)]
pub struct Mirror {
    /// Index of the mirror group in the table's groups.
    pub group: u32,
    /// Copies `numerator` of every `denominator` requests (at random).
    pub numerator: u32,
    /// At least 1.
    pub denominator: u32,
    /// Largest body copied.
    pub max_body: u64,
    /// Copies in flight at once for this (route, group).
    pub max_in_flight: usize,
    /// Longest wait for the mirror's answer.
    pub timeout: Duration,
    /// Outcome counters and the in-flight count, kept by name.
    pub metrics: Arc<MirrorSeries>,
}

impl Mirror {
    /// Whether this request is copied: true for `numerator / denominator`
    /// of the draws, exactly 0 and 1 at the ends.
    pub fn samples<R: Rng>(&self, rng: &mut R) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && rng.random_range(0..self.denominator) < self.numerator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mirror(numerator: u32, denominator: u32) -> Mirror {
        Mirror {
            group: 0,
            numerator,
            denominator,
            max_body: 0,
            max_in_flight: 1,
            timeout: Duration::from_secs(1),
            metrics: Arc::default(),
        }
    }

    /// Over 100,000 draws the share is within 4 standard deviations of
    /// `numerator / denominator`; the ends are exact.
    #[test]
    fn the_share_follows_the_fraction() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for (num, den) in [(1, 3), (3, 10), (1, 1000), (999, 1000)] {
            let m = mirror(num, den);
            let n = 100_000;
            let got = (0..n).filter(|_| m.samples(&mut rng)).count() as f64;
            let p = f64::from(num) / f64::from(den);
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((got - n as f64 * p).abs() <= 4.0 * sd, "{num}/{den}: {got}");
        }
        assert!((0..1000).all(|_| mirror(5, 5).samples(&mut rng)));
        assert!((0..1000).all(|_| !mirror(0, 5).samples(&mut rng)));
    }
}

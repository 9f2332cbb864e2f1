//! Anytime-valid confidence sequences for a rate (the beta-binomial
//! conjugate mixture of Howard et al., "Time-uniform, nonparametric,
//! nonasymptotic confidence sequences", 2021) and for the difference of two
//! rates, which is what a step needs before it may pass.

use super::special::ln_beta;

/// The prior of the mixture: Jeffreys, Beta(½, ½), which keeps the bounds
/// tight at the low rates releases care about (0.1%–5%).
const PRIOR: (f64, f64) = (0.5, 0.5);

/// A closed interval of rates (or of rate differences).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// ln M_t(p): the mixture martingale of `bad` events in `total` trials
/// against a fixed rate `p`. Counts are real so that projections
/// ("if the rates stay as they are") can use expected counts.
fn ln_mixture(p: f64, bad: f64, total: f64) -> f64 {
    let good = total - bad;
    let (a, b) = PRIOR;
    ln_beta(a + bad, b + good) - ln_beta(a, b) - bad * p.ln() - good * (1.0 - p).ln()
}

/// The rates not yet rejected at level `alpha` after `bad` of `total`:
/// {p : M_t(p) < 1/alpha}, uniformly over every t (so it may be looked at
/// after every request). An interval, since ln M_t is convex in p.
pub fn rate(bad: f64, total: f64, alpha: f64) -> Interval {
    if total <= 0.0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let threshold = (1.0 / alpha).ln();
    let centre = (bad / total).clamp(0.0, 1.0);
    let inside = |p: f64| ln_mixture(p, bad, total) < threshold;
    Interval {
        low: edge(centre, 0.0, &inside),
        high: edge(centre, 1.0, &inside),
    }
}

/// The boundary between `centre` (inside, or at the edge of the range) and
/// `outer`, by bisection: 60 halvings resolve it to well under 1e-12.
fn edge(centre: f64, outer: f64, inside: &impl Fn(f64) -> bool) -> f64 {
    // The end of the range itself, when nothing rejects it.
    let probe = if outer > centre { 1.0 - 1e-15 } else { 1e-300 };
    if inside(probe) {
        return outer;
    }
    let (mut good, mut bad) = (centre, probe);
    for _ in 0..60 {
        let mid = 0.5 * (good + bad);
        if inside(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

/// Canary rate minus baseline rate, at joint level `alpha` (each rate's
/// sequence at alpha / 2).
pub fn difference(canary: (f64, f64), baseline: (f64, f64), alpha: f64) -> Interval {
    let c = rate(canary.0, canary.1, alpha / 2.0);
    let b = rate(baseline.0, baseline.1, alpha / 2.0);
    Interval {
        low: c.low - b.high,
        high: c.high - b.low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_observed_rate_and_narrows_with_data() {
        let small = rate(5.0, 1_000.0, 0.01);
        let large = rate(50.0, 10_000.0, 0.01);
        for i in [small, large] {
            assert!(i.low < 0.005 && 0.005 < i.high, "{i:?}");
        }
        assert!(large.high - large.low < (small.high - small.low) / 2.0);
    }

    #[test]
    fn no_data_is_the_whole_range_and_zero_events_start_at_zero() {
        assert_eq!(
            rate(0.0, 0.0, 0.01),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
        let none = rate(0.0, 2_000.0, 0.005);
        assert!(none.low < 1e-12, "{none:?}");
        // About (ln(1/alpha) + ½ ln(πn)) / n for zero events in n trials.
        assert!(none.high > 0.003 && none.high < 0.006, "{none:?}");
    }

    #[test]
    fn the_sequence_covers_the_true_rate_at_every_look() {
        // 200 seeded streams of 3,000 Bernoulli(1%) trials, each looked at
        // after every trial: the true rate may leave the 99% sequence in at
        // most about 1% of streams (Ville).
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut escaped = 0;
        for _ in 0..200 {
            let mut bad = 0.0;
            for t in 1..=3_000 {
                if rng.random::<f64>() < 0.01 {
                    bad += 1.0;
                }
                // p is outside the sequence exactly when its mixture
                // crosses 1/alpha; no bisection needed to check coverage.
                if ln_mixture(0.01, bad, f64::from(t)) >= (1.0f64 / 0.01).ln() {
                    escaped += 1;
                    break;
                }
            }
        }
        assert!(escaped <= 6, "{escaped} of 200 streams escaped");
    }

    #[test]
    fn the_difference_is_centred_on_the_observed_difference() {
        let d = difference((30.0, 1_000.0), (50.0, 10_000.0), 0.01);
        assert!(d.low < 0.025 && 0.025 < d.high, "{d:?}");
        assert!(
            d.low > 0.0,
            "a 3% vs 0.5% gap is clear at these counts: {d:?}"
        );
    }
}

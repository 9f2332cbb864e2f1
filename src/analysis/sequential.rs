//! The two-arm anytime-valid count test (Lindon & Malek, "Anytime-valid
//! inference for multinomial count data", NeurIPS 2022), one-sided.
//!
//! If the canary is no worse than the baseline, each bad event (an error, or
//! a slow request) comes from the canary with probability at most `share`,
//! the canary's share of the requests, whatever the total rate does. The
//! likelihood ratio of "probability p" against "probability share", mixed
//! over a Beta prior on p restricted to p > share (only "canary worse" is
//! evidence), is a non-negative supermartingale under that null: by Ville's
//! inequality it reaches 1/alpha with probability at most alpha, however
//! often it is looked at.

use super::special::{ln_beta, ln_beta_upper_tail};

/// The prior's concentration: Beta(k·share, k·(1 − share)), centred on the
/// null. Small k spreads the prior towards large effects, which is what a
/// release gate must catch fast (a 10× error rate within a few hundred
/// canary requests); chosen by the seeded detection tests in `tests.rs`.
pub const DEFAULT_CONCENTRATION: f64 = 2.0;

/// Shares closer to 0 or 1 than this carry no evidence: one arm has
/// (almost) no traffic to compare.
const MIN_SHARE: f64 = 1e-4;

/// ln of the mixture Bayes factor for one step: `canary` and `baseline` bad
/// events counted while the canary had `share` of the requests. 0 (a factor
/// of 1) when there is nothing to compare.
pub fn ln_bayes_factor(share: f64, canary: u64, baseline: u64, concentration: f64) -> f64 {
    if !(MIN_SHARE..=1.0 - MIN_SHARE).contains(&share) || canary + baseline == 0 {
        return 0.0;
    }
    let (a, b) = (concentration * share, concentration * (1.0 - share));
    let (xc, xb) = (canary as f64, baseline as f64);
    let ln_posterior_mass = ln_beta(a + xc, b + xb) + ln_beta_upper_tail(share, a + xc, b + xb);
    let ln_prior_mass = ln_beta(a, b) + ln_beta_upper_tail(share, a, b);
    let ln_null = xc * share.ln() + xb * (1.0 - share).ln();
    ln_posterior_mass - ln_prior_mass - ln_null
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_events_or_no_contrast_is_no_evidence() {
        assert_eq!(ln_bayes_factor(0.05, 0, 0, 2.0), 0.0);
        assert_eq!(ln_bayes_factor(0.0, 5, 5, 2.0), 0.0);
        assert_eq!(ln_bayes_factor(1.0, 5, 5, 2.0), 0.0);
    }

    #[test]
    fn events_at_the_null_share_are_not_evidence_against_the_canary() {
        // 5 of 100 bad events from a canary with 5% of the traffic.
        assert!(ln_bayes_factor(0.05, 5, 95, 2.0) < 0.0);
        // The canary better than the baseline: evidence for it.
        assert!(ln_bayes_factor(0.05, 0, 100, 2.0) < ln_bayes_factor(0.05, 5, 95, 2.0));
    }

    #[test]
    fn a_canary_that_only_fails_is_caught_in_a_few_events() {
        // 1% weight, every canary request fails, the baseline never does.
        let threshold = (1.0f64 / 0.005).ln();
        let needed = (1..20u64)
            .find(|&n| ln_bayes_factor(0.01, n, 0, DEFAULT_CONCENTRATION) >= threshold)
            .unwrap_or(u64::MAX);
        assert!(needed <= 3, "needed {needed} canary errors");
    }

    #[test]
    fn the_factor_is_a_martingale_under_the_null() {
        // E[BF_{n+1} | BF_n] = BF_n when events come from the canary with
        // probability `share`: checked exactly from a few states.
        for (share, xc, xb) in [(0.05, 0, 0), (0.05, 3, 10), (0.3, 7, 2), (0.01, 0, 40)] {
            let now = ln_bayes_factor(share, xc, xb, 2.0).exp();
            let next = share * ln_bayes_factor(share, xc + 1, xb, 2.0).exp()
                + (1.0 - share) * ln_bayes_factor(share, xc, xb + 1, 2.0).exp();
            assert!(
                (next - now).abs() < 1e-9 * now.max(1.0),
                "{share} {xc} {xb}: {now} -> {next}"
            );
        }
    }
}

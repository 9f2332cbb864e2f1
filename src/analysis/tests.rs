//! Seeded simulations of whole rollouts through the pure engine: the
//! false-fail bound for healthy canaries and the detection targets for bad
//! ones, each over hundreds or thousands of runs.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// The steps of the example rollout that have a baseline to compare
/// with (100% has none, so it carries no evidence).
const STEPS: [f64; 4] = [0.01, 0.05, 0.25, 0.50];

/// One simulated request: which arm, and whether it was an error / slow.
struct Request {
    canary: bool,
    error: bool,
    slow: bool,
}

/// A service whose arms fail and are slow at fixed rates.
struct Service {
    baseline_errors: f64,
    canary_errors: f64,
    baseline_slow: f64,
    canary_slow: f64,
}

impl Service {
    fn healthy(errors: f64) -> Service {
        Service {
            baseline_errors: errors,
            canary_errors: errors,
            baseline_slow: 0.01,
            canary_slow: 0.01,
        }
    }

    fn request(&self, share: f64, rng: &mut SmallRng) -> Request {
        let canary = rng.random::<f64>() < share;
        let (e, s) = if canary {
            (self.canary_errors, self.canary_slow)
        } else {
            (self.baseline_errors, self.baseline_slow)
        };
        Request {
            canary,
            error: rng.random::<f64>() < e,
            slow: rng.random::<f64>() < s,
        }
    }
}

/// A step's counts for both metrics.
#[derive(Default)]
struct Step {
    errors: Counts,
    slow: Counts,
}

impl Step {
    fn add(&mut self, r: &Request) {
        let (e, s) = if r.canary {
            (&mut self.errors.canary, &mut self.slow.canary)
        } else {
            (&mut self.errors.baseline, &mut self.slow.baseline)
        };
        e.requests += 1;
        s.requests += 1;
        e.bad += u64::from(r.error);
        s.bad += u64::from(r.slow);
    }
}

/// Runs a rollout over `STEPS`, `per_step` requests each, looking after
/// every bad event (the most often a fail could be read); returns the canary
/// requests served before the first fail, if any.
fn rollout(service: &Service, per_step: u64, seed: u64) -> Option<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut analysis = Analysis::new(Settings::default(), true);
    let mut canary_requests = 0;
    for share in STEPS {
        let mut step = Step::default();
        for _ in 0..per_step {
            let r = service.request(share, &mut rng);
            canary_requests += u64::from(r.canary);
            step.add(&r);
            if (r.error || r.slow) && analysis.fails(share, &step.errors, &step.slow) {
                return Some(canary_requests);
            }
        }
        analysis.finish_step(share, &step.errors, &step.slow);
    }
    None
}

/// Canary requests until a fail at a fixed share (None: not within `limit`
/// canary requests), watching after every bad event.
fn requests_to_fail(service: &Service, share: f64, limit: u64, seed: u64) -> Option<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut analysis = Analysis::new(Settings::default(), true);
    let mut step = Step::default();
    while step.errors.canary.requests < limit {
        let r = service.request(share, &mut rng);
        step.add(&r);
        if (r.error || r.slow) && analysis.fails(share, &step.errors, &step.slow) {
            return Some(step.errors.canary.requests);
        }
    }
    None
}

/// The `q`-quantile of the runs, a run that never failed counting as
/// `u64::MAX`.
fn quantile(runs: &[Option<u64>], q: f64) -> u64 {
    let mut v: Vec<u64> = runs.iter().map(|r| r.unwrap_or(u64::MAX)).collect();
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

#[test]
fn healthy_canaries_are_failed_at_most_alpha_of_the_time() {
    // 1,000 whole rollouts of a canary exactly as good as its baseline
    // (0.5% errors, 1% slow), 2,500 requests per step, looked at after every
    // bad event: at most alpha = 1% may fail.
    let service = Service::healthy(0.005);
    let failed = (0..1_000)
        .filter(|&seed| rollout(&service, 2_500, seed).is_some())
        .count();
    eprintln!("healthy rollouts failed: {failed} of 1000");
    assert!(failed <= 10, "{failed} of 1000 healthy rollouts failed");
}

#[test]
fn a_canary_with_ten_times_the_errors_fails_within_a_few_hundred_requests() {
    // 5% weight, baseline 0.5% errors, canary 5%.
    let service = Service {
        canary_errors: 0.05,
        ..Service::healthy(0.005)
    };
    let runs: Vec<Option<u64>> = (0..400)
        .map(|seed| requests_to_fail(&service, 0.05, 5_000, 1_000 + seed))
        .collect();
    let (median, p90) = (quantile(&runs, 0.5), quantile(&runs, 0.9));
    eprintln!("10x errors at 5%: canary requests to fail: median {median}, p90 {p90}");
    assert!(median <= 130, "median {median} canary requests");
    assert!(p90 <= 250, "p90 {p90} canary requests");
}

#[test]
fn a_canary_that_only_fails_is_caught_within_ten_requests() {
    // 1% weight, every canary request a 5xx.
    let service = Service {
        canary_errors: 1.0,
        ..Service::healthy(0.005)
    };
    let runs: Vec<Option<u64>> = (0..200)
        .map(|seed| requests_to_fail(&service, 0.01, 1_000, 5_000 + seed))
        .collect();
    let worst = quantile(&runs, 1.0);
    eprintln!(
        "100% errors at 1%: canary requests to fail: median {}, worst {worst}",
        quantile(&runs, 0.5)
    );
    assert!(worst <= 10, "worst run needed {worst} canary requests");
}

#[test]
fn a_canary_twice_as_slow_fails_within_three_hundred_requests() {
    // Exponential latencies: the baseline's p99 is frozen from a warm-up
    // sample, and every canary response takes twice as long, so about 10%
    // of them exceed it (a harsh case: a tighter distribution gives more).
    let runs: Vec<Option<u64>> = (0..300)
        .map(|seed| {
            let mut rng = SmallRng::seed_from_u64(9_000 + seed);
            let exp = |rng: &mut SmallRng| -(1.0 - rng.random::<f64>()).ln();
            let mut warm: Vec<f64> = (0..2_000).map(|_| exp(&mut rng)).collect();
            warm.sort_by(f64::total_cmp);
            let p99 = warm[1_980];
            let slow_share = |factor: f64| (-p99 / factor).exp();
            let service = Service {
                baseline_slow: slow_share(1.0),
                canary_slow: slow_share(2.0),
                ..Service::healthy(0.005)
            };
            requests_to_fail(&service, 0.05, 5_000, seed)
        })
        .collect();
    let p90 = quantile(&runs, 0.9);
    eprintln!(
        "2x slower at 5%: canary requests to fail: median {}, p90 {p90}",
        quantile(&runs, 0.5)
    );
    assert!(p90 <= 300, "p90 {p90} canary requests");
}

#[test]
fn a_quiet_service_holds_a_healthy_canary_instead_of_failing_it() {
    // 6 requests a minute for 8 hours at 5% weight: about 140 canary
    // requests. Never a fail for lack of data; inconclusive, not pass.
    let service = Service::healthy(0.005);
    for seed in 0..50 {
        let mut rng = SmallRng::seed_from_u64(20_000 + seed);
        let mut analysis = Analysis::new(Settings::default(), true);
        let mut step = Step::default();
        for _ in 0..(6 * 60 * 8) {
            let r = service.request(0.05, &mut rng);
            step.add(&r);
            let failed = (r.error || r.slow) && analysis.fails(0.05, &step.errors, &step.slow);
            assert!(!failed, "seed {seed} failed a healthy quiet canary");
        }
        let report = analysis.judge(0.05, true, &step.errors, &step.slow);
        assert_eq!(report.verdict, Verdict::Inconclusive, "{}", report.reason);
        let needed = report.metrics[0].requests_needed.unwrap_or(0);
        assert!(
            needed > 100,
            "seed {seed}: needs {needed}: {}",
            report.reason
        );
        assert!(
            report.reason.contains("more canary requests"),
            "{}",
            report.reason
        );
    }
}

#[test]
fn a_healthy_canary_passes_once_the_evidence_is_in_and_the_estimate_was_fair() {
    // 25% weight, 0.2% errors both sides (errors only). Over 10 seeds, the estimate of the
    // canary requests still needed, read after 2,500 of them, is in the
    // median within a factor of 2 of what it took to pass.
    let service = Service::healthy(0.002);
    let mut ratios: Vec<f64> = (0..10)
        .map(|seed| {
            let mut rng = SmallRng::seed_from_u64(40 + seed);
            let mut analysis = Analysis::new(Settings::default(), false);
            let mut step = Step::default();
            let mut estimate = None;
            for i in 1..=400_000u64 {
                step.add(&service.request(0.25, &mut rng));
                if i % 10_000 != 0 {
                    continue;
                }
                let report = analysis.judge(0.25, true, &step.errors, &step.slow);
                assert_ne!(report.verdict, Verdict::Fail, "{}", report.reason);
                if i == 10_000 {
                    let needed = report.requests_needed();
                    estimate = needed.map(|n| n + step.errors.canary.requests);
                }
                if report.verdict == Verdict::Pass {
                    assert!(
                        report.reason.starts_with("canary no worse"),
                        "{}",
                        report.reason
                    );
                    let passed = step.errors.canary.requests as f64;
                    return estimate.map_or(f64::INFINITY, |e| e as f64 / passed);
                }
            }
            panic!("seed {seed}: no pass within 400,000 requests");
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    eprintln!("requests-needed estimate / actual, 10 seeds: {ratios:.2?}");
    assert!(
        (0.5..=2.0).contains(&median),
        "estimate / actual: {ratios:?}"
    );
}

#[test]
fn the_hold_keeps_a_precise_step_from_passing_early() {
    let mut analysis = Analysis::new(Settings::default(), false);
    let arm = |requests, bad| Arm { requests, bad };
    let errors = Counts {
        canary: arm(50_000, 50),
        baseline: arm(50_000, 50),
    };
    let held = analysis.judge(0.5, false, &errors, &Counts::default());
    assert_eq!(held.verdict, Verdict::Inconclusive, "{}", held.reason);
    assert!(held.reason.contains("minimum time"), "{}", held.reason);
    let done = analysis.judge(0.5, true, &errors, &Counts::default());
    assert_eq!(done.verdict, Verdict::Pass, "{}", done.reason);
    assert_eq!(done.requests_needed(), Some(0));
}

#[test]
fn evidence_carries_across_steps() {
    // A canary a little worse at each step: no single step fails, the
    // product of the steps does.
    let k = Settings::default();
    let bad = Counts {
        canary: Arm {
            requests: 1_000,
            bad: 8,
        },
        baseline: Arm {
            requests: 19_000,
            bad: 60,
        },
    };
    let mut one = Analysis::new(k, false);
    assert!(!one.fails(0.05, &bad, &Counts::default()));
    let mut carried = Analysis::new(k, false);
    let failed_by = (1..=5).find(|_| {
        let f = carried.fails(0.05, &bad, &Counts::default());
        carried.finish_step(0.05, &bad, &Counts::default());
        f
    });
    assert!(
        failed_by.is_some_and(|s| s > 1),
        "failed at step {failed_by:?}"
    );
    let report = carried.judge(0.05, true, &Counts::default(), &Counts::default());
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(report.metrics[0].p_value <= 0.01, "{:?}", report.metrics[0]);
}

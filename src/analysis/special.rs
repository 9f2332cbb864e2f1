//! The special functions the tests need, in log space so that thousands of
//! events neither overflow nor underflow: ln Γ, ln B and the log of the upper
//! tail of the regularized incomplete beta function.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln P(X > x) for X ~ Beta(a, b): the log of 1 − I_x(a, b). The mixture
/// tests integrate their prior over p > x only, and that tail can be far
/// smaller than the smallest f64 when the counts disagree with it.
pub fn ln_beta_upper_tail(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return f64::NEG_INFINITY;
    }
    // 1 − I_x(a, b) = I_{1−x}(b, a). The continued fraction converges fast
    // for I_y(p, q) when y < (p + 1) / (p + q + 2); use it on whichever side
    // that holds, keeping the small side in log form.
    let y = 1.0 - x;
    if y < (b + 1.0) / (a + b + 2.0) {
        ln_beta_inc_cf(y, b, a)
    } else {
        let lower = ln_beta_inc_cf(x, a, b).exp();
        (-lower).ln_1p()
    }
}

/// ln I_x(a, b) by the continued fraction (modified Lentz), valid where
/// x < (a + 1) / (a + b + 2).
fn ln_beta_inc_cf(x: f64, a: f64, b: f64) -> f64 {
    const EPS: f64 = 1e-14;
    const MAX_TERMS: usize = 10_000;
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b) - a.ln();
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..MAX_TERMS {
        let m = m as f64;
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((qam + m2) * (a + m2));
        (c, d) = lentz_step(even, c, d);
        h *= d * c;
        let odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        (c, d) = lentz_step(odd, c, d);
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    ln_front + h.ln()
}

/// One term of the modified Lentz recurrence: the next (C, 1/D).
fn lentz_step(term: f64, c: f64, d: f64) -> (f64, f64) {
    (nonzero(1.0 + term / c), 1.0 / nonzero(1.0 + term * d))
}

/// Keeps Lentz's denominators away from zero.
fn nonzero(x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    if x.abs() < TINY {
        TINY
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        let mut fact = 1.0f64;
        for n in 1..30u32 {
            assert!(close(ln_gamma(f64::from(n)), fact.ln(), 1e-12), "n={n}");
            fact *= f64::from(n);
        }
        let sqrt_pi = std::f64::consts::PI.sqrt();
        assert!(close(ln_gamma(0.5), sqrt_pi.ln(), 1e-12));
        assert!(close(ln_gamma(1.5), (sqrt_pi / 2.0).ln(), 1e-12));
        // Small arguments go through the reflection: Γ(0.01) ≈ 99.4326.
        assert!(close(ln_gamma(0.01), 99.432_585_119_150_6f64.ln(), 1e-10));
    }

    #[test]
    fn upper_tail_matches_closed_forms() {
        // Beta(1, 1) is uniform: P(X > x) = 1 − x.
        for x in [0.01, 0.3, 0.5, 0.9, 0.999] {
            assert!(close(
                ln_beta_upper_tail(x, 1.0, 1.0),
                (1.0 - x).ln(),
                1e-10
            ));
        }
        // Beta(a, 1): P(X > x) = 1 − x^a; Beta(1, b): (1 − x)^b.
        for (x, a) in [(0.2, 3.0), (0.7, 0.5), (0.05, 20.0)] {
            let want = (1.0 - f64::powf(x, a)).ln();
            assert!(
                close(ln_beta_upper_tail(x, a, 1.0), want, 1e-9),
                "x={x} a={a}"
            );
        }
        for (x, b) in [(0.2f64, 3.0), (0.7, 0.5), (0.05, 2000.0)] {
            let want = b * (1.0 - x).ln();
            assert!(
                close(ln_beta_upper_tail(x, 1.0, b), want, 1e-9),
                "x={x} b={b}"
            );
        }
    }

    #[test]
    fn upper_tail_stays_finite_far_beyond_f64() {
        // (0.95)^50000 is about e^-2565: far below f64's range, still exact in logs.
        let v = ln_beta_upper_tail(0.05, 1.0, 50_000.0);
        assert!(close(v, 50_000.0 * 0.95f64.ln(), 1e-9), "{v}");
        assert_eq!(ln_beta_upper_tail(0.0, 2.0, 3.0), 0.0);
        assert_eq!(ln_beta_upper_tail(1.0, 2.0, 3.0), f64::NEG_INFINITY);
    }
}

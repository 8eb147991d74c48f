//! Central finite differences in f64: the ground truth every analytic gradient is tested against.

/// Central-difference gradient of `f` at `x` with step `h` (cost: 2 * len evaluations).
pub fn numeric_gradient(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let plus = f(&x);
            x[i] = orig - h;
            let minus = f(&x);
            x[i] = orig;
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

/// Max elementwise error of `got` against `want`, relative to `want`'s largest magnitude
/// (floored at `floor`, so tensors whose true gradient is zero are judged in absolute terms).
pub fn max_relative_error(got: &[f64], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "gradient lengths differ");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(floor);
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Deterministic pseudo-random test values in [-1, 1] (no RNG dependency in kernels' tests).
pub fn test_values(n: usize, salt: u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 29;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Asserts that the analytic gradient of `f` matches finite differences to `tol`.
pub fn assert_gradient(
    name: &str,
    f: &mut dyn FnMut(&[f64]) -> f64,
    x: &[f64],
    analytic: &[f64],
    tol: f64,
) {
    let numeric = numeric_gradient(f, x, 1e-6);
    let err = max_relative_error(analytic, &numeric, 1e-8);
    assert!(
        err < tol,
        "{name}: analytic gradient differs from finite differences by {err:e} (tolerance {tol:e})"
    );
}

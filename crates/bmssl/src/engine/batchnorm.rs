//! Batch normalisation with the batch's own statistics (training mode, as in MAML-style learners:
//! no running averages, so nothing leaks across tasks or episodes), learnable scale and shift.
//!
//! `y = gamma * (x - mean) / sqrt(var + eps) + beta`, per channel, `var` biased (divides by m),
//! exactly as `torch.nn.functional.batch_norm(training=True)`.

use super::reduce::{row_center_and_square_sums, row_sums, row_sums_and_dots};
use super::scalar::Scalar;

/// PyTorch's default epsilon.
pub const EPS: f64 = 1e-5;

/// What the backward pass needs.
pub struct BnCache<S> {
    /// Normalised input `[C, m]`.
    pub xhat: Vec<S>,
    /// `1 / sqrt(var + eps)` per channel.
    pub inv_std: Vec<S>,
}

/// Normalises `x [C, m]` in place (`x <- (x - mean) / sqrt(var + eps)` per channel) and returns
/// the per-channel `1 / sqrt(var + eps)`. The affine part is left to the caller, so that the
/// learner can fuse it with ReLU and pooling instead of writing one more full-size tensor.
pub fn normalize<S: Scalar>(x: &mut [S], channels: usize) -> Vec<S> {
    let m = x.len() / channels;
    let inv_m = 1.0 / m as f64;
    let means: Vec<S> = row_sums(x, m).into_iter().map(|s| s.scale(inv_m)).collect();
    let squares = row_center_and_square_sums(x, m, &means);
    x.chunks_mut(m)
        .zip(squares)
        .map(|(row, sq)| {
            let var = sq.scale(inv_m);
            let is = S::from_f64(1.0) / (var + S::from_f64(EPS)).sqrt();
            for v in row.iter_mut() {
                *v *= is;
            }
            is
        })
        .collect()
}

/// Forward over `x [C, m]` (m = N*H*W per channel, contiguous).
pub fn forward<S: Scalar>(
    x: &[S],
    gamma: &[S],
    beta: &[S],
    channels: usize,
) -> (Vec<S>, BnCache<S>) {
    let mut xhat = x.to_vec();
    let inv_std = normalize(&mut xhat, channels);
    let m = x.len() / channels;
    let y = xhat
        .iter()
        .enumerate()
        .map(|(i, &h)| gamma[i / m] * h + beta[i / m])
        .collect();
    (y, BnCache { xhat, inv_std })
}

/// Backward in place: `dy` becomes
/// `dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))`; returns
/// `(dgamma, dbeta) = (sum(dy * xhat), sum(dy))` per channel.
pub fn backward_in_place<S: Scalar>(
    dy: &mut [S],
    xhat: &[S],
    inv_std: &[S],
    gamma: &[S],
) -> (Vec<S>, Vec<S>) {
    let channels = gamma.len();
    let m = dy.len() / channels;
    let inv_m = 1.0 / m as f64;
    let (dbeta, dgamma) = row_sums_and_dots(dy, xhat, m);
    for (c, (dyr, xh)) in dy.chunks_mut(m).zip(xhat.chunks(m)).enumerate() {
        let (sum_dy, sum_dy_xh) = (dbeta[c], dgamma[c]);
        let k = gamma[c] * inv_std[c];
        let (mean_dy, mean_dy_xh) = (sum_dy.scale(inv_m), sum_dy_xh.scale(inv_m));
        for (d, &h) in dyr.iter_mut().zip(xh) {
            *d = k * (*d - mean_dy - h * mean_dy_xh);
        }
    }
    (dgamma, dbeta)
}

/// Backward: returns `(dx, dgamma, dbeta)`.
pub fn backward<S: Scalar>(dy: &[S], cache: &BnCache<S>, gamma: &[S]) -> (Vec<S>, Vec<S>, Vec<S>) {
    let mut dx = dy.to_vec();
    let (dg, db) = backward_in_place(&mut dx, &cache.xhat, &cache.inv_std, gamma);
    (dx, dg, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

    #[test]
    fn output_has_zero_mean_and_unit_variance_before_the_affine_part() {
        let x = test_values(2 * 10, 5);
        let (y, _) = forward(&x, &[1.0, 1.0], &[0.0, 0.0], 2);
        for row in y.chunks(10) {
            let mean: f64 = row.iter().sum::<f64>() / 10.0;
            let var: f64 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 10.0;
            assert!(mean.abs() < 1e-12);
            assert!((var - 1.0).abs() < 1e-3); // eps shifts it slightly
        }
    }

    #[test]
    fn gradients_match_finite_differences_for_input_scale_and_shift() {
        let (c, m) = (3, 7);
        let x = test_values(c * m, 6);
        let g = test_values(c, 7);
        let b = test_values(c, 8);
        let r = test_values(c * m, 9);
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b * a).sum::<f64>(); // nonlinear in y
        let (y, cache) = forward(&x, &g, &b, c);
        let dy: Vec<f64> = y.iter().zip(&r).map(|(a, b)| 2.0 * a * b).collect();
        let (dx, dg, db) = backward(&dy, &cache, &g);
        assert_gradient(
            "bn input",
            &mut |v| loss(forward(v, &g, &b, c).0),
            &x,
            &dx,
            1e-6,
        );
        assert_gradient(
            "bn gamma",
            &mut |v| loss(forward(&x, v, &b, c).0),
            &g,
            &dg,
            1e-6,
        );
        assert_gradient(
            "bn beta",
            &mut |v| loss(forward(&x, &g, v, c).0),
            &b,
            &db,
            1e-6,
        );
    }
}

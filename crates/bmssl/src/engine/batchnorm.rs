//! Batch normalisation with the batch's own statistics (training mode, as in MAML-style learners:
//! no running averages, so nothing leaks across tasks or episodes), learnable scale and shift.
//!
//! `y = gamma * (x - mean) / sqrt(var + eps) + beta`, per channel, `var` biased (divides by m),
//! exactly as `torch.nn.functional.batch_norm(training=True)`.

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

/// Forward over `x [C, m]` (m = N*H*W per channel, contiguous).
pub fn forward<S: Scalar>(x: &[S], gamma: &[S], beta: &[S], channels: usize) -> (Vec<S>, BnCache<S>) {
    let m = x.len() / channels;
    let inv_m = 1.0 / m as f64;
    let mut y = vec![S::default(); x.len()];
    let mut xhat = vec![S::default(); x.len()];
    let mut inv_std = Vec::with_capacity(channels);
    for c in 0..channels {
        let row = &x[c * m..(c + 1) * m];
        let mean = row.iter().copied().sum::<S>().scale(inv_m);
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<S>().scale(inv_m);
        let is = (var + S::from_f64(EPS)).sqrt().powi_neg1();
        inv_std.push(is);
        let (g, b) = (gamma[c], beta[c]);
        for i in c * m..(c + 1) * m {
            let xh = (x[i] - mean) * is;
            xhat[i] = xh;
            y[i] = g * xh + b;
        }
    }
    (y, BnCache { xhat, inv_std })
}

/// Backward: `dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))`,
/// `dgamma = sum(dy * xhat)`, `dbeta = sum(dy)`.
pub fn backward<S: Scalar>(dy: &[S], cache: &BnCache<S>, gamma: &[S]) -> (Vec<S>, Vec<S>, Vec<S>) {
    let channels = gamma.len();
    let m = dy.len() / channels;
    let inv_m = 1.0 / m as f64;
    let mut dx = vec![S::default(); dy.len()];
    let mut dgamma = Vec::with_capacity(channels);
    let mut dbeta = Vec::with_capacity(channels);
    for c in 0..channels {
        let r = c * m..(c + 1) * m;
        let (dyr, xh) = (&dy[r.clone()], &cache.xhat[r.clone()]);
        let sum_dy: S = dyr.iter().copied().sum();
        let sum_dy_xh: S = dyr.iter().zip(xh).map(|(&a, &b)| a * b).sum();
        dgamma.push(sum_dy_xh);
        dbeta.push(sum_dy);
        let k = gamma[c] * cache.inv_std[c];
        let (mean_dy, mean_dy_xh) = (sum_dy.scale(inv_m), sum_dy_xh.scale(inv_m));
        for (i, (&d, &h)) in r.zip(dyr.iter().zip(xh)) {
            dx[i] = k * (d - mean_dy - h * mean_dy_xh);
        }
    }
    (dx, dgamma, dbeta)
}

/// `1 / x`, spelled as a trait extension so it reads in formulas.
trait Recip: Scalar {
    fn powi_neg1(self) -> Self {
        Self::from_f64(1.0) / self
    }
}
impl<S: Scalar> Recip for S {}

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
        assert_gradient("bn input", &mut |v| loss(forward(v, &g, &b, c).0), &x, &dx, 1e-6);
        assert_gradient("bn gamma", &mut |v| loss(forward(&x, v, &b, c).0), &g, &dg, 1e-6);
        assert_gradient("bn beta", &mut |v| loss(forward(&x, &g, v, c).0), &b, &db, 1e-6);
    }
}

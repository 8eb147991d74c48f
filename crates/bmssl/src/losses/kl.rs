//! KL divergences to a fixed target: on predictive distributions (BMSSL's outer loss, paper
//! eq. 3) and on each view's similarity distribution over the other views (the projection head's
//! target).

use super::ce::{log_softmax, log_sum_exp};
use super::supcon::{normalize_rows, similarity_backward};
use crate::engine::Scalar;

/// Mean KL(target || softmax(logits)) over rows, `target [B, C]` a constant distribution per row
/// (zeros allowed: `0 log 0 = 0`, target clamped at 1e-12 inside the log as the reference does).
/// Returns `(loss, dlogits)` with `dlogits = (softmax * sum(target) - target) / B`.
pub fn kl_to_target<S: Scalar>(target: &[S], logits: &[S], classes: usize) -> (S, Vec<S>) {
    let b = logits.len() / classes;
    let inv_b = 1.0 / b as f64;
    let lsm = log_softmax(logits, classes);
    let mut loss = S::default();
    let mut grad = Vec::with_capacity(logits.len());
    for (t_row, l_row) in target.chunks(classes).zip(lsm.chunks(classes)) {
        let mass: S = t_row.iter().copied().sum();
        for (&t, &l) in t_row.iter().zip(l_row) {
            let log_t = S::from_f64(t.re().max(1e-12).ln());
            loss += t * (log_t - l);
            grad.push((l.exp() * mass - t).scale(inv_b));
        }
    }
    (loss.scale(inv_b), grad)
}

/// Each view's similarity distribution over the other views: row i of the result `[B, B]` is
/// `softmax_{j != i}(<zn_i, zn_j> / tau)` with a zero diagonal, `zn` the unit-length rows of
/// `z [B, D]`. What BMSSL's projection-head target is made of.
pub fn similarity_distributions<S: Scalar>(z: &[S], dim: usize, tau: f64) -> Vec<S> {
    let b = z.len() / dim;
    let (zn, _) = normalize_rows(z, dim);
    let sim = scaled_similarities(&zn, b, dim, tau);
    let mut p = vec![S::default(); b * b];
    for i in 0..b {
        let others = (0..b).filter(move |&j| j != i);
        let lse = log_sum_exp(others.clone().map(|j| sim[i * b + j]));
        for j in others {
            p[i * b + j] = (sim[i * b + j] - lse).exp();
        }
    }
    p
}

/// `<zn_i, zn_j> / tau` for every pair `[B, B]`.
fn scaled_similarities<S: Scalar>(zn: &[S], b: usize, dim: usize, tau: f64) -> Vec<S> {
    let mut sim = vec![S::default(); b * b];
    S::matmul(
        &mut sim,
        false,
        crate::engine::MatRef::rows(zn, b, dim),
        crate::engine::MatRef::rows(zn, b, dim).t(),
    );
    let inv_tau = 1.0 / tau;
    sim.into_iter().map(|v| v.scale(inv_tau)).collect()
}

/// Mean over views of `KL(target_i || q_i)`, `q` the [`similarity_distributions`] of `z [B, D]` and
/// `target [B, B]` a constant one (zero diagonal). Returns `(loss, dz)`.
pub fn similarity_kl<S: Scalar>(target: &[S], z: &[S], dim: usize, tau: f64) -> (S, Vec<S>) {
    let b = z.len() / dim;
    let (zn, norms) = normalize_rows(z, dim);
    let sim = scaled_similarities(&zn, b, dim, tau);
    let inv_b = 1.0 / b.max(1) as f64;
    let mut loss = S::default();
    let mut ds = vec![S::default(); b * b];
    for i in 0..b {
        let others = (0..b).filter(move |&j| j != i);
        let lse = log_sum_exp(others.clone().map(|j| sim[i * b + j]));
        let mass: S = others.clone().map(|j| target[i * b + j]).sum();
        for j in others {
            let t = target[i * b + j];
            let log_q = sim[i * b + j] - lse;
            let log_t = S::from_f64(t.re().max(1e-12).ln());
            loss += t * (log_t - log_q);
            // d/ds_ij of sum_j t_ij (log t_ij - log q_ij) = q_ij sum_j t_ij - t_ij; then / tau.
            ds[i * b + j] = (log_q.exp() * mass - t).scale(inv_b / tau);
        }
    }
    (
        loss.scale(inv_b),
        similarity_backward(&ds, &zn, &norms, dim),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};
    use crate::losses::softmax;

    #[test]
    fn kl_is_zero_at_the_target_and_its_gradient_matches_finite_differences() {
        let logits: Vec<f64> = test_values(12, 32).iter().map(|v| 2.0 * v).collect();
        let target = softmax(&logits, 4);
        let (kl, g) = kl_to_target(&target, &logits, 4);
        assert!(kl.abs() < 1e-12 && g.iter().all(|v| v.abs() < 1e-12));
        let other: Vec<f64> = test_values(12, 33);
        let (_, g) = kl_to_target(&target, &other, 4);
        assert_gradient(
            "kl",
            &mut |v| kl_to_target(&target, v, 4).0,
            &other,
            &g,
            1e-8,
        );
    }

    #[test]
    fn similarity_distributions_are_rows_of_probabilities_over_the_other_views() {
        let z = test_values(4 * 3, 61);
        let p = similarity_distributions(&z, 3, 0.5);
        for (i, row) in p.chunks(4).enumerate() {
            assert_eq!(row[i], 0.0);
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn similarity_kl_is_zero_at_its_target_and_its_gradient_matches_finite_differences() {
        let z = test_values(5 * 4, 62);
        let own = similarity_distributions(&z, 4, 0.3);
        let (at_target, dz) = similarity_kl(&own, &z, 4, 0.3);
        assert!(at_target.abs() < 1e-12 && dz.iter().all(|v| v.abs() < 1e-12));
        let target = similarity_distributions(&test_values(5 * 4, 63), 4, 0.3);
        let (_, g) = similarity_kl(&target, &z, 4, 0.3);
        assert_gradient(
            "similarity KL",
            &mut |v| similarity_kl(&target, v, 4, 0.3).0,
            &z,
            &g,
            1e-7,
        );
    }
}

//! The losses of the paper, each returning its value and its gradient with respect to its input
//! (the learner's backward pass takes it from there). All are mean-reduced over the batch and
//! computed through log-sum-exp, so no logit size overflows.
//!
//! - [`cross_entropy`]: classification of pseudo-labels (inner loss, first term).
//! - [`supervised_contrastive`]: paper eq. (1), multi-positive contrastive loss on L2-normalised
//!   projections with temperature tau (inner loss, second term, weight lambda).
//! - [`kl_to_target`]: KL(pi_target || pi) on predictive distributions (BMSSL outer loss, eq. 3).

use crate::engine::Scalar;

/// Row-wise log-softmax of `logits [B, C]`.
pub fn log_softmax<S: Scalar>(logits: &[S], classes: usize) -> Vec<S> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let lse = log_sum_exp(row.iter().copied());
        out.extend(row.iter().map(|&v| v - lse));
    }
    out
}

/// Row-wise softmax of `logits [B, C]`.
pub fn softmax<S: Scalar>(logits: &[S], classes: usize) -> Vec<S> {
    log_softmax(logits, classes)
        .into_iter()
        .map(|v| v.exp())
        .collect()
}

/// `log(sum(exp(v)))`, shifted by the largest value for stability.
pub(crate) fn log_sum_exp<S: Scalar>(values: impl Iterator<Item = S> + Clone) -> S {
    let shift = values.clone().fold(f64::NEG_INFINITY, |m, v| m.max(v.re()));
    let shift = S::from_f64(if shift.is_finite() { shift } else { 0.0 });
    values.map(|v| (v - shift).exp()).sum::<S>().ln() + shift
}

/// Mean cross-entropy of `logits [B, C]` against integer `labels [B]`; returns `(loss, dlogits)`.
pub fn cross_entropy<S: Scalar>(logits: &[S], labels: &[usize], classes: usize) -> (S, Vec<S>) {
    let b = labels.len();
    let lsm = log_softmax(logits, classes);
    let mut loss = S::default();
    let mut grad: Vec<S> = lsm.iter().map(|v| v.exp().scale(1.0 / b as f64)).collect();
    for (i, &y) in labels.iter().enumerate() {
        loss -= lsm[i * classes + y];
        grad[i * classes + y] -= S::from_f64(1.0 / b as f64);
    }
    (loss.scale(1.0 / b as f64), grad)
}

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

/// Rows of `z [B, D]` scaled to unit length (`F.normalize`: `z / max(|z|, 1e-12)`); returns the
/// normalised rows and each row's divisor.
pub fn normalize_rows<S: Scalar>(z: &[S], dim: usize) -> (Vec<S>, Vec<S>) {
    let mut norms = Vec::with_capacity(z.len() / dim);
    let mut zn = Vec::with_capacity(z.len());
    for row in z.chunks(dim) {
        let norm = row.iter().map(|&v| v * v).sum::<S>().sqrt();
        let denom = if norm.re() > 1e-12 {
            norm
        } else {
            S::from_f64(1e-12)
        };
        norms.push(denom);
        zn.extend(row.iter().map(|&v| v / denom));
    }
    (zn, norms)
}

/// Backward of [`normalize_rows`]: `dz = (dzn - zn <zn, dzn>) / |z|` (or `dzn / eps` below the floor).
pub fn normalize_rows_backward<S: Scalar>(zn: &[S], norms: &[S], dzn: &[S], dim: usize) -> Vec<S> {
    let mut dz = Vec::with_capacity(zn.len());
    for ((zr, gr), &n) in zn.chunks(dim).zip(dzn.chunks(dim)).zip(norms) {
        let clamped = n.re() <= 1e-12;
        let dot: S = zr.iter().zip(gr).map(|(&a, &g)| a * g).sum();
        dz.extend(zr.iter().zip(gr).map(
            |(&a, &g)| {
                if clamped {
                    g / n
                } else {
                    (g - a * dot) / n
                }
            },
        ));
    }
    dz
}

/// Multi-positive supervised contrastive loss (paper eq. 1) on projections `z [B, D]`.
///
/// For anchor i, the positives are the other views with its (pseudo-)label:
/// `l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )`,
/// `s = zn . zn^T / tau`, `zn` the rows of z scaled to unit length (`z / max(|z|, 1e-12)`, as
/// `F.normalize`). The loss is the mean over anchors; an anchor without positives (one view per
/// image, e.g. a 1-shot support set) contributes zero. Returns `(loss, dz)`.
pub fn supervised_contrastive<S: Scalar>(
    z: &[S],
    labels: &[usize],
    dim: usize,
    tau: f64,
) -> (S, Vec<S>) {
    let b = labels.len();
    let (zn, norms) = normalize_rows(z, dim);
    // Similarities s_ij = <zn_i, zn_j> / tau  [B, B].
    let mut sim = vec![S::default(); b * b];
    S::matmul(
        &mut sim,
        false,
        crate::engine::MatRef::rows(&zn, b, dim),
        crate::engine::MatRef::rows(&zn, b, dim).t(),
    );
    let inv_tau = 1.0 / tau;
    // dL/ds_ij, diagonal excluded.
    let mut ds = vec![S::default(); b * b];
    let mut loss = S::default();
    for i in 0..b {
        let positives = (0..b).filter(|&j| j != i && labels[j] == labels[i]).count();
        if positives == 0 {
            continue;
        }
        let row = |j: usize| sim[i * b + j].scale(inv_tau);
        let others = (0..b).filter(move |&j| j != i);
        let lse = log_sum_exp(others.clone().map(row));
        let w = 1.0 / (b as f64 * positives as f64);
        for j in others {
            let log_p = row(j) - lse;
            let pos = labels[j] == labels[i];
            if pos {
                loss -= log_p.scale(w);
            }
            // d(-w * sum_pos log_p)/ds_ij = -w * (pos - |P| softmax_ij), then / tau for sim.
            let g = log_p.exp().scale(positives as f64) - S::from_f64(if pos { 1.0 } else { 0.0 });
            ds[i * b + j] = g.scale(w * inv_tau);
        }
    }
    (loss, similarity_backward(&ds, &zn, &norms, dim))
}

/// `dz` from `ds = dLoss/ds_ij` of similarities `s_ij = <zn_i, zn_j>` (any scale already in `ds`):
/// `dzn = (ds + ds^T) . zn`, then back through the row normalisation.
fn similarity_backward<S: Scalar>(ds: &[S], zn: &[S], norms: &[S], dim: usize) -> Vec<S> {
    let b = norms.len();
    let mut sym = vec![S::default(); b * b];
    for i in 0..b {
        for j in 0..b {
            sym[i * b + j] = ds[i * b + j] + ds[j * b + i];
        }
    }
    let mut dzn = vec![S::default(); b * dim];
    S::matmul(
        &mut dzn,
        false,
        crate::engine::MatRef::rows(&sym, b, b),
        crate::engine::MatRef::rows(zn, b, dim),
    );
    normalize_rows_backward(zn, norms, &dzn, dim)
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

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_of_the_class_count() {
        let (loss, _) = cross_entropy(&[0.0f64; 10], &[0, 3], 5);
        assert!((loss - 5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_survives_huge_logits() {
        let (loss, g) = cross_entropy(&[1000.0f64, 0.0, -1000.0], &[1], 3);
        assert!((loss - 1000.0).abs() < 1e-9);
        assert!(g.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let x: Vec<f64> = test_values(12, 31).iter().map(|v| 3.0 * v).collect();
        let labels = [2, 0, 3];
        let (_, g) = cross_entropy(&x, &labels, 4);
        assert_gradient(
            "cross-entropy",
            &mut |v| cross_entropy(v, &labels, 4).0,
            &x,
            &g,
            1e-8,
        );
    }

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

    /// The same loss written the plain way, as the PyTorch reference does.
    fn supcon_by_the_formula(z: &[f64], labels: &[usize], dim: usize, tau: f64) -> f64 {
        let b = labels.len();
        let zn: Vec<Vec<f64>> = z
            .chunks(dim)
            .map(|r| {
                let n = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|v| v / n).collect()
            })
            .collect();
        let s =
            |i: usize, j: usize| zn[i].iter().zip(&zn[j]).map(|(a, b)| a * b).sum::<f64>() / tau;
        let mut total = 0.0;
        for i in 0..b {
            let denom: f64 = (0..b).filter(|&a| a != i).map(|a| s(i, a).exp()).sum();
            let pos: Vec<usize> = (0..b)
                .filter(|&p| p != i && labels[p] == labels[i])
                .collect();
            let sum: f64 = pos.iter().map(|&p| (s(i, p).exp() / denom).ln()).sum();
            total += -sum / (pos.len().max(1) as f64);
        }
        total / b as f64
    }

    #[test]
    fn supervised_contrastive_matches_its_formula_and_finite_differences() {
        let labels = [0, 1, 0, 2, 1, 0];
        let z = test_values(6 * 5, 34);
        let (loss, g) = supervised_contrastive(&z, &labels, 5, 0.5);
        assert!((loss - supcon_by_the_formula(&z, &labels, 5, 0.5)).abs() < 1e-12);
        assert_gradient(
            "supcon",
            &mut |v| supervised_contrastive(v, &labels, 5, 0.5).0,
            &z,
            &g,
            1e-7,
        );
    }

    #[test]
    fn supervised_contrastive_is_zero_without_positives() {
        let (loss, g) = supervised_contrastive(&test_values(15, 35), &[0, 1, 2], 5, 0.1);
        assert_eq!(loss, 0.0);
        assert!(g.iter().all(|v| *v == 0.0));
    }
}

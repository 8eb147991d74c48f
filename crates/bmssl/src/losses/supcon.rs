//! The supervised contrastive loss of paper eq. (1) on L2-normalised projections (the inner
//! loss's second term, weight lambda), with the row normalisation and the similarity backward pass
//! that the KL on similarities ([`super::kl`]) and the self-supervised losses ([`super::ssl`])
//! share.

use super::ce::log_sum_exp;
use crate::engine::Scalar;

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
pub(super) fn similarity_backward<S: Scalar>(
    ds: &[S],
    zn: &[S],
    norms: &[S],
    dim: usize,
) -> Vec<S> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

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

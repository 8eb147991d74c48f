//! The self-supervised objectives of the paper's Tables 1-3, each returning its value and its
//! gradient with respect to the embeddings it is given (the learner's backward pass takes it from
//! there). All are generic over [`Scalar`], so the same code runs in f32 for training, in f64 for
//! the finite-difference checks and on dual numbers inside BMSSL's inner loop (the "-o" variants
//! get exact second-order meta-gradients for free).
//!
//! | loss | paper | what it compares |
//! |---|---|---|
//! | [`nt_xent`] | SimCLR (Chen et al. 2020) | two views of each image against every other view in the batch |
//! | [`info_nce`] | MoCo v2 (Chen et al. 2020) | a query against its momentum key and a queue of past keys |
//! | [`barlow_twins`] | Barlow Twins (Zbontar et al. 2021) | the cross-correlation of two views' embeddings against the identity |
//! | [`swav`] | SwAV (Caron et al. 2020) | swapped prediction of Sinkhorn codes over learnable prototypes |
//! | [`psco`] | PsCo (Jang et al. 2023) | a pseudo-labelled few-shot task drawn from the queue by Sinkhorn, plus MoCo |
//!
//! Stop-gradients (momentum keys, queues, Sinkhorn codes) are structural: the functions return no
//! gradient for those inputs, as `torch.no_grad` gives none. Their values still depend on the
//! parameters, and on dual numbers their tangents flow through normally, so that inside BMSSL's inner
//! loop the Jacobian of an SGD step (what the second-order meta-gradient differentiates) is exact:
//! the update `w - alpha g(w)` changes with w through the keys and codes too.
//!
//! Over 400 lines: five self-supervised losses and Sinkhorn, each with its hand-written gradient;
//! about 270 lines are tests (finite differences and PyTorch's values).

use super::{log_sum_exp, normalize_rows, normalize_rows_backward, supervised_contrastive};
use crate::engine::{MatRef, Scalar};

/// SimCLR's NT-Xent on `z [2B, D]` (rows `0..B` the first view of each image, `B..2B` the
/// second): for every view, cross-entropy of its cosine similarities / tau to the other `2B - 1`
/// views with its partner as the class, averaged over the `2B` views. This is exactly the
/// supervised contrastive loss of paper eq. (1) with the image index as the label (one positive per
/// anchor), so it shares that function. Returns `(loss, dz)`.
pub fn nt_xent<S: Scalar>(z: &[S], dim: usize, tau: f64) -> (S, Vec<S>) {
    let b = z.len() / dim / 2;
    let labels: Vec<usize> = (0..b).chain(0..b).collect();
    supervised_contrastive(z, &labels, dim, tau)
}

/// Mean cross-entropy of logits `qn_i . keys_j / tau` over candidate keys, the class of row `i`
/// being candidate `target[i]`; `candidates(i)` lists the key rows row `i` is compared with.
/// Returns `(loss, dqn)`; keys are constants.
fn contrast<'k, S: Scalar>(
    qn: &[S],
    dim: usize,
    tau: f64,
    rows: usize,
    candidates: &dyn Fn(usize) -> Vec<&'k [S]>,
    target: &dyn Fn(usize) -> usize,
) -> (S, Vec<S>) {
    let inv_tau = 1.0 / tau;
    let inv_b = 1.0 / rows as f64;
    let mut loss = S::default();
    let mut dqn = vec![S::default(); qn.len()];
    for i in 0..rows {
        let q = &qn[i * dim..(i + 1) * dim];
        let keys = candidates(i);
        let logits: Vec<S> = keys
            .iter()
            .map(|k| {
                q.iter()
                    .zip(*k)
                    .map(|(&a, &b)| a * b)
                    .sum::<S>()
                    .scale(inv_tau)
            })
            .collect();
        let lse = log_sum_exp(logits.iter().copied());
        let t = target(i);
        loss += (lse - logits[t]).scale(inv_b);
        let dq = &mut dqn[i * dim..(i + 1) * dim];
        for (j, (k, &l)) in keys.iter().zip(&logits).enumerate() {
            let p = (l - lse).exp() - S::from_f64(if j == t { 1.0 } else { 0.0 });
            let w = p.scale(inv_b * inv_tau);
            for (d, &kv) in dq.iter_mut().zip(*k) {
                *d += w * kv;
            }
        }
    }
    (loss, dqn)
}

/// MoCo's InfoNCE on unit-length queries `qn [B, D]`: row `i`'s positive is `keys[i]` (its momentum
/// key), its negatives the `queue [Q, D]`; both constant and unit-length. Returns `(loss, dqn)`.
pub fn info_nce_normalized<S: Scalar>(
    qn: &[S],
    keys: &[S],
    queue: &[S],
    dim: usize,
    tau: f64,
) -> (S, Vec<S>) {
    let b = qn.len() / dim;
    let candidates = |i: usize| {
        std::iter::once(&keys[i * dim..(i + 1) * dim])
            .chain(queue.chunks(dim))
            .collect()
    };
    contrast(qn, dim, tau, b, &candidates, &|_| 0)
}

/// MoCo v2's InfoNCE on raw queries `q [B, D]` (normalised here): see [`info_nce_normalized`].
/// Returns `(loss, dq)`.
pub fn info_nce<S: Scalar>(q: &[S], keys: &[S], queue: &[S], dim: usize, tau: f64) -> (S, Vec<S>) {
    let (qn, norms) = normalize_rows(q, dim);
    let (loss, dqn) = info_nce_normalized(&qn, keys, queue, dim, tau);
    (loss, normalize_rows_backward(&qn, &norms, &dqn, dim))
}

/// InfoNCE with in-batch keys: row `i` of `q [B, D]` against every key of `keys [B, D]` (constant,
/// unit length), its own as the positive. MoCo's loss when the other images' keys serve as the
/// queue (the "-o" variant inside a task). Returns `(loss, dq)`.
pub fn info_nce_in_batch<S: Scalar>(q: &[S], keys: &[S], dim: usize, tau: f64) -> (S, Vec<S>) {
    let (qn, norms) = normalize_rows(q, dim);
    let b = qn.len() / dim;
    let candidates = |_: usize| keys.chunks(dim).collect();
    let (loss, dqn) = contrast(&qn, dim, tau, b, &candidates, &|i| i);
    (loss, normalize_rows_backward(&qn, &norms, &dqn, dim))
}

/// Barlow Twins on `z1, z2 [B, D]`: each dimension standardised over the batch (batch-norm without
/// affine, biased variance, eps 1e-5, as `BatchNorm1d(affine=False)`), cross-correlation
/// `c = z1n^T z2n / B [D, D]`, loss `sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2`.
/// Returns `(loss, dz1, dz2)`.
pub fn barlow_twins<S: Scalar>(z1: &[S], z2: &[S], dim: usize, lambda: f64) -> (S, Vec<S>, Vec<S>) {
    let b = z1.len() / dim;
    let (n1, s1) = standardize(z1, b, dim);
    let (n2, s2) = standardize(z2, b, dim);
    let mut c = vec![S::default(); dim * dim];
    S::matmul(
        &mut c,
        false,
        MatRef::rows(&n1, b, dim).t(),
        MatRef::rows(&n2, b, dim),
    );
    let inv_b = 1.0 / b as f64;
    let mut loss = S::default();
    let mut dc = vec![S::default(); dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            let v = c[i * dim + j].scale(inv_b);
            if i == j {
                let r = S::from_f64(1.0) - v;
                loss += r * r;
                dc[i * dim + j] = r.scale(-2.0 * inv_b);
            } else {
                loss += (v * v).scale(lambda);
                dc[i * dim + j] = v.scale(2.0 * lambda * inv_b);
            }
        }
    }
    // c = n1^T n2: dn1 = n2 dc^T, dn2 = n1 dc.
    let mut dn1 = vec![S::default(); b * dim];
    S::matmul(
        &mut dn1,
        false,
        MatRef::rows(&n2, b, dim),
        MatRef::rows(&dc, dim, dim).t(),
    );
    let mut dn2 = vec![S::default(); b * dim];
    S::matmul(
        &mut dn2,
        false,
        MatRef::rows(&n1, b, dim),
        MatRef::rows(&dc, dim, dim),
    );
    let dz1 = standardize_backward(&n1, &s1, &dn1, b, dim);
    let dz2 = standardize_backward(&n2, &s2, &dn2, b, dim);
    (loss, dz1, dz2)
}

/// Per-column standardisation of `x [B, D]`: `(x - mean) / sqrt(var + 1e-5)`; returns the result
/// and each column's `1 / sqrt(var + eps)`.
fn standardize<S: Scalar>(x: &[S], b: usize, dim: usize) -> (Vec<S>, Vec<S>) {
    let inv_b = 1.0 / b as f64;
    let mut out = vec![S::default(); x.len()];
    let mut inv_std = Vec::with_capacity(dim);
    for d in 0..dim {
        let mean = (0..b).map(|i| x[i * dim + d]).sum::<S>().scale(inv_b);
        let var = (0..b)
            .map(|i| {
                let c = x[i * dim + d] - mean;
                c * c
            })
            .sum::<S>()
            .scale(inv_b);
        let is = S::from_f64(1.0) / (var + S::from_f64(1e-5)).sqrt();
        for i in 0..b {
            out[i * dim + d] = (x[i * dim + d] - mean) * is;
        }
        inv_std.push(is);
    }
    (out, inv_std)
}

/// Backward of [`standardize`]: `dx = inv_std * (dn - mean(dn) - n * mean(dn * n))` per column.
fn standardize_backward<S: Scalar>(
    n: &[S],
    inv_std: &[S],
    dn: &[S],
    b: usize,
    dim: usize,
) -> Vec<S> {
    let inv_b = 1.0 / b as f64;
    let mut dx = vec![S::default(); n.len()];
    for d in 0..dim {
        let m1 = (0..b).map(|i| dn[i * dim + d]).sum::<S>().scale(inv_b);
        let m2 = (0..b)
            .map(|i| dn[i * dim + d] * n[i * dim + d])
            .sum::<S>()
            .scale(inv_b);
        for i in 0..b {
            dx[i * dim + d] = inv_std[d] * (dn[i * dim + d] - m1 - n[i * dim + d] * m2);
        }
    }
    dx
}

/// Sinkhorn-Knopp codes for `scores [B, K]`, as SwAV and PsCo compute them:
/// `Q = exp(scores / eps)`, normalised to sum 1, then `iters` rounds of "every column (prototype or
/// queue entry) gets mass 1/K, every row (sample) mass 1/B"; finally rows scaled to sum to 1, so
/// each row is a soft assignment. A global shift first (which the first normalisation cancels)
/// keeps `exp` from overflowing.
pub fn sinkhorn<S: Scalar>(
    scores: &[S],
    rows: usize,
    cols: usize,
    eps: f64,
    iters: usize,
) -> Vec<S> {
    let shift = scores.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.re()));
    let shift = S::from_f64(if shift.is_finite() { shift } else { 0.0 });
    let mut q: Vec<S> = scores
        .iter()
        .map(|&s| (s - shift).scale(1.0 / eps).exp())
        .collect();
    let total: S = q.iter().copied().sum();
    q.iter_mut().for_each(|v| *v = *v / total);
    for _ in 0..iters {
        let mut col = vec![S::default(); cols];
        for row in q.chunks(cols) {
            for (c, &v) in col.iter_mut().zip(row) {
                *c += v;
            }
        }
        for row in q.chunks_mut(cols) {
            for (v, &c) in row.iter_mut().zip(&col) {
                *v = *v / c.scale(cols as f64);
            }
        }
        for row in q.chunks_mut(cols) {
            let s: S = row.iter().copied().sum();
            row.iter_mut().for_each(|v| *v = *v / s.scale(rows as f64));
        }
    }
    q.iter_mut().for_each(|v| *v = v.scale(rows as f64));
    q
}

/// Settings of [`swav`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwavSpec {
    /// Softmax temperature of the predictions.
    pub tau: f64,
    /// Sinkhorn's entropic regularisation.
    pub eps: f64,
    /// Sinkhorn rounds.
    pub iters: usize,
}

/// SwAV's swapped prediction on `z [2B, D]` (two views, as in [`nt_xent`]) with prototypes
/// `c [P, D]`: rows of both normalised, scores `s = zn cn^T`, codes `q_v = sinkhorn(s_v)` (no
/// gradient), loss `-1/B sum_b (q1_b . log softmax(s2_b / tau) + q2_b . log softmax(s1_b / tau))`.
/// The prototypes are normalised inside the loss (SwAV renormalises them in place after each
/// update; the forward values are the same and the gradient is the one of the normalised layer).
/// Returns `(loss, dz, dc)`.
pub fn swav<S: Scalar>(z: &[S], c: &[S], dim: usize, spec: SwavSpec) -> (S, Vec<S>, Vec<S>) {
    let codes = swav_codes(z, c, dim, spec);
    swav_given_codes(z, c, &codes, dim, spec.tau)
}

/// SwAV's Sinkhorn codes `[2B, P]` for `z [2B, D]` and prototypes `c [P, D]`, one Sinkhorn per view
/// (targets: [`swav_given_codes`] returns no gradient for them).
pub fn swav_codes<S: Scalar>(z: &[S], c: &[S], dim: usize, spec: SwavSpec) -> Vec<S> {
    swav_multicrop_codes(z, c, dim, 2, spec)
}

/// The codes of multi-crop SwAV (Caron et al. 2020, section 3.2): `z [views B, D]` holds the two
/// full-size views first, then the small crops, view-major; only the two full views are assigned
/// codes (`[2B, P]`, one Sinkhorn each), as in the official `crops_for_assign = [0, 1]`.
pub fn swav_multicrop_codes<S: Scalar>(
    z: &[S],
    c: &[S],
    dim: usize,
    views: usize,
    spec: SwavSpec,
) -> Vec<S> {
    let b = z.len() / dim / views.max(2);
    let p = c.len() / dim;
    let full = &z[..2 * b * dim];
    let s = swav_scores(
        &normalize_rows(full, dim).0,
        &normalize_rows(c, dim).0,
        2 * b,
        p,
        dim,
    );
    [0, 1]
        .iter()
        .flat_map(|&v| sinkhorn(&s[v * b * p..(v + 1) * b * p], b, p, spec.eps, spec.iters))
        .collect()
}

/// `zn cn^T [2B, P]`.
fn swav_scores<S: Scalar>(zn: &[S], cn: &[S], b2: usize, p: usize, dim: usize) -> Vec<S> {
    let mut s = vec![S::default(); b2 * p];
    S::matmul(
        &mut s,
        false,
        MatRef::rows(zn, b2, dim),
        MatRef::rows(cn, p, dim).t(),
    );
    s
}

/// SwAV's swapped-prediction loss with given codes `[2B, P]` (see [`swav`]): `(loss, dz, dc)`.
pub fn swav_given_codes<S: Scalar>(
    z: &[S],
    c: &[S],
    codes: &[S],
    dim: usize,
    tau: f64,
) -> (S, Vec<S>, Vec<S>) {
    swav_multicrop_given_codes(z, c, codes, dim, 2, tau)
}

/// Multi-crop SwAV's loss on `z [views B, D]` (two full views, then `views - 2` small crops) with
/// the full views' codes `[2B, P]` ([`swav_multicrop_codes`]): every view predicts the code of
/// each full view other than itself,
/// `-1/B 1/(views - 1) sum_{i in {0, 1}} sum_{v != i} sum_b q_i,b . log softmax(s_v,b / tau)`,
/// the official loss times 2 so that with `views = 2` it is [`swav_given_codes`], bit for bit.
/// Returns `(loss, dz, dc)`; no gradient through the codes.
pub fn swav_multicrop_given_codes<S: Scalar>(
    z: &[S],
    c: &[S],
    codes: &[S],
    dim: usize,
    views: usize,
    tau: f64,
) -> (S, Vec<S>, Vec<S>) {
    let rows = z.len() / dim;
    let views = views.max(2);
    let b = rows / views;
    let p = c.len() / dim;
    let (zn, zs) = normalize_rows(z, dim);
    let (cn, cs) = normalize_rows(c, dim);
    let s = swav_scores(&zn, &cn, rows, p, dim);
    let inv_tau = 1.0 / tau;
    let w = inv_b_times(b, views);
    let mut loss = S::default();
    let mut ds = vec![S::default(); rows * p];
    for r in 0..rows {
        // Row r (view v, image i) is predicted by the codes of image i's full views other than v.
        let (v, i) = (r / b, r % b);
        let targets: Vec<(&[S], S)> = [0, 1]
            .iter()
            .filter(|&&full| full != v)
            .map(|&full| {
                let q = &codes[(full * b + i) * p..(full * b + i + 1) * p];
                (q, q.iter().copied().sum())
            })
            .collect();
        let logits: Vec<S> = s[r * p..(r + 1) * p]
            .iter()
            .map(|&x| x.scale(inv_tau))
            .collect();
        let lse = log_sum_exp(logits.iter().copied());
        for k in 0..p {
            let log_p = logits[k] - lse;
            let mut d: Option<S> = None;
            for (q, mass) in &targets {
                loss -= (log_p * q[k]).scale(w);
                let term = log_p.exp() * *mass - q[k];
                d = Some(d.map_or(term, |d| d + term));
            }
            ds[r * p + k] = d.unwrap_or_default().scale(w * inv_tau);
        }
    }
    let mut dzn = vec![S::default(); rows * dim];
    S::matmul(
        &mut dzn,
        false,
        MatRef::rows(&ds, rows, p),
        MatRef::rows(&cn, p, dim),
    );
    let mut dcn = vec![S::default(); p * dim];
    S::matmul(
        &mut dcn,
        false,
        MatRef::rows(&ds, rows, p).t(),
        MatRef::rows(&zn, rows, dim),
    );
    (
        loss,
        normalize_rows_backward(&zn, &zs, &dzn, dim),
        normalize_rows_backward(&cn, &cs, &dcn, dim),
    )
}

/// `1/B * 1/(views - 1)`, exactly `1/B` for two views.
fn inv_b_times(b: usize, views: usize) -> f64 {
    let inv_b = 1.0 / b as f64;
    if views == 2 {
        inv_b
    } else {
        inv_b / (views - 1) as f64
    }
}

/// Settings of [`psco`] (the official code's names in brackets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PscoSpec {
    /// Shots drawn from the queue per pseudo-class (`num_shots`).
    pub shots: usize,
    /// MoCo temperature (`temperature`).
    pub tau: f64,
    /// Temperature of the few-shot contrastive term (`temperature2`).
    pub tau2: f64,
    /// Sinkhorn regularisation and rounds for the pseudo-labels.
    pub eps: f64,
    pub iters: usize,
}

/// The queue rows chosen as the support set of PsCo's pseudo-task: Sinkhorn assignments of the
/// momentum keys `keys [B, D]` to the queue `[Q, D]`, then each key's `shots` highest-assigned queue
/// entries (ties to the lower index). Returns `B * shots` queue indices, key by key.
pub fn psco_support(keys: &[f64], queue: &[f64], dim: usize, spec: &PscoSpec) -> Vec<usize> {
    let b = keys.len() / dim;
    let qn = queue.len() / dim;
    let mut sim = vec![0.0f64; b * qn];
    f64::matmul(
        &mut sim,
        false,
        MatRef::rows(keys, b, dim),
        MatRef::rows(queue, qn, dim).t(),
    );
    let a = sinkhorn(&sim, b, qn, spec.eps, spec.iters);
    a.chunks(qn)
        .flat_map(|row| {
            let mut idx: Vec<usize> = (0..qn).collect();
            idx.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            idx.truncate(spec.shots);
            idx
        })
        .collect()
}

/// PsCo's loss on raw online embeddings `p [B, D]` (normalised here), with the momentum keys
/// `keys [B, D]` and the `queue [Q, D]` (constants, unit rows) and the support indices of
/// [`psco_support`]: the few-shot term
/// `mean_i [ lse_j(pn_i . shot_j / tau2) - pn_i . proto_i / tau2 ]` (`proto_i` the mean of image i's
/// shots, `j` over all `B * shots` shots) plus MoCo's InfoNCE with temperature `tau`.
/// Returns `(loss, dp)`.
pub fn psco<S: Scalar>(
    p: &[S],
    keys: &[S],
    queue: &[S],
    support: &[usize],
    dim: usize,
    spec: &PscoSpec,
) -> (S, Vec<S>) {
    let b = p.len() / dim;
    let (pn, norms) = normalize_rows(p, dim);
    let shots: Vec<&[S]> = support
        .iter()
        .map(|&j| &queue[j * dim..(j + 1) * dim])
        .collect();
    let inv_tau2 = 1.0 / spec.tau2;
    let inv_b = 1.0 / b as f64;
    let inv_k = 1.0 / spec.shots as f64;
    let mut loss = S::default();
    let mut dpn = vec![S::default(); pn.len()];
    for i in 0..b {
        let q = &pn[i * dim..(i + 1) * dim];
        let logits: Vec<S> = shots
            .iter()
            .map(|s| {
                q.iter()
                    .zip(*s)
                    .map(|(&a, &v)| a * v)
                    .sum::<S>()
                    .scale(inv_tau2)
            })
            .collect();
        let lse = log_sum_exp(logits.iter().copied());
        let own = &shots[i * spec.shots..(i + 1) * spec.shots];
        let proto: Vec<S> = (0..dim)
            .map(|d| own.iter().map(|s| s[d]).sum::<S>().scale(inv_k))
            .collect();
        let dot: S = q.iter().zip(&proto).map(|(&a, &v)| a * v).sum();
        loss += (lse - dot.scale(inv_tau2)).scale(inv_b);
        let dq = &mut dpn[i * dim..(i + 1) * dim];
        for (s, &l) in shots.iter().zip(&logits) {
            let w = (l - lse).exp().scale(inv_tau2 * inv_b);
            for (d, &v) in dq.iter_mut().zip(*s) {
                *d += w * v;
            }
        }
        for (d, &v) in dq.iter_mut().zip(&proto) {
            *d -= v.scale(inv_tau2 * inv_b);
        }
    }
    let (moco, dmoco) = info_nce_normalized(&pn, keys, queue, dim, spec.tau);
    for (d, m) in dpn.iter_mut().zip(dmoco) {
        *d += m;
    }
    (loss + moco, normalize_rows_backward(&pn, &norms, &dpn, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

    fn unit_rows(n: usize, dim: usize, salt: u64) -> Vec<f64> {
        normalize_rows(&test_values(n * dim, salt), dim).0
    }

    #[test]
    fn every_gradient_matches_finite_differences() {
        let d = 4;
        let z = test_values(6 * d, 1);
        let (_, g) = nt_xent(&z, d, 0.5);
        assert_gradient("nt-xent", &mut |v| nt_xent(v, d, 0.5).0, &z, &g, 1e-7);

        let keys = unit_rows(3, d, 2);
        let queue = unit_rows(5, d, 3);
        let q = test_values(3 * d, 4);
        let (_, g) = info_nce(&q, &keys, &queue, d, 0.2);
        assert_gradient(
            "info-nce",
            &mut |v| info_nce(v, &keys, &queue, d, 0.2).0,
            &q,
            &g,
            1e-7,
        );
        let (_, g) = info_nce_in_batch(&q, &keys, d, 0.2);
        assert_gradient(
            "info-nce in batch",
            &mut |v| info_nce_in_batch(v, &keys, d, 0.2).0,
            &q,
            &g,
            1e-7,
        );

        let z1 = test_values(5 * d, 5);
        let z2 = test_values(5 * d, 6);
        let (_, g1, g2) = barlow_twins(&z1, &z2, d, 0.3);
        assert_gradient(
            "barlow twins (view 1)",
            &mut |v| barlow_twins(v, &z2, d, 0.3).0,
            &z1,
            &g1,
            1e-6,
        );
        assert_gradient(
            "barlow twins (view 2)",
            &mut |v| barlow_twins(&z1, v, d, 0.3).0,
            &z2,
            &g2,
            1e-6,
        );

        let spec = SwavSpec {
            tau: 0.1,
            eps: 0.05,
            iters: 3,
        };
        let c = test_values(7 * d, 7);
        let (_, gz, gc) = swav(&z, &c, d, spec);
        // The codes are constants: finite differences must hold them fixed, so difference a
        // version of the loss whose codes come from the unperturbed point.
        let frozen = |zv: &[f64], cv: &[f64]| swav_with_codes_of(zv, cv, &z, &c, d, spec);
        assert_gradient("swav (z)", &mut |v| frozen(v, &c), &z, &gz, 1e-6);
        assert_gradient("swav (prototypes)", &mut |v| frozen(&z, v), &c, &gc, 1e-6);

        let pspec = PscoSpec {
            shots: 2,
            tau: 0.2,
            tau2: 1.0,
            eps: 0.05,
            iters: 3,
        };
        let support = psco_support(&keys, &queue, d, &pspec);
        let (_, g) = psco(&q, &keys, &queue, &support, d, &pspec);
        assert_gradient(
            "psco",
            &mut |v| psco(v, &keys, &queue, &support, d, &pspec).0,
            &q,
            &g,
            1e-7,
        );
    }

    /// The golden values of `tests/golden/ssl_losses.py` (PyTorch, f64, the official code's formulas).
    #[test]
    fn losses_match_pytorch() {
        let text = include_str!("../../tests/golden/ssl-losses.json");
        let g: serde_json::Value = serde_json::from_str(text).unwrap();
        let vec = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let close = |name: &str, got: f64, want: &serde_json::Value| {
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-10 * want.abs().max(1.0),
                "{name}: {got} vs PyTorch {want}"
            );
        };
        let same = |name: &str, got: &[f64], want: &serde_json::Value| {
            let err = crate::engine::gradcheck::max_relative_error(got, &vec(want), 1e-12);
            assert!(
                err < 1e-9,
                "{name}: gradient differs from PyTorch by {err:e}"
            );
        };
        let d = 4;
        let z = test_values(6 * d, 1);
        let (l, gz) = nt_xent(&z, d, 0.5);
        close("nt-xent", l, &g["nt_xent"]["loss"]);
        same("nt-xent", &gz, &g["nt_xent"]["grad"]);

        let keys = unit_rows(3, d, 2);
        let queue = unit_rows(5, d, 3);
        let q = test_values(3 * d, 4);
        let (l, gq) = info_nce(&q, &keys, &queue, d, 0.2);
        close("info-nce", l, &g["info_nce"]["loss"]);
        same("info-nce", &gq, &g["info_nce"]["grad"]);

        let (l, g1, g2) = barlow_twins(&test_values(5 * d, 5), &test_values(5 * d, 6), d, 0.3);
        close("barlow twins", l, &g["barlow_twins"]["loss"]);
        same("barlow twins z1", &g1, &g["barlow_twins"]["grad_z1"]);
        same("barlow twins z2", &g2, &g["barlow_twins"]["grad_z2"]);

        let spec = SwavSpec {
            tau: 0.1,
            eps: 0.05,
            iters: 3,
        };
        let (l, gz, gc) = swav(&z, &test_values(7 * d, 7), d, spec);
        close("swav", l, &g["swav"]["loss"]);
        same("swav z", &gz, &g["swav"]["grad_z"]);
        same("swav prototypes", &gc, &g["swav"]["grad_c"]);

        let pspec = PscoSpec {
            shots: 2,
            tau: 0.2,
            tau2: 1.0,
            eps: 0.05,
            iters: 3,
        };
        let support = psco_support(&keys, &queue, d, &pspec);
        let want: Vec<usize> = vec(&g["psco"]["support"])
            .into_iter()
            .map(|v| v as usize)
            .collect();
        assert_eq!(
            support, want,
            "PsCo's support set differs from torch.topk's"
        );
        let (l, gp) = psco(&q, &keys, &queue, &support, d, &pspec);
        close("psco", l, &g["psco"]["loss"]);
        same("psco", &gp, &g["psco"]["grad"]);
    }

    /// SwAV's loss at (z, c) with the Sinkhorn codes of (z0, c0).
    fn swav_with_codes_of(
        z: &[f64],
        c: &[f64],
        z0: &[f64],
        c0: &[f64],
        d: usize,
        spec: SwavSpec,
    ) -> f64 {
        let (b2, p) = (z.len() / d, c.len() / d);
        let b = b2 / 2;
        let scores = |z: &[f64], c: &[f64]| {
            let (zn, _) = normalize_rows(z, d);
            let (cn, _) = normalize_rows(c, d);
            let mut s = vec![0.0; b2 * p];
            f64::matmul(
                &mut s,
                false,
                MatRef::rows(&zn, b2, d),
                MatRef::rows(&cn, p, d).t(),
            );
            s
        };
        let s0 = scores(z0, c0);
        let codes: Vec<f64> = (0..2)
            .flat_map(|v| sinkhorn(&s0[v * b * p..(v + 1) * b * p], b, p, spec.eps, spec.iters))
            .collect();
        let s = scores(z, c);
        let mut loss = 0.0;
        for r in 0..b2 {
            let other = if r < b { r + b } else { r - b };
            let row: Vec<f64> = s[r * p..(r + 1) * p].iter().map(|x| x / spec.tau).collect();
            let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
            for k in 0..p {
                loss -= codes[other * p + k] * (row[k] - lse) / b as f64;
            }
        }
        loss
    }

    #[test]
    fn multicrop_swav_predicts_each_full_views_code_from_every_other_view_and_its_gradient_is_exact(
    ) {
        // B = 3 images, 2 full views + 2 small crops, D = 3, P = 5 prototypes.
        let (b, views, d, p) = (3, 4, 3, 5);
        let spec = SwavSpec {
            tau: 0.2,
            eps: 0.05,
            iters: 3,
        };
        let z = test_values(views * b * d, 21);
        let c = test_values(p * d, 22);
        let codes = swav_multicrop_codes(&z, &c, d, views, spec);
        // Only the full views are assigned codes, each by its own Sinkhorn.
        assert_eq!(codes, swav_codes(&z[..2 * b * d], &c, d, spec));
        // By hand: -1/B 1/(V-1) sum over full i, other views v, images of q_i . log softmax(s_v / tau).
        let reference = |z: &[f64], c: &[f64]| {
            let (zn, _) = normalize_rows(z, d);
            let (cn, _) = normalize_rows(c, d);
            let mut loss = 0.0;
            for i in 0..2 {
                for v in (0..views).filter(|&v| v != i) {
                    for img in 0..b {
                        let r = v * b + img;
                        let row: Vec<f64> = (0..p)
                            .map(|k| {
                                (0..d).map(|j| zn[r * d + j] * cn[k * d + j]).sum::<f64>()
                                    / spec.tau
                            })
                            .collect();
                        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
                        for k in 0..p {
                            let q = codes[(i * b + img) * p + k];
                            loss -= q * (row[k] - lse) / (b * (views - 1)) as f64;
                        }
                    }
                }
            }
            loss
        };
        let (loss, gz, gc) = swav_multicrop_given_codes(&z, &c, &codes, d, views, spec.tau);
        assert!(
            (loss - reference(&z, &c)).abs() < 1e-12,
            "{loss} vs {}",
            reference(&z, &c)
        );
        assert_gradient(
            "multi-crop swav (z)",
            &mut |v| reference(v, &c),
            &z,
            &gz,
            1e-6,
        );
        assert_gradient(
            "multi-crop swav (prototypes)",
            &mut |v| reference(&z, v),
            &c,
            &gc,
            1e-6,
        );
    }

    #[test]
    fn sinkhorn_codes_are_assignments_with_balanced_columns() {
        let s = test_values(6 * 3, 8);
        let q = sinkhorn(&s, 6, 3, 0.2, 50);
        for row in q.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        for k in 0..3 {
            let col: f64 = (0..6).map(|i| q[i * 3 + k]).sum();
            assert!((col - 2.0).abs() < 1e-2, "column {k} holds {col}, want 6/3");
        }
    }

    #[test]
    fn barlow_twins_is_zero_for_identical_decorrelated_views_and_counts_correlation() {
        // Two orthogonal +-1 columns over 4 samples: c = I exactly (up to eps), loss ~ 0.
        let z: [f64; 8] = [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0];
        let (loss, _, _) = barlow_twins(&z, &z, 2, 0.5);
        assert!(loss < 1e-8, "{loss}");
        // Identical columns: c = all ones; on-diagonal 0, off-diagonal 2 * lambda.
        let z: [f64; 8] = [1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0];
        let (loss, _, _) = barlow_twins(&z, &z, 2, 0.5);
        assert!((loss - 1.0).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn info_nce_by_hand_for_one_query_with_one_negative() {
        // q = e1, key = e1, queue = [e2]: logits [1/tau, 0], loss = ln(1 + exp(-1/tau)).
        let (loss, _) = info_nce(&[2.0, 0.0], &[1.0, 0.0], &[0.0, 1.0], 2, 0.5);
        assert!((loss - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-12);
    }

    #[test]
    fn nt_xent_is_cross_entropy_over_the_other_views() {
        let d = 3;
        let z = test_values(4 * d, 9);
        let (zn, _) = normalize_rows(&z, d);
        let sim = |i: usize, j: usize| -> f64 {
            (0..d).map(|k| zn[i * d + k] * zn[j * d + k]).sum::<f64>() / 0.5
        };
        let mut want = 0.0;
        for i in 0..4 {
            let partner = (i + 2) % 4;
            let denom: f64 = (0..4).filter(|&j| j != i).map(|j| sim(i, j).exp()).sum();
            want -= (sim(i, partner).exp() / denom).ln() / 4.0;
        }
        assert!((nt_xent(&z, d, 0.5).0 - want).abs() < 1e-12);
    }

    #[test]
    fn psco_support_takes_the_most_assigned_queue_entries() {
        // A queue of e1 and e2; a key near e2 and one near e1 pick them in that order (Sinkhorn
        // spreads each queue entry's mass evenly, so with more entries than keys the choice is
        // shared out across keys rather than greedy).
        let queue = [1.0, 0.0, 0.0, 1.0];
        let keys = [0.141, 0.99, 0.99, 0.141];
        let spec = PscoSpec {
            shots: 1,
            tau: 0.2,
            tau2: 1.0,
            eps: 0.05,
            iters: 3,
        };
        assert_eq!(psco_support(&keys, &queue, 2, &spec), vec![1, 0]);
        let two = PscoSpec { shots: 2, ..spec };
        assert_eq!(psco_support(&keys, &queue, 2, &two), vec![1, 0, 0, 1]);
    }
}

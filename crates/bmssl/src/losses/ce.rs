//! Cross-entropy on (pseudo-)labels: the first term of the inner loss, and the softmax helpers
//! the other losses share.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

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
}

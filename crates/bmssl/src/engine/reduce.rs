//! Reductions with eight independent accumulators: the compiler can keep them in one SIMD
//! register (a single running sum is a serial chain of dependent additions), and the rounding
//! error grows more slowly. The summation order is fixed, so results are bit-reproducible.

use super::scalar::Scalar;

/// `sum(xs)`.
#[inline]
pub fn sum<S: Scalar>(xs: &[S]) -> S {
    let mut acc = [S::default(); 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut total = S::default();
    for &t in tail {
        total += t;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + total
}

/// `sum(a * b)`.
#[inline]
pub fn dot<S: Scalar>(a: &[S], b: &[S]) -> S {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    let mut acc = [S::default(); 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut total = S::default();
    for (&x, &y) in ta.iter().zip(tb) {
        total += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_dot_agree_with_the_plain_loops_for_every_tail_length() {
        for n in 0..40 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).cos()).collect();
            assert!((sum(&a) - a.iter().sum::<f64>()).abs() < 1e-12);
            assert!(
                (dot(&a, &b) - a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>()).abs() < 1e-12
            );
        }
    }
}

//! Reductions with eight independent accumulators: the compiler can keep them in one SIMD
//! register (a single running sum is a serial chain of dependent additions), and the rounding
//! error grows more slowly. The summation order is fixed, so results are bit-reproducible.
//!
//! On `f32` and `Dual<f32>` with AVX2 the whole chunks of eight go through `reduce/avx2.rs`: the
//! same accumulators, each element added to the same one in the same order (so the same bits), in
//! one register per eight numbers. The compiler's code for the generic loops kept them apart.

use super::scalar::Scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Elements per chunk: accumulator `i` sums the elements `i`, `i + 8`, `i + 16`, ...
const ACC: usize = 8;

/// `sum(xs)`.
#[inline]
pub fn sum<S: Scalar>(xs: &[S]) -> S {
    let mut out = [S::default()];
    row_sums_into(xs, xs.len(), &mut out);
    out[0]
}

/// `sum(a * b)`.
#[inline]
pub fn dot<S: Scalar>(a: &[S], b: &[S]) -> S {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    let mut acc = [[S::default(); ACC]];
    #[cfg(target_arch = "x86_64")]
    let done = avx2::dot_chunks(a, b, a.len(), &mut acc);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let [mut acc] = acc;
    let (a, b) = (&a[done..], &b[done..]);
    let ca = a.chunks_exact(ACC);
    let cb = b.chunks_exact(ACC);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..ACC {
            acc[i] += x[i] * y[i];
        }
    }
    let mut total = S::default();
    for (&x, &y) in ta.iter().zip(tb) {
        total += x * y;
    }
    combine(acc, total)
}

/// [`sum`] of each row of `x` (rows of `m` elements): the rows are summed side by side, each bit
/// for bit as [`sum`] sums it.
pub fn row_sums<S: Scalar>(x: &[S], m: usize) -> Vec<S> {
    let mut out = vec![S::default(); x.len().checked_div(m).unwrap_or(0)];
    row_sums_into(x, m, &mut out);
    out
}

fn row_sums_into<S: Scalar>(x: &[S], m: usize, out: &mut [S]) {
    if out.is_empty() {
        return;
    }
    let mut acc = vec![[S::default(); ACC]; out.len()];
    #[cfg(target_arch = "x86_64")]
    let done = avx2::sum_chunks(x, m, &mut acc);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for ((row, mut acc), o) in x.chunks_exact(m.max(1)).zip(acc).zip(out) {
        let chunks = row[done..].chunks_exact(ACC);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..ACC {
                acc[i] += c[i];
            }
        }
        let mut total = S::default();
        for &t in tail {
            total += t;
        }
        *o = combine(acc, total);
    }
}

/// `(sum(a_r), dot(a_r, b_r))` of each row pair (rows of `m` elements) in one pass, each bit for
/// bit as [`sum`] and [`dot`] compute it (the same accumulators, added in the same order): the
/// chains of dependent additions run side by side, and `a` is read once.
pub fn row_sums_and_dots<S: Scalar>(a: &[S], b: &[S], m: usize) -> (Vec<S>, Vec<S>) {
    assert_eq!(a.len(), b.len(), "row_sums_and_dots: lengths differ");
    let rows = a.len().checked_div(m).unwrap_or(0);
    let mut acc_s = vec![[S::default(); ACC]; rows];
    let mut acc_d = vec![[S::default(); ACC]; rows];
    #[cfg(target_arch = "x86_64")]
    let done = if rows > 0 {
        avx2::sum_and_dot_chunks(a, b, m, &mut acc_s, &mut acc_d)
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let mut sums = Vec::with_capacity(rows);
    let mut dots = Vec::with_capacity(rows);
    for (((ra, rb), mut acc_s), mut acc_d) in a
        .chunks_exact(m.max(1))
        .zip(b.chunks_exact(m.max(1)))
        .zip(acc_s)
        .zip(acc_d)
    {
        let ca = ra[done..].chunks_exact(ACC);
        let cb = rb[done..].chunks_exact(ACC);
        let (ta, tb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..ACC {
                acc_s[i] += x[i];
                acc_d[i] += x[i] * y[i];
            }
        }
        let (mut total_s, mut total_d) = (S::default(), S::default());
        for (&x, &y) in ta.iter().zip(tb) {
            total_s += x;
            total_d += x * y;
        }
        sums.push(combine(acc_s, total_s));
        dots.push(combine(acc_d, total_d));
    }
    (sums, dots)
}

/// Subtracts `c[r]` from every element of row `r` of `x` (rows of `m` elements) in place and
/// returns each row's `dot(x_r, x_r)` of the result, bit for bit as the two passes (`x -= c` for
/// all, then [`dot`]) give it, in one pass and the rows side by side.
pub fn row_center_and_square_sums<S: Scalar>(x: &mut [S], m: usize, c: &[S]) -> Vec<S> {
    let rows = x.len().checked_div(m).unwrap_or(0);
    assert_eq!(
        c.len(),
        rows,
        "row_center_and_square_sums: one centre per row"
    );
    let mut acc = vec![[S::default(); ACC]; rows];
    #[cfg(target_arch = "x86_64")]
    let done = if rows > 0 {
        avx2::center_chunks(x, m, c, &mut acc)
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let mut out = Vec::with_capacity(rows);
    for ((row, mut acc), &c) in x.chunks_exact_mut(m.max(1)).zip(acc).zip(c) {
        let mut chunks = row[done..].chunks_exact_mut(ACC);
        for x in &mut chunks {
            for i in 0..ACC {
                x[i] -= c;
                acc[i] += x[i] * x[i];
            }
        }
        let mut total = S::default();
        for x in chunks.into_remainder() {
            *x -= c;
            total += *x * *x;
        }
        out.push(combine(acc, total));
    }
    out
}

/// The accumulators' final sum, in the order every reduction here uses.
#[inline(always)]
fn combine<S: Scalar>(acc: [S; ACC], total: S) -> S {
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

    /// `[sum(a), dot(a, b), dot(a - c, a - c), sum(a - c)]` as the plain loops compute them (the
    /// code above with the AVX2 chunks left out).
    fn portable<S: Scalar>(a: &[S], b: &[S], c: S) -> [S; 4] {
        let centred: Vec<S> = a.iter().map(|&x| x - c).collect();
        let plain_dot = |a: &[S], b: &[S]| {
            let mut acc = [S::default(); ACC];
            let whole = a.len() / ACC * ACC;
            for i in 0..whole {
                acc[i % ACC] += a[i] * b[i];
            }
            let mut total = S::default();
            for i in whole..a.len() {
                total += a[i] * b[i];
            }
            combine(acc, total)
        };
        let plain_sum = |a: &[S]| {
            let mut acc = [S::default(); ACC];
            let whole = a.len() / ACC * ACC;
            for i in 0..whole {
                acc[i % ACC] += a[i];
            }
            let mut total = S::default();
            for &x in &a[whole..] {
                total += x;
            }
            combine(acc, total)
        };
        [
            plain_sum(a),
            plain_dot(a, b),
            plain_dot(&centred, &centred),
            centred.iter().copied().sum(),
        ]
    }

    /// Every row reduction of `a`, `b` (rows of `m`) and the centres `c` against [`portable`],
    /// compared by `bits`.
    fn check_rows<S: Scalar, B: PartialEq + std::fmt::Debug>(
        a: &[S],
        b: &[S],
        c: &[S],
        m: usize,
        bits: impl Fn(S) -> B,
    ) {
        let rows = c.len();
        let (sums, dots) = row_sums_and_dots(a, b, m);
        let mut centred = a.to_vec();
        let squares = row_center_and_square_sums(&mut centred, m, c);
        let plain_sums = row_sums(a, m);
        for r in 0..rows {
            let rg = r * m..(r + 1) * m;
            let want = portable(&a[rg.clone()], &b[rg.clone()], c[r]);
            let got = [
                sums[r],
                dots[r],
                squares[r],
                centred[rg.clone()].iter().copied().sum(),
            ];
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(bits(*g), bits(*w), "{rows} rows, m = {m}");
            }
            assert_eq!(bits(plain_sums[r]), bits(want[0]));
            assert_eq!(bits(sum(&a[rg.clone()])), bits(want[0]));
            assert_eq!(bits(dot(&a[rg.clone()], &b[rg])), bits(want[1]));
        }
    }

    #[test]
    fn the_simd_chunks_give_the_bits_of_the_plain_loops_on_f32_and_duals_in_rows() {
        use crate::engine::Dual;
        for rows in [1, 3, 4, 5, 9] {
            for m in 1..27 {
                let n = rows * m;
                let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 3.1).collect();
                let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos() - 0.2).collect();
                let c: Vec<f32> = (0..rows).map(|r| 0.37 - r as f32 * 0.1).collect();
                check_rows(&a, &b, &c, m, f32::to_bits);
                let da: Vec<Dual<f32>> = a
                    .iter()
                    .zip(&b)
                    .map(|(&v, &t)| Dual { v, t: t * 1.7 })
                    .collect();
                let db: Vec<Dual<f32>> =
                    b.iter().zip(&a).map(|(&v, &t)| Dual { v, t: -t }).collect();
                let dc: Vec<Dual<f32>> = c.iter().map(|&v| Dual { v, t: -0.11 * v }).collect();
                check_rows(&da, &db, &dc, m, |d: Dual<f32>| {
                    (d.v.to_bits(), d.t.to_bits())
                });
            }
        }
    }
}

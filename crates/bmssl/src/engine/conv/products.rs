//! The matrix products of the Winograd passes (`conv/fast.rs`), with a kernel whose bits do not
//! depend on the CPU's vector width.
//!
//! Why our own: the `gemm` crate's AVX-512 kernels sum in another order than its AVX2 ones, so
//! with them an AVX-512 machine and an AVX2 machine would train to different bits (the project's
//! fingerprints must hold on both), and AVX-512 had to stay off. Here every element of
//! `C = A B` is *one* chain of fused multiply-adds in increasing `k`,
//! `fma(a[i][kd-1], b[kd-1][j], ... fma(a[i][0], b[0][j], 0))` (then added to `C` when
//! accumulating), vectorised across `j`: 8 lanes (AVX2), 16 (AVX-512) or one at a time (the
//! portable code, for `f64` and CPUs without AVX2) compute the same chains, so the same bits, and
//! the AVX-512 build does twice the work per instruction.
//!
//! Operands are strided views ([`MatRef`]): the forward pass multiplies `U V`, the backward pass
//! `U^T dM` and `dM V^T`. The inner loop reads `B` one `[kd][cols]` panel at a time: in place where
//! its rows are contiguous (each row's segment is a cache line or two that stays in L1 across the
//! panel's row blocks; the copy was 4.5% of an Omniglot BMSSL step, and steps without it are 2-3%
//! faster), otherwise packed (transposed on the way through 8 x 8 register transposes where its
//! columns are the contiguous direction; a last, narrower panel copied out). It broadcasts `A`'s
//! values from wherever they are.
//!
//! Where the `gemm` crate's AVX2 kernels did not split the sum (`kd` up to its block depth), they
//! computed the same chains: the recorded fingerprints did not move.

use crate::engine::scalar::{MatRef, Real};

/// Rows of `A` per block of the portable kernel, and columns of `B`.
const ROWS: usize = 4;
const COLS: usize = 8;

/// `c[i * ldc + j] (+)= sum_k a(i, k) b(k, j)` (see the module comment for the order of the sum;
/// `accumulate` adds it to `c`, otherwise it overwrites `c`; an empty sum is zero).
pub fn product<F: Real>(
    c: &mut [F],
    ldc: usize,
    a: MatRef<'_, F>,
    b: MatRef<'_, F>,
    accumulate: bool,
) {
    let (m, n, kd) = (a.rows, b.cols, a.cols);
    assert_eq!(b.rows, kd, "product: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "product: C out of bounds"
    );
    a.check("product: A");
    b.check("product: B");
    #[cfg(target_arch = "x86_64")]
    if let (Some(c32), Some(a32), Some(b32)) = (as_f32_mut(c), f32s(a), f32s(b)) {
        if features::avx512() {
            // SAFETY: the CPU has AVX-512F (checked at run time); bounds checked above.
            return unsafe { simd::product_avx512(c32, ldc, a32, b32, accumulate) };
        }
        if features::avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time); bounds checked above.
            return unsafe { simd::product_avx2(c32, ldc, a32, b32, accumulate) };
        }
    }
    portable(c, ldc, a, b, accumulate)
}

#[cfg(target_arch = "x86_64")]
mod features {
    /// AVX-512F, and the AVX2 + FMA the rest of the crate's fast code uses (detection is cached
    /// by `std`).
    pub fn avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f") && avx2()
    }
    pub fn avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
}

/// The view as `f32`s where `F` is `f32` (the vector kernels are written for it).
#[cfg(target_arch = "x86_64")]
fn f32s<F: 'static>(x: MatRef<'_, F>) -> Option<MatRef<'_, f32>> {
    as_f32(x.data).map(|data| MatRef {
        data,
        rows: x.rows,
        cols: x.cols,
        rs: x.rs,
        cs: x.cs,
    })
}

/// `x` as `f32`s where `F` is `f32` (for the `f32` vector kernels here and in `fast/avx2.rs`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn as_f32<F: 'static>(x: &[F]) -> Option<&[f32]> {
    match crate::engine::scalar::as_f32s(x) {
        Some((v, 1)) => Some(v),
        _ => None,
    }
}

/// [`as_f32`] for a mutable slice.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn as_f32_mut<F: 'static>(x: &mut [F]) -> Option<&mut [f32]> {
    match crate::engine::scalar::as_f32s_mut(x) {
        Some((v, 1)) => Some(v),
        _ => None,
    }
}

/// `A`'s rows `i0..i0 + rows` as `[kd][rows]` into `dst` (the portable kernel).
#[inline(always)]
fn pack_a<F: Copy>(a: &MatRef<'_, F>, i0: usize, rows: usize, dst: &mut [F]) {
    for (k, step) in dst.chunks_exact_mut(rows).take(a.cols).enumerate() {
        for (r, v) in step.iter_mut().enumerate() {
            *v = a.data[(i0 + r) * a.rs + k * a.cs];
        }
    }
}

/// `B`'s columns `j0..j0 + w` as `[kd][cols]` into `dst` (the portable kernel; columns past `w`
/// are left as they are: they only feed outputs that are dropped).
#[inline(always)]
fn pack_b<F: Copy>(b: &MatRef<'_, F>, j0: usize, w: usize, cols: usize, dst: &mut [F]) {
    if b.cs == 1 {
        for (k, row) in dst.chunks_exact_mut(cols).take(b.rows).enumerate() {
            let at = k * b.rs + j0;
            row[..w].copy_from_slice(&b.data[at..at + w]);
        }
    } else {
        for jj in 0..w {
            let col = (j0 + jj) * b.cs;
            for k in 0..b.rows {
                dst[k * cols + jj] = b.data[col + k * b.rs];
            }
        }
    }
}

/// The portable kernel: `ROWS x COLS` blocks, one value at a time.
fn portable<F: Real>(
    c: &mut [F],
    ldc: usize,
    a: MatRef<'_, F>,
    b: MatRef<'_, F>,
    accumulate: bool,
) {
    let (m, n, kd) = (a.rows, b.cols, a.cols);
    let mut ap = vec![F::default(); kd * ROWS];
    let mut bp = vec![F::default(); kd * COLS];
    for j0 in (0..n).step_by(COLS) {
        let w = COLS.min(n - j0);
        pack_b(&b, j0, w, COLS, &mut bp);
        for i0 in (0..m).step_by(ROWS) {
            let h = ROWS.min(m - i0);
            pack_a(&a, i0, h, &mut ap[..kd * h]);
            for r in 0..h {
                for jj in 0..w {
                    let mut s = F::default();
                    for k in 0..kd {
                        s = ap[k * h + r].fma(bp[k * COLS + jj], s);
                    }
                    let x = &mut c[(i0 + r) * ldc + j0 + jj];
                    *x = if accumulate { *x + s } else { s };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
pub(super) use simd::transpose8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::test_values;

    /// `(rows, cols, rs, cs)` of a row-major matrix and of one stored transposed.
    fn layouts(rows: usize, cols: usize) -> [(usize, usize); 2] {
        [(cols + 1, 1), (1, rows + 2)]
    }

    fn view<F>(data: &[F], rows: usize, cols: usize, (rs, cs): (usize, usize)) -> MatRef<'_, F> {
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    const SIZES: [(usize, usize, usize); 8] = [
        (1, 1, 1),
        (4, 24, 64),
        (7, 53, 9),
        (64, 245, 64),
        (5, 3, 0),
        (9, 100, 130),
        (66, 64, 20),
        (128, 17, 3),
    ];

    #[test]
    fn the_product_equals_the_plain_sums_for_every_layout_and_size_and_accumulates_when_asked() {
        for &(m, n, kd) in &SIZES {
            let a = test_values((m + 2) * (kd + 2), 1);
            let b = test_values((kd + 2) * (n + 2), 2);
            let ldc = n + 3;
            let before = test_values(m * ldc, 3);
            for la in layouts(m, kd) {
                for lb in layouts(kd, n) {
                    let (av, bv) = (view(&a, m, kd, la), view(&b, kd, n, lb));
                    for accumulate in [false, true] {
                        let mut c = before.clone();
                        product(&mut c, ldc, av, bv, accumulate);
                        for i in 0..m {
                            for j in 0..n {
                                let s: f64 = (0..kd)
                                    .map(|k| a[i * la.0 + k * la.1] * b[k * lb.0 + j * lb.1])
                                    .sum();
                                let want = if accumulate {
                                    before[i * ldc + j] + s
                                } else {
                                    s
                                };
                                let got = c[i * ldc + j];
                                assert!(
                                    (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                    "({m},{n},{kd}) {la:?} {lb:?} [{i},{j}]: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The f32 bits of every instruction-set build this CPU runs equal the portable kernel's
    /// (one value at a time): AVX2 and AVX-512 machines train to the same bits.
    #[test]
    fn every_instruction_set_build_gives_the_portable_kernels_bits() {
        for &(m, n, kd) in &SIZES {
            let a: Vec<f32> = test_values((m + 2) * (kd + 2), 4)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let b: Vec<f32> = test_values((kd + 2) * (n + 2), 5)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let before: Vec<f32> = test_values(m * n, 6).iter().map(|&v| v as f32).collect();
            for la in layouts(m, kd) {
                for lb in layouts(kd, n) {
                    let (av, bv) = (view(&a, m, kd, la), view(&b, kd, n, lb));
                    for accumulate in [false, true] {
                        let mut want = before.clone();
                        portable(&mut want, n, av, bv, accumulate);
                        #[cfg(target_arch = "x86_64")]
                        {
                            type Kernel = unsafe fn(
                                &mut [f32],
                                usize,
                                MatRef<'_, f32>,
                                MatRef<'_, f32>,
                                bool,
                            );
                            let mut builds: Vec<(&str, Kernel)> = Vec::new();
                            if features::avx2() {
                                builds.push(("avx2", simd::product_avx2));
                            }
                            if features::avx512() {
                                builds.push(("avx512", simd::product_avx512));
                            }
                            for (name, kernel) in builds {
                                let mut c = before.clone();
                                // SAFETY: the build's instruction set was detected just above.
                                unsafe { kernel(&mut c, n, av, bv, accumulate) };
                                assert!(
                                    c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                                    "{name} ({m},{n},{kd}) {la:?} {lb:?}: bits differ"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

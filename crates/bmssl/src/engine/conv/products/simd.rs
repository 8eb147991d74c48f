//! The `f32` kernel of [`super::product`] in x86 vector instructions: the portable kernel's fused
//! multiply-add chains, 8 or 16 columns per instruction, with the accumulators held in registers
//! (the compiler left portable arrays of accumulators in memory).

use crate::engine::scalar::MatRef;
use std::arch::x86_64::*;
use std::cell::Cell;

/// A vector of `W` f32 lanes.
trait Lanes: Copy {
    const W: usize;
    /// Rows of `A` per block and vectors of columns per block: as many accumulators as the
    /// registers hold beside the loaded `B` vectors and one broadcast value.
    const ROWS: usize;
    const VECS: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(a: Self, b: Self) -> Self;
    /// `a * b + c`, rounded once per lane.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
}

impl Lanes for __m256 {
    const W: usize = 8;
    // 16 registers: 6 x 2 accumulators + 2 + 1 (4 x 3 left one accumulator on the stack).
    const ROWS: usize = 6;
    const VECS: usize = 2;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
}

impl Lanes for __m512 {
    const W: usize = 16;
    // 32 registers: 8 x 3 accumulators + 3 + 1.
    const ROWS: usize = 8;
    const VECS: usize = 3;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
}

/// Columns of the widest block, and rows of the tallest.
const MAX_COLS: usize = 48;
const MAX_ROWS: usize = 8;

thread_local! {
    /// The packed panel of `B`, kept per thread (the products run thousands of times on
    /// the same shapes).
    static PACK: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn product_avx512(
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
) {
    product::<__m512>(c, ldc, a, b, accumulate)
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn product_avx2(
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
) {
    product::<__m256>(c, ldc, a, b, accumulate)
}

/// `B` one panel of up to `VECS W` columns at a time (whole panels of contiguous rows in place,
/// the others packed); `A` read in place, in blocks of
/// `ROWS` rows, then of 4, then single rows; full-width blocks store straight into `C`, a narrower
/// last block through a buffer. The caller has checked every bound.
#[inline(always)]
unsafe fn product<L: Lanes>(
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
) {
    let (m, n, kd) = (a.rows, b.cols, a.cols);
    let cols = L::VECS * L::W;
    // Out of the thread-local and back: no closures here, which would not inherit this
    // function's instruction set.
    let mut bp = PACK.take();
    bp.resize(kd * cols, 0.0);
    let mut out = [0.0f32; MAX_ROWS * MAX_COLS];
    let ad = a.data.as_ptr();
    for j0 in (0..n).step_by(cols) {
        let w = cols.min(n - j0);
        // A whole panel of a `B` with contiguous rows is read in place (its `kd` row segments
        // stay in L1 across the row blocks as a packed copy would); otherwise packed.
        let in_place = b.cs == 1 && w == cols;
        if !in_place {
            if b.cs == 1 {
                pack_rows(&b, j0, w, cols, &mut bp);
            } else {
                pack_columns(&b, j0, w, cols, &mut bp);
            }
        }
        let vecs = w.div_ceil(L::W);
        let direct = w == vecs * L::W;
        let mut i0 = 0;
        while i0 < m {
            // Blocks of ROWS, then of 4, then single rows.
            let q = if m - i0 >= L::ROWS {
                L::ROWS
            } else if m - i0 >= 4 {
                4
            } else {
                1
            };
            let ai = ad.add(i0 * a.rs);
            let (dst, ldo, acc) = if direct {
                (c.as_mut_ptr().add(i0 * ldc + j0), ldc, accumulate)
            } else {
                (out.as_mut_ptr(), cols, false)
            };
            let (bpp, ldb) = if in_place {
                (b.data.as_ptr().add(j0), b.rs)
            } else {
                (bp.as_ptr(), cols)
            };
            let st = (a.rs, a.cs);
            macro_rules! run {
                ($q:expr, $v:expr) => {
                    block::<L, $q, $v>(kd, ai, st, bpp, ldb, dst, ldo, acc)
                };
            }
            match (q, vecs) {
                (8, 3) => run!(8, 3),
                (8, 2) => run!(8, 2),
                (8, _) => run!(8, 1),
                (6, 3) => run!(6, 3),
                (6, 2) => run!(6, 2),
                (6, _) => run!(6, 1),
                (4, 3) => run!(4, 3),
                (4, 2) => run!(4, 2),
                (4, _) => run!(4, 1),
                (_, 3) => run!(1, 3),
                (_, 2) => run!(1, 2),
                (_, _) => run!(1, 1),
            }
            if !direct {
                for r in 0..q {
                    let at = (i0 + r) * ldc + j0;
                    for (x, &s) in c[at..at + w].iter_mut().zip(&out[r * cols..r * cols + w]) {
                        *x = if accumulate { *x + s } else { s };
                    }
                }
            }
            i0 += q;
        }
    }
    PACK.set(bp);
}

/// `B`'s columns `j0..j0 + w` (rows contiguous) as `[kd][cols]` into `dst`, eight at a time.
#[inline(always)]
unsafe fn pack_rows(b: &MatRef<'_, f32>, j0: usize, w: usize, cols: usize, dst: &mut [f32]) {
    let body = w / 8 * 8;
    let (src, out) = (b.data.as_ptr(), dst.as_mut_ptr());
    for k in 0..b.rows {
        let (s, d) = (src.add(k * b.rs + j0), out.add(k * cols));
        for jj in (0..body).step_by(8) {
            _mm256_storeu_ps(d.add(jj), _mm256_loadu_ps(s.add(jj)));
        }
        for jj in body..w {
            *d.add(jj) = *s.add(jj);
        }
    }
}

/// `B`'s columns `j0..j0 + w` where they are contiguous (`B = V^T`), transposed into
/// `[kd][cols]` through 8 x 8 register transposes.
#[inline(always)]
unsafe fn pack_columns(b: &MatRef<'_, f32>, j0: usize, w: usize, cols: usize, dst: &mut [f32]) {
    let kd = b.rows;
    let (kb, wb) = (kd / 8 * 8, w / 8 * 8);
    let (src, out) = (b.data.as_ptr(), dst.as_mut_ptr());
    for jj in (0..wb).step_by(8) {
        let col = src.add((j0 + jj) * b.cs);
        for k in (0..kb).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, x) in r.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(col.add(i * b.cs + k * b.rs));
            }
            for (i, x) in transpose8(r).iter().enumerate() {
                _mm256_storeu_ps(out.add((k + i) * cols + jj), *x);
            }
        }
        for k in kb..kd {
            for i in 0..8 {
                *out.add(k * cols + jj + i) = *col.add(i * b.cs + k * b.rs);
            }
        }
    }
    for jj in wb..w {
        let col = src.add((j0 + jj) * b.cs);
        for k in 0..kd {
            *out.add(k * cols + jj) = *col.add(k * b.rs);
        }
    }
}

/// The transpose of an 8 x 8 block held as eight rows.
///
/// # Safety
/// The CPU must have AVX (the caller's `#[target_feature]`).
#[inline(always)]
pub(in crate::engine::conv) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `Q` rows x `VV` vectors: `out[r * ldo + v W + l] (+)= sum_k a[r * ars + k * acs] bp[k ldb + v W + l]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<L: Lanes, const Q: usize, const VV: usize>(
    kd: usize,
    a: *const f32,
    (ars, acs): (usize, usize),
    bp: *const f32,
    ldb: usize,
    out: *mut f32,
    ldo: usize,
    accumulate: bool,
) {
    let mut acc = [[L::zero(); VV]; Q];
    for k in 0..kd {
        let bk = bp.add(k * ldb);
        let mut bv = [L::zero(); VV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = L::load(bk.add(v * L::W));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = L::splat(*a.add(r * ars + k * acs));
            for (x, &bvv) in accr.iter_mut().zip(&bv) {
                *x = L::fma(av, bvv, *x);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (v, &x) in accr.iter().enumerate() {
            let p = out.add(r * ldo + v * L::W);
            let x = if accumulate { L::add(L::load(p), x) } else { x };
            x.store(p);
        }
    }
}

//! The fused batch-norm affine + ReLU + 2x2 max-pool of `pool.rs` on `f32` in AVX2, eight windows
//! (sixteen inputs of each of the window's two rows) at a time; a row's last windows, and rows of
//! fewer than eight (Omniglot's 14-wide and 7-wide planes), with masked loads and stores.
//!
//! The same operations as [`super::window_winner`]: `z = g * x + b` (a multiply then an add, no
//! FMA), the first maximum in the order top-left, top-right, bottom-left, bottom-right
//! (`_mm256_max_ps(z, best)` is `z > best ? z : best`, the scalar select, NaN and signed zeros
//! included), then `max(best, 0)` as the ReLU; so the same bits (tests in `pool.rs`).

use crate::engine::lanes::{first_lanes, store_first, store_first_si256};
use std::arch::x86_64::*;

/// `2 k` inputs of one row from `p` (`k <= 8` windows) as two registers, zeros past the end.
#[inline(always)]
unsafe fn load_pairs(p: *const f32, k: usize) -> (__m256, __m256) {
    if k == 8 {
        return (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    }
    let lo = _mm256_maskload_ps(p, first_lanes((2 * k).min(8)));
    let hi = if k > 4 {
        _mm256_maskload_ps(p.add(8), first_lanes(2 * k - 8))
    } else {
        _mm256_setzero_ps()
    };
    (lo, hi)
}

/// The four corners of eight windows, each as `z = g * x + b`, windows in the lane order
/// `0 1 4 5 2 3 6 7` (what the in-lane shuffles give; [`in_order`] puts them back).
#[inline(always)]
unsafe fn corners(
    g: __m256,
    b: __m256,
    top: (__m256, __m256),
    bottom: (__m256, __m256),
) -> [__m256; 4] {
    let (t0, t1) = (affine(g, b, top.0), affine(g, b, top.1));
    let (b0, b1) = (affine(g, b, bottom.0), affine(g, b, bottom.1));
    [
        _mm256_shuffle_ps::<0b10_00_10_00>(t0, t1),
        _mm256_shuffle_ps::<0b11_01_11_01>(t0, t1),
        _mm256_shuffle_ps::<0b10_00_10_00>(b0, b1),
        _mm256_shuffle_ps::<0b11_01_11_01>(b0, b1),
    ]
}

/// `g * v + b`, rounded after the multiply.
#[inline(always)]
unsafe fn affine(g: __m256, b: __m256, v: __m256) -> __m256 {
    _mm256_add_ps(_mm256_mul_ps(g, v), b)
}

/// Lanes `0 1 4 5 2 3 6 7` back to `0..8`.
#[inline(always)]
unsafe fn in_order(v: __m256) -> __m256 {
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
}

/// One output row of [`super::affine_relu_max_values_into`]: `y[ox]` from the windows of input
/// rows `r0` and `r1` (`2 y.len()` inputs each).
///
/// # Safety
/// The CPU has AVX2; `r0` and `r1` hold at least `2 y.len()` numbers.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn values_row(g: f32, b: f32, r0: &[f32], r1: &[f32], y: &mut [f32]) {
    let ow = y.len();
    assert!(r0.len() >= 2 * ow && r1.len() >= 2 * ow);
    let (gv, bv, zero) = (_mm256_set1_ps(g), _mm256_set1_ps(b), _mm256_setzero_ps());
    let mut ox = 0;
    while ox < ow {
        let k = (ow - ox).min(8);
        let top = load_pairs(r0.as_ptr().add(2 * ox), k);
        let bottom = load_pairs(r1.as_ptr().add(2 * ox), k);
        let [tl, tr, bl, br] = corners(gv, bv, top, bottom);
        let best = _mm256_max_ps(br, _mm256_max_ps(bl, _mm256_max_ps(tr, tl)));
        let out = in_order(_mm256_max_ps(best, zero));
        store_first(y.as_mut_ptr().add(ox), out, k);
        ox += k;
    }
}

/// One output row of [`super::affine_relu_max_into`]: as [`values_row`], and `arg[ox]` = `base +
/// 2 ox + (0, 1, w or w + 1)` for the winning corner (`w` the input row length).
///
/// # Safety
/// As [`values_row`], with `arg.len() == y.len()`.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn winners_row(
    g: f32,
    b: f32,
    r0: &[f32],
    r1: &[f32],
    y: &mut [f32],
    arg: &mut [u32],
    base: u32,
    w: u32,
) {
    let ow = y.len();
    assert!(r0.len() >= 2 * ow && r1.len() >= 2 * ow && arg.len() == ow);
    let (gv, bv, zero) = (_mm256_set1_ps(g), _mm256_set1_ps(b), _mm256_setzero_ps());
    let offsets = corner_offsets(w);
    let lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let mut ox = 0;
    while ox < ow {
        let k = (ow - ox).min(8);
        let top = load_pairs(r0.as_ptr().add(2 * ox), k);
        let bottom = load_pairs(r1.as_ptr().add(2 * ox), k);
        let [tl, tr, bl, br] = corners(gv, bv, top, bottom);
        let (best, at) = first_winner::<false>([tl, tr, bl, br], offsets);
        let out = in_order(_mm256_max_ps(best, zero));
        let first = _mm256_set1_epi32((base as usize + 2 * ox) as u32 as i32);
        let idx = _mm256_add_epi32(
            _mm256_add_epi32(first, lane2),
            _mm256_castps_si256(in_order(at)),
        );
        store_first(y.as_mut_ptr().add(ox), out, k);
        store_first_si256(arg.as_mut_ptr().add(ox).cast(), idx, k);
        ox += k;
    }
}

/// [`winners_row`] on dual numbers (`Dual<f32>`, value and tangent interleaved in `r0`, `r1` and
/// `y`): four windows at a time, each dual in a 64-bit pair of lanes. The winner is chosen by
/// value, and `z = g * x + b` is `Dual`'s arithmetic: `(g.v x.v + b.v, (g.t x.v + g.v x.t) + b.t)`.
///
/// # Safety
/// The CPU has AVX2; `g` and `b` are one dual each, `r0` and `r1` hold at least `2 arg.len()` duals
/// and `y` exactly `arg.len()`.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn winners_row_dual(
    g: [f32; 2],
    b: [f32; 2],
    r0: &[f32],
    r1: &[f32],
    y: &mut [f32],
    arg: &mut [u32],
    base: u32,
    w: u32,
) {
    let ow = arg.len();
    assert!(r0.len() >= 4 * ow && r1.len() >= 4 * ow && y.len() == 2 * ow);
    let (gv, gt) = (_mm256_set1_ps(g[0]), _mm256_set1_ps(g[1]));
    let bb = _mm256_setr_ps(b[0], b[1], b[0], b[1], b[0], b[1], b[0], b[1]);
    let zero = _mm256_setzero_ps();
    let offsets = corner_offsets(w);
    let evens = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    let lane2 = _mm_setr_epi32(0, 2, 4, 6);
    let mut ox = 0;
    while ox < ow {
        let k = (ow - ox).min(4);
        // Two windows' corners are four duals, eight floats: `load_pairs` with 2 k "windows" of
        // floats reads the 4 k floats of k windows.
        let (t0, t1) = load_pairs(r0.as_ptr().add(4 * ox), 2 * k);
        let (b0, b1) = load_pairs(r1.as_ptr().add(4 * ox), 2 * k);
        // Left and right duals of each window, windows in the lane order 0 2 | 1 3.
        let tl = dual_affine(gv, gt, bb, lo_pairs(t0, t1));
        let tr = dual_affine(gv, gt, bb, hi_pairs(t0, t1));
        let bl = dual_affine(gv, gt, bb, lo_pairs(b0, b1));
        let br = dual_affine(gv, gt, bb, hi_pairs(b0, b1));
        let (best, at) = first_winner::<true>([tl, tr, bl, br], offsets);
        let positive = _mm256_moveldup_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(best, zero));
        let out = in_order(_mm256_and_ps(best, positive));
        let at = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
            _mm256_castps_si256(in_order(at)),
            evens,
        ));
        let first = _mm_set1_epi32((base as usize + 2 * ox) as u32 as i32);
        let idx = _mm_add_epi32(_mm_add_epi32(first, lane2), at);
        store_first(y.as_mut_ptr().add(2 * ox), out, 2 * k);
        store_first_si256(
            arg.as_mut_ptr().add(ox).cast(),
            _mm256_castsi128_si256(idx),
            k,
        );
        ox += k;
    }
}

/// The first dual of each 128-bit pair of two registers of duals: `[lo0 hi0 | lo2 hi2]` in duals
/// (the left corners of windows 0 2 | 1 3).
#[inline(always)]
unsafe fn lo_pairs(lo: __m256, hi: __m256) -> __m256 {
    _mm256_castpd_ps(_mm256_unpacklo_pd(
        _mm256_castps_pd(lo),
        _mm256_castps_pd(hi),
    ))
}

/// The second dual of each pair: the right corners.
#[inline(always)]
unsafe fn hi_pairs(lo: __m256, hi: __m256) -> __m256 {
    _mm256_castpd_ps(_mm256_unpackhi_pd(
        _mm256_castps_pd(lo),
        _mm256_castps_pd(hi),
    ))
}

/// The offsets of a window's top-right, bottom-left and bottom-right inputs from its top-left one
/// (`w` the input row length), as floats' bits so that they blend with the values' masks.
#[inline(always)]
unsafe fn corner_offsets(w: u32) -> [__m256; 3] {
    [
        _mm256_castsi256_ps(_mm256_set1_epi32(1)),
        _mm256_castsi256_ps(_mm256_set1_epi32(w as i32)),
        _mm256_castsi256_ps(_mm256_set1_epi32(w as i32 + 1)),
    ]
}

/// The first maximum of each window's four corners (in the order top-left, top-right,
/// bottom-left, bottom-right, as `window_winner`) and the offset of the corner it came from
/// (zero for the top-left). On duals the values are compared and the even lane's verdict goes to
/// the tangent lane beside it.
#[inline(always)]
unsafe fn first_winner<const DUAL: bool>(
    corners: [__m256; 4],
    offsets: [__m256; 3],
) -> (__m256, __m256) {
    let (mut best, mut at) = (corners[0], _mm256_castsi256_ps(_mm256_setzero_si256()));
    for (z, o) in corners[1..].iter().zip(offsets) {
        let better = _mm256_cmp_ps::<_CMP_GT_OQ>(*z, best);
        let better = if DUAL {
            _mm256_moveldup_ps(better)
        } else {
            better
        };
        best = _mm256_blendv_ps(best, *z, better);
        at = _mm256_blendv_ps(at, o, better);
    }
    (best, at)
}

/// `g * x + b` on four duals, `g = (gv, gt)` broadcast, `bb` = `(b.v, b.t)` repeated.
#[inline(always)]
unsafe fn dual_affine(gv: __m256, gt: __m256, bb: __m256, x: __m256) -> __m256 {
    let p = _mm256_mul_ps(gv, x); // (g.v x.v, g.v x.t)
    let q = _mm256_mul_ps(gt, _mm256_moveldup_ps(x)); // (g.t x.v, g.t x.v)
    _mm256_add_ps(_mm256_blend_ps::<0b1010_1010>(p, _mm256_add_ps(q, p)), bb)
}

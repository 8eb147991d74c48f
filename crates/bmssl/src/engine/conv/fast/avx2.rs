//! `f32` loops of the parent module in AVX2 instructions, where the compiler's code for the
//! portable loops was slow. Each computes what its portable loop computes with the same operations
//! in the same order (so the same bits; tests in the parent module compare them), and the parent
//! calls it for `f32` on a CPU with AVX2.
//!
//! - [`tap_sums`], the direct kernel's weight gradient: the nine tap sums of one (output channel,
//!   input channel) pair over the batch, `acc[kk][l] += dy[i + l] * x_pad[off_kk + i + l]`, eight
//!   positions at a time, a multiply then an add. Compiled, the portable loop kept two of the nine
//!   accumulators on the stack (a store-to-load round trip in every iteration's chain), reloaded
//!   `dy` for every tap and checked eighteen bounds per iteration: at 3x84x84 it was 11% of a
//!   BMSSL meta-step.
//! - [`f2_columns`], the first pass of the F(2x2) input transform: the portable loop gathered the
//!   even and odd columns of a padded row one value at a time and stored its results one value at
//!   a time, with a bounds check per store (Omniglot's planes take its four-tile form, whose
//!   stores did not vectorise at all).

use std::arch::x86_64::*;

/// Positions per vector.
pub(super) const W: usize = 8;

/// The tap sums of `direct_backward` for one (output, input) channel pair: `planes` holds
/// the batch's zero-padded input planes of that channel (`plane` values each, `wp` per row), `dyp`
/// the output gradient of that channel in the padded row pitch (`dy_stride` values per image), `len`
/// positions per image. Returns the nine vector accumulators (lanes unsummed) and the nine scalar
/// sums of the positions past the last whole vector, as the portable loop computes them.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tap_sums(
    planes: &[f32],
    plane: usize,
    dyp: &[f32],
    dy_stride: usize,
    n: usize,
    wp: usize,
    len: usize,
) -> ([[f32; W]; 9], [f32; 9]) {
    assert!(n == 0 || (n * plane <= planes.len() && (n - 1) * dy_stride + len <= dyp.len()));
    // The farthest tap (2, 2) of the last position stays in its plane.
    assert!(n == 0 || len + 2 * wp + 2 <= plane);
    let body = len / W * W;
    let mut acc = [_mm256_setzero_ps(); 9];
    let mut rest = [0.0f32; 9];
    for b in 0..n {
        let p = planes.as_ptr().add(b * plane);
        let d = dyp.as_ptr().add(b * dy_stride);
        let (r0, r1, r2) = (p, p.add(wp), p.add(2 * wp));
        let mut i = 0;
        while i < body {
            let dv = _mm256_loadu_ps(d.add(i));
            macro_rules! tap {
                ($kk:expr, $row:expr, $kx:expr) => {
                    acc[$kk] = _mm256_add_ps(
                        acc[$kk],
                        _mm256_mul_ps(dv, _mm256_loadu_ps($row.add(i + $kx))),
                    );
                };
            }
            tap!(0, r0, 0);
            tap!(1, r0, 1);
            tap!(2, r0, 2);
            tap!(3, r1, 0);
            tap!(4, r1, 1);
            tap!(5, r1, 2);
            tap!(6, r2, 0);
            tap!(7, r2, 1);
            tap!(8, r2, 2);
            i += W;
        }
        for i in body..len {
            for (kk, r) in rest.iter_mut().enumerate() {
                *r += *d.add(i) * *p.add((kk / 3) * wp + kk % 3 + i);
            }
        }
    }
    let mut out = [[0.0f32; W]; 9];
    for (o, a) in out.iter_mut().zip(acc) {
        _mm256_storeu_ps(o.as_mut_ptr(), a);
    }
    (out, rest)
}

/// The F(2x2) input transform's first pass (`columns` in the parent, with `lanes` tiles of a tile
/// row at a time, 8 or 4) over image `bi`'s padded plane `row` (`2 th + 2` rows of `wp`):
/// `d[k][j][tile] = sum_l B^T[j][l] x_pad(2 ty + k, 2 tx + l)` for `th x tw` tiles, `d`'s rows
/// `pitch` apart.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f2_columns(
    row: &[f32],
    wp: usize,
    th: usize,
    tw: usize,
    lanes: usize,
    bi: usize,
    d: &mut [f32],
    pitch: usize,
) {
    assert!(lanes == 8 || lanes == 4, "f2_columns: 8 or 4 lanes");
    let groups = tw.div_ceil(lanes);
    // Reads reach column 2 groups lanes + 1 of a row; stores reach lanes values past the image's
    // last tile (the slack of each row of `d`).
    assert!(wp >= 2 * groups * lanes + 2 && row.len() >= (2 * th + 2) * wp);
    assert!(d.len() >= 16 * pitch && (bi + 1) * th * tw + lanes <= pitch);
    let dp = d.as_mut_ptr();
    for y in 0..2 * th + 2 {
        let r = row.as_ptr().add(y * wp);
        // Row y is row k = y - 2 ty of tile rows ty = y / 2 (k = y % 2) and ty = y / 2 - 1
        // (k = y % 2 + 2).
        let mut targets = [(0usize, 0usize); 2];
        let mut nt = 0;
        for (ty, k) in [(y / 2, y % 2), (y / 2, y % 2 + 2)] {
            if let Some(ty) = ty.checked_sub(k / 2) {
                if ty < th {
                    targets[nt] = (ty, k);
                    nt += 1;
                }
            }
        }
        for g in 0..groups {
            let base = 2 * g * lanes;
            if lanes == 8 {
                let (e, o) = deinterleave8(r.add(base));
                let (e1, o1) = deinterleave8(r.add(base + 2));
                let out = [
                    _mm256_sub_ps(e, e1),
                    _mm256_add_ps(o, e1),
                    _mm256_sub_ps(e1, o),
                    _mm256_sub_ps(o, o1),
                ];
                for &(ty, k) in &targets[..nt] {
                    let t0 = (bi * th + ty) * tw + g * lanes;
                    for (j, v) in out.iter().enumerate() {
                        _mm256_storeu_ps(dp.add((k * 4 + j) * pitch + t0), *v);
                    }
                }
            } else {
                let (e, o) = deinterleave4(r.add(base));
                let (e1, o1) = deinterleave4(r.add(base + 2));
                let out = [
                    _mm_sub_ps(e, e1),
                    _mm_add_ps(o, e1),
                    _mm_sub_ps(e1, o),
                    _mm_sub_ps(o, o1),
                ];
                for &(ty, k) in &targets[..nt] {
                    let t0 = (bi * th + ty) * tw + g * lanes;
                    for (j, v) in out.iter().enumerate() {
                        _mm_storeu_ps(dp.add((k * 4 + j) * pitch + t0), *v);
                    }
                }
            }
        }
    }
}

/// The even and odd values of `p[0..16]`.
#[inline(always)]
unsafe fn deinterleave8(p: *const f32) -> (__m256, __m256) {
    let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    // Within each 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6] and [a1 a3 b1 b3 | a5 a7 b5 b7];
    // then the 64-bit pairs in the order 0, 2, 1, 3.
    let even = _mm256_shuffle_ps::<0x88>(a, b);
    let odd = _mm256_shuffle_ps::<0xDD>(a, b);
    // (No closure here: it would not inherit the caller's AVX2.)
    (
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(even))),
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(odd))),
    )
}

/// The even and odd values of `p[0..8]`.
#[inline(always)]
unsafe fn deinterleave4(p: *const f32) -> (__m128, __m128) {
    let (a, b) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
    (_mm_shuffle_ps::<0x88>(a, b), _mm_shuffle_ps::<0xDD>(a, b))
}

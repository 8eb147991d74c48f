//! `f32` loops of the parent module in AVX2 instructions, where the compiler's code for the
//! portable loops was slow. Each computes what its portable loop computes with the same operations
//! in the same order (so the same bits; tests in `fast.rs` and `winograd4.rs` compare them), and
//! the parent calls it for `f32` on a CPU with AVX2. Over 400 lines because each kernel is the
//! twin of a portable loop in the parent, and they share the vector helpers at the end.
//!
//! - [`tap_sums`], the direct kernel's weight gradient: the nine tap sums of one (output channel,
//!   input channel) pair over the batch, `acc[kk][l] += dy[i + l] * x_pad[off_kk + i + l]`, eight
//!   positions at a time, a multiply then an add. Compiled, the portable loop kept two of the nine
//!   accumulators on the stack (a store-to-load round trip in every iteration's chain), reloaded
//!   `dy` for every tap and checked eighteen bounds per iteration: at 3x84x84 it was 11% of a
//!   BMSSL meta-step.
//! - [`direct_forward`], the direct kernel's forward: four output channels and eight positions
//!   at a time with their sums in registers, written straight into the output.
//! - [`f2_columns`], the first pass of the F(2x2) input transform: the portable loop gathered the
//!   even and odd columns of a padded row one value at a time and stored its results one value at
//!   a time, with a bounds check per store (Omniglot's planes take its four-tile form, whose
//!   stores did not vectorise at all).
//! - [`f2_input`], the whole F(2x2) input transform of one image plane in one pass, read straight
//!   from the plane with masked loads: the two passes wrote and reread 16 intermediate planes, and
//!   first copied each image row into a padded plane (a `memcpy` call per row). One call on
//!   5 images x 64 channels at 14x14: 101-148 -> 44-46 us (2.3-3.2x); at 10x10 2.4x, at 5x5
//!   1.4x. At 7x7 `V`'s planes fall in one L1 set and the two passes stay
//!   ([`f2_input_fits_l1`]).
//! - [`pad_rows`], the two passes' copy of an image plane into its zero-padded plane (7x7): eight
//!   values at a time instead of a `memcpy` call per row of 7 (about 1% of an Omniglot step).
//! - [`f4_column_group`], the first pass of the F(4x4) input transform: the portable loop gathered
//!   each tile's six values one at a time (a stride-4 gather), with bounds checks.
//! - [`f4_input`], the whole F(4x4) input transform of one image plane in one pass, as
//!   [`f2_input`] for F(2x2): the two passes wrote and reread 36 intermediate rows of the chunk's
//!   tiles, after a padded copy of each plane (a `memcpy` call per row). One call on 64
//!   channels: 42x42 1.5x faster, 21x21 1.6-1.8x ([`f4_in_one_pass`]).
//! - [`f4_output_adjoint`], the F(4x4) output transform's adjoint in one pass per plane of `dY`:
//!   the portable loop gathered each tile's values with a scalar `step_by(4)` into 16
//!   intermediate planes, after zero-filling them (one call: 42x42 1.6x faster, 21x21 1.8x).
//! - [`f2_output`], the F(2x2) output transform in one pass per group of eight tiles: the
//!   portable loop's two passes over whole planes of intermediates and its scalar interleave of
//!   the output rows (a small gain: the pass is bound by reading `M`).
//! - [`f2_input_adjoint`], the F(2x2) input transform's adjoint in one pass per image plane: the
//!   portable loop's column pass ran one tile at a time through a padded row, with scalar adds.
//! - [`f2_output_adjoint`], the F(2x2) output transform's adjoint in one pass per output-gradient
//!   plane: the portable loop gathered each tile's four values one at a time (with a bounds check
//!   each) into intermediate planes, then made two more passes over planes.
//! - [`f2_weights`], the F(2x2) weight transform: eight kernels' nine taps by gathers instead of
//!   72 scalar loads (its share of an Omniglot BMSSL step went from ~3.9% to ~3.1%).
//! - [`f4_rows`], the second pass of the F(4x4) input transform: the portable loop computed each
//!   of its 72 load and store addresses per group of tiles with a bounds check, from indices kept
//!   on the stack (3x84x84 BMSSL and MetaSSL steps 2.5-8% faster without it).
//! - [`f4_output_tiles`], [`f4_output_adjoint_tiles`] and [`f4_input_adjoint_tiles`], the F(4x4)
//!   tile transforms of the forward's output and the backward's two adjoints, for the same reason
//!   (3x84x84 steps another 4-7% faster).

use crate::engine::conv::products::transpose8;
use crate::engine::lanes::{first_lanes, store_first};
use std::arch::x86_64::*;

/// Positions per vector.
pub(super) const W: usize = 8;

/// The tap sums of `direct_backward` for one (output, input) channel pair: `planes` holds the
/// batch's zero-padded input planes of that channel (`plane` values each, `wp` per row), `dyp` the
/// output gradient of that channel in the padded row pitch (`dy_stride` values per image), `len`
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

/// Output channels per group of [`direct_forward`]: four accumulators and four partial sums in
/// registers beside the three input vectors of a kernel row.
const DIRECT_GROUP: usize = 4;

/// The direct kernel's forward (`direct_forward_padded` in the parent) into `y`
/// `[C_out, N, H, W]` (every value written), from the zero-padded planes `xp`
/// `[C_in, N, H+2, W+2]`: for each output channel, image and position, `bias + t_0 + t_1 + ...`
/// over the input channels, where `t_ci = (r_0 + r_1) + r_2` and
/// `r_ky = (k_ky0 x_0 + k_ky1 x_1) + k_ky2 x_2` (a multiply, then an add: the portable loop's
/// operations in its order, so its bits). Eight positions of a row and four output channels at a
/// time, with the sums in registers: the portable loop ran one output channel at a time through a
/// row-pitch buffer (29 KB at 84x84, beside a 30 KB plane, so each of its passes streamed both
/// from L2) and then copied the buffer's rows out. A row's last eight positions end at its last
/// column (they overlap the group before and rewrite it with the same values), so every load stays
/// in its row's padded plane. Needs `W >= 8`.
///
/// One call, 3 -> 64 channels (`direct_forward_timings` in the parent): 5 images of 84x84
/// 44 -> 54 GFLOP/s, 15 images 39 -> 52, 28x28 46 -> 50. It is bound by loads (two 32-byte
/// loads a cycle on Zen 3: nine input and 36 weight vectors per 36 multiplies and input channel),
/// not by the multiplies; without fused multiply-adds (they would change the bits) each
/// multiply-add is two instructions.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn direct_forward(
    xp: &[f32],
    weight: &[f32],
    bias: &[f32],
    (c_in, c_out, n, h, w): (usize, usize, usize, usize, usize),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let (hp, wp) = (h + 2, w + 2);
    assert!(w >= W, "direct_forward: rows shorter than a vector");
    assert!(xp.len() >= c_in * n * hp * wp && weight.len() >= c_out * c_in * 9);
    assert!(bias.len() >= c_out && y.len() >= c_out * n * h * w);
    let mut o0 = 0;
    while o0 < c_out {
        let g = DIRECT_GROUP.min(c_out - o0);
        let args = (xp, weight, bias, (c_in, n, h, w), o0);
        match g {
            4 => direct_group::<4>(args, y),
            3 => direct_group::<3>(args, y),
            2 => direct_group::<2>(args, y),
            _ => direct_group::<1>(args, y),
        }
        o0 += g;
    }
}

/// [`direct_forward`]'s output channels `o0..o0 + G`.
#[inline(always)]
#[allow(clippy::type_complexity)]
unsafe fn direct_group<const G: usize>(
    (xp, weight, bias, (c_in, n, h, w), o0): (
        &[f32],
        &[f32],
        &[f32],
        (usize, usize, usize, usize),
        usize,
    ),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let (hp, wp) = (h + 2, w + 2);
    // The group's weights, each broadcast to a vector: a multiply then reads its weight as a
    // memory operand (a broadcast instruction per multiply left the loop bound by the front end).
    let kv: Vec<__m256> = (0..G * c_in * 9)
        .map(|i| _mm256_set1_ps(weight[o0 * c_in * 9 + i]))
        .collect();
    let (xp, k, yp) = (xp.as_ptr(), kv.as_ptr(), y.as_mut_ptr().cast::<f32>());
    for b in 0..n {
        for oy in 0..h {
            let mut ox = 0;
            loop {
                let at = ox.min(w - W);
                let mut acc: [__m256; G] = std::array::from_fn(|g| _mm256_set1_ps(bias[o0 + g]));
                for ci in 0..c_in {
                    let base = xp.add(((ci * n + b) * hp + oy) * wp + at);
                    let mut t = [_mm256_setzero_ps(); G];
                    for ky in 0..3 {
                        let row = base.add(ky * wp);
                        let x0 = _mm256_loadu_ps(row);
                        let x1 = _mm256_loadu_ps(row.add(1));
                        let x2 = _mm256_loadu_ps(row.add(2));
                        for (g, tg) in t.iter_mut().enumerate() {
                            let kk = k.add((g * c_in + ci) * 9 + ky * 3);
                            let r = _mm256_add_ps(
                                _mm256_add_ps(
                                    _mm256_mul_ps(*kk, x0),
                                    _mm256_mul_ps(*kk.add(1), x1),
                                ),
                                _mm256_mul_ps(*kk.add(2), x2),
                            );
                            *tg = if ky == 0 { r } else { _mm256_add_ps(*tg, r) };
                        }
                    }
                    for (a, tg) in acc.iter_mut().zip(t) {
                        *a = _mm256_add_ps(*a, tg);
                    }
                }
                for (g, a) in acc.into_iter().enumerate() {
                    _mm256_storeu_ps(yp.add((((o0 + g) * n + b) * h + oy) * w + at), a);
                }
                if at + W >= w {
                    break;
                }
                ox += W;
            }
        }
    }
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
                let out = f2_columns8([
                    _mm256_loadu_ps(r.add(base)),
                    _mm256_loadu_ps(r.add(base + 8)),
                    _mm256_loadu_ps(r.add(base + 2)),
                    _mm256_loadu_ps(r.add(base + 10)),
                ]);
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

/// The F(2x2) input transform (`input_transform` in the parent) of one image plane `img`
/// (`h x w`, unpadded) in one pass: for each group of up to eight tiles of a tile row, the four
/// rows of their 4x4 input tiles read straight from `img` (masked loads give the zero padding on
/// every side), the column pass (`columns`' operations), then the row pass (the parent's `map2`
/// operations, `v[j] = d0 - d2`, `v[4 + j] = d1 + d2`, `v[8 + j] = d2 - d1`, `v[12 + j] = d1 - d3`).
/// The same operations on the same values as the two passes, so the same bits, without their
/// intermediate planes and the padded copy of the image. The column results of a tile row's last
/// two input rows are its successor's first two (the rows tiles share), computed once.
///
/// Plane `xi`'s tiles go to `v[at + xi * stride..][..th tw]`, in whole vectors where the lanes
/// past a group land on tiles stored later ([`stored_lanes`]: the next rows', then the `after`
/// values past the plane, the next images' tiles). The parent calls it where `stride` spreads the 16 planes over enough L1
/// sets ([`f2_input_fits_l1`]).
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f2_input(
    img: &[f32],
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    v: &mut [f32],
    at: usize,
    stride: usize,
    after: usize,
) {
    let tiles = th * tw;
    assert!(img.len() >= h * w && th == h.div_ceil(2) && tw == w.div_ceil(2));
    assert!(tiles == 0 || at + 15 * stride + tiles + after <= v.len());
    let (src, out) = (img.as_ptr(), v.as_mut_ptr().add(at));
    for g in (0..tw.div_ceil(W)).rev() {
        // Tile tx reads padded columns 2 tx .. 2 tx + 3, image columns 2 tx - 1 .. 2 tx + 2: the
        // four loads of a padded row start at image columns c0 + {0, 8, 2, 10}.
        let c0 = (2 * g * W) as isize - 1;
        // (No closure or iterator adaptor: a closure would not inherit this function's AVX2.)
        let loads = [
            Load::new(c0, w),
            Load::new(c0 + 8, w),
            Load::new(c0 + 2, w),
            Load::new(c0 + 10, w),
        ];
        let (mut d0, mut d1) = (
            f2_row_columns(src, h, w, 0, &loads),
            f2_row_columns(src, h, w, 1, &loads),
        );
        for ty in 0..th {
            let d2 = f2_row_columns(src, h, w, 2 * ty + 2, &loads);
            let d3 = f2_row_columns(src, h, w, 2 * ty + 3, &loads);
            let n = stored_lanes(th, tw, ty, g, after);
            let t = out.add(ty * tw + g * W);
            for j in 0..4 {
                store_first(t.add(j * stride), _mm256_sub_ps(d0[j], d2[j]), n);
                store_first(t.add((4 + j) * stride), _mm256_add_ps(d1[j], d2[j]), n);
                store_first(t.add((8 + j) * stride), _mm256_sub_ps(d2[j], d1[j]), n);
                store_first(t.add((12 + j) * stride), _mm256_sub_ps(d1[j], d3[j]), n);
            }
            (d0, d1) = (d2, d3);
        }
    }
}

/// How many of its eight lanes the one passes that write planes of tiles ([`f2_input`],
/// [`f4_input`], [`f2_output_adjoint`], [`f4_output_adjoint`]) store for group `g` (tiles
/// `8 g..`) of tile row `ty`: all eight where the tiles its lanes reach past its own are stored
/// later, otherwise its own only (partial stores cost more). Those tiles are the next rows' first
/// ones (each kernel runs a row's groups last first, so the first group stores them afterwards;
/// a single group stores them in the next rows), then the `after` tiles past the plane's (the
/// next images', stored by later calls).
#[inline(always)]
fn stored_lanes(th: usize, tw: usize, ty: usize, g: usize, after: usize) -> usize {
    let count = W.min(tw - g * W);
    if (th - ty - 1) * tw + after >= W - count {
        W
    } else {
        count
    }
}

/// Whether [`f2_input`]'s sixteen store streams, `stride` floats apart, spread over at least
/// four of L1's 64 sets (at most four lines a set in its eight ways). Where they do not (a
/// stride a multiple of 4 KiB: `V` at 7x7, 16 tiles an image), each group's stores missed L1 and
/// it ran slower than the two passes, which write one plane at a time.
pub(super) fn f2_input_fits_l1(stride: usize) -> bool {
    let step = (stride * 4 / 64) % 64;
    64 / gcd(step, 64) >= 4
}

/// Whether [`f4_input`] and [`f4_output_adjoint`] are the faster way for planes of `tw` tile
/// columns: where they fill most of their eight lanes. One call of the input transform on 64
/// channels (`f4_one_pass_timings` in `winograd4.rs`, 2-core AVX2 EPYC), two passes against one,
/// us: 42x42 one image 130 / 88, 21x21 three images 165 / 103, 20x20 35 / 24, 24x24 four images
/// 281 / 244 (its 36 planes 4 KiB apart, in one L1 set); with four tile columns (16x16) half the
/// lanes are empty and it lost, 146 / 173 on four images. The output adjoint's timings are alike.
pub(super) fn f4_in_one_pass(tw: usize) -> bool {
    tw > W / 2
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One load of eight values of an image row (`w` values) from column `start` ([`f2_input`]'s
/// padded rows start one column before the image), with the lanes inside the row in `mask` (all
/// of them when `full`): the lanes outside read as zero.
#[derive(Clone, Copy)]
struct Load {
    start: isize,
    full: bool,
    mask: __m256i,
}

impl Load {
    /// The load from column `start` of rows `w` values long.
    #[inline(always)]
    unsafe fn new(start: isize, w: usize) -> Load {
        let col = _mm256_add_epi32(
            _mm256_set1_epi32(start as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        Load {
            start,
            full: start >= 0 && start as usize + W <= w,
            // 0 <= col < w
            mask: _mm256_andnot_si256(
                _mm256_cmpgt_epi32(_mm256_setzero_si256(), col),
                _mm256_cmpgt_epi32(_mm256_set1_epi32(w as i32), col),
            ),
        }
    }

    /// The eight values from `row` (an image row's first value).
    #[inline(always)]
    unsafe fn read(&self, row: *const f32) -> __m256 {
        // (`wrapping_offset`: a masked-out lane may lie before or past the plane.)
        let p = row.wrapping_offset(self.start);
        if self.full {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, self.mask)
        }
    }
}

/// The column pass (`columns`' operations) of padded row `y` (image row `y - 1`; zeros outside
/// the image) for one group of eight tiles.
#[inline(always)]
unsafe fn f2_row_columns(
    src: *const f32,
    h: usize,
    w: usize,
    y: usize,
    loads: &[Load; 4],
) -> [__m256; 4] {
    let mut r = [_mm256_setzero_ps(); 4];
    if (1..=h).contains(&y) {
        let row = src.add((y - 1) * w);
        for (x, l) in r.iter_mut().zip(loads) {
            *x = l.read(row);
        }
    }
    f2_columns8(r)
}

/// The column pass of eight tiles (`columns`' operations) from a padded row's values at the
/// tiles' first column, `r[0..2]` (16 values), and two columns on, `r[2..4]`.
#[inline(always)]
unsafe fn f2_columns8(r: [__m256; 4]) -> [__m256; 4] {
    let (e, o) = deinterleave8_of(r[0], r[1]);
    let (e1, o1) = deinterleave8_of(r[2], r[3]);
    [
        _mm256_sub_ps(e, e1),
        _mm256_add_ps(o, e1),
        _mm256_sub_ps(e1, o),
        _mm256_sub_ps(o, o1),
    ]
}

/// The even and odd values of the sixteen values `a` then `b`.
#[inline(always)]
unsafe fn deinterleave8_of(a: __m256, b: __m256) -> (__m256, __m256) {
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

/// `pad_rows` in the parent: image plane `img` (`h x w`) into rows 1..=h, columns 1..=w of the
/// zero-padded plane `row` (`wp` wide), eight values at a time: the copies of 7 or 14 values
/// were `memcpy` calls. Each chunk is loaded whole where it lies inside `img` (the lanes past the
/// image row zeroed), masked otherwise, and stored whole: the zeros land on the row's padding or
/// on the next row's values, copied after it. The values in the padding stay zero.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pad_rows(img: &[f32], h: usize, w: usize, row: &mut [f32], wp: usize) {
    assert!(img.len() >= h * w && wp >= w + 2 && row.len() >= (h + 2) * wp);
    let (src, dst) = (img.as_ptr(), row.as_mut_ptr());
    for y in 0..h {
        for c in (0..w).step_by(W) {
            let n = W.min(w - c);
            let (from, to) = (y * w + c, (y + 1) * wp + 1 + c);
            let mask = first_lanes(n);
            let v = if from + W <= h * w {
                _mm256_and_ps(_mm256_loadu_ps(src.add(from)), _mm256_castsi256_ps(mask))
            } else {
                _mm256_maskload_ps(src.add(from), mask)
            };
            if to + W <= row.len() {
                _mm256_storeu_ps(dst.add(to), v);
            } else {
                for k in 0..n {
                    *dst.add(to + k) = *src.add(from + k);
                }
            }
        }
    }
}

/// The even and odd values of `p[0..8]`.
#[inline(always)]
unsafe fn deinterleave4(p: *const f32) -> (__m128, __m128) {
    let (a, b) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
    (_mm_shuffle_ps::<0x88>(a, b), _mm_shuffle_ps::<0xDD>(a, b))
}

/// The F(4x4) input transform's first pass over one padded row (`column_group` in `winograd4.rs`)
/// for `lanes` (8 or 4) tiles from tile column `tx0`: the six values `row[4 tx + k]` of each tile
/// (a 4-way deinterleave and two shifted copies), then `input_1d`'s operations in its order,
/// stored at `d[(k * 6 + j) * pitch + t0..]` for each `(k, t0)` of `targets`.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f4_column_group(
    row: &[f32],
    lanes: usize,
    tx0: usize,
    targets: &[(usize, usize)],
    d: &mut [f32],
    pitch: usize,
) {
    assert!(lanes == 8 || lanes == 4, "f4_column_group: 8 or 4 lanes");
    let base = 4 * tx0;
    // Reads reach row[base + 4 lanes + 1].
    assert!(base + 4 * lanes + 2 <= row.len());
    for &(k, t0) in targets {
        assert!(k < 6 && (k * 6 + 5) * pitch + t0 + lanes <= d.len() && t0 + lanes <= pitch);
    }
    let (r, dp) = (row.as_ptr().add(base), d.as_mut_ptr());
    if lanes == 8 {
        // Tile l reads r[4l..4l + 6]; as 128-bit rows: A0 = [t0 | t1], ..., A3 = [t6 | t7].
        let a = [
            _mm256_loadu_ps(r),
            _mm256_loadu_ps(r.add(8)),
            _mm256_loadu_ps(r.add(16)),
            _mm256_loadu_ps(r.add(24)),
        ];
        let [p0, p1, p2, p3] = quads8(a);
        // r[4l + 4] and r[4l + 5]: p0 and p1 one tile on, the last lane from past the group.
        let next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
        let p4 = _mm256_blend_ps::<0x80>(
            _mm256_permutevar8x32_ps(p0, next),
            _mm256_set1_ps(*r.add(32)),
        );
        let p5 = _mm256_blend_ps::<0x80>(
            _mm256_permutevar8x32_ps(p1, next),
            _mm256_set1_ps(*r.add(33)),
        );
        let out = input_1d8([p0, p1, p2, p3, p4, p5]);
        for &(k, t0) in targets {
            for (j, v) in out.iter().enumerate() {
                _mm256_storeu_ps(dp.add((k * 6 + j) * pitch + t0), *v);
            }
        }
    } else {
        let (a0, a1) = (_mm_loadu_ps(r), _mm_loadu_ps(r.add(4)));
        let (a2, a3) = (_mm_loadu_ps(r.add(8)), _mm_loadu_ps(r.add(12)));
        let (t0, t1) = (_mm_unpacklo_ps(a0, a1), _mm_unpackhi_ps(a0, a1));
        let (t2, t3) = (_mm_unpacklo_ps(a2, a3), _mm_unpackhi_ps(a2, a3));
        let p0 = _mm_movelh_ps(t0, t2);
        let p1 = _mm_movehl_ps(t2, t0);
        let p2 = _mm_movelh_ps(t1, t3);
        let p3 = _mm_movehl_ps(t3, t1);
        // [p[1], p[2], p[3], x]: the lanes shifted down by one, x past the group (a macro, not a
        // closure, which would not inherit this function's AVX2).
        macro_rules! shift {
            ($p:expr, $x:expr) => {
                _mm_castsi128_ps(_mm_alignr_epi8::<4>(
                    _mm_castps_si128(_mm_set1_ps($x)),
                    _mm_castps_si128($p),
                ))
            };
        }
        let p4 = shift!(p0, *r.add(16));
        let p5 = shift!(p1, *r.add(17));
        let (c4, c5, c2) = (_mm_set1_ps(4.0), _mm_set1_ps(5.0), _mm_set1_ps(2.0));
        let u0 = _mm_sub_ps(p4, _mm_mul_ps(p2, c4));
        let u1 = _mm_sub_ps(p3, _mm_mul_ps(p1, c4));
        let u2 = _mm_sub_ps(p4, p2);
        let u3 = _mm_mul_ps(_mm_sub_ps(p3, p1), c2);
        let out = [
            _mm_add_ps(_mm_sub_ps(_mm_mul_ps(p0, c4), _mm_mul_ps(p2, c5)), p4),
            _mm_add_ps(u0, u1),
            _mm_sub_ps(u0, u1),
            _mm_add_ps(u2, u3),
            _mm_sub_ps(u2, u3),
            _mm_add_ps(_mm_sub_ps(_mm_mul_ps(p1, c4), _mm_mul_ps(p3, c5)), p5),
        ];
        for &(k, t0) in targets {
            for (j, v) in out.iter().enumerate() {
                _mm_storeu_ps(dp.add((k * 6 + j) * pitch + t0), *v);
            }
        }
    }
}

/// `input_1d` of `winograd4.rs` on eight lanes, its operations in its order: with
/// `t0 = d4 - 4 d2`, `t1 = d3 - 4 d1`, `t2 = d4 - d2`, `t3 = 2 (d3 - d1)`, the values
/// `[(4 d0 - 5 d2) + d4, t0 + t1, t0 - t1, t2 + t3, t2 - t3, (4 d1 - 5 d3) + d5]`.
#[inline(always)]
unsafe fn input_1d8(p: [__m256; 6]) -> [__m256; 6] {
    let (c4, c5, c2) = (
        _mm256_set1_ps(4.0),
        _mm256_set1_ps(5.0),
        _mm256_set1_ps(2.0),
    );
    let u0 = _mm256_sub_ps(p[4], _mm256_mul_ps(p[2], c4));
    let u1 = _mm256_sub_ps(p[3], _mm256_mul_ps(p[1], c4));
    let u2 = _mm256_sub_ps(p[4], p[2]);
    let u3 = _mm256_mul_ps(_mm256_sub_ps(p[3], p[1]), c2);
    [
        _mm256_add_ps(
            _mm256_sub_ps(_mm256_mul_ps(p[0], c4), _mm256_mul_ps(p[2], c5)),
            p[4],
        ),
        _mm256_add_ps(u0, u1),
        _mm256_sub_ps(u0, u1),
        _mm256_add_ps(u2, u3),
        _mm256_sub_ps(u2, u3),
        _mm256_add_ps(
            _mm256_sub_ps(_mm256_mul_ps(p[1], c4), _mm256_mul_ps(p[3], c5)),
            p[5],
        ),
    ]
}

/// The F(4x4) input transform (`input_transform` in `winograd4.rs`) of one image plane `img`
/// (`h x w`, unpadded) in one pass: for each group of eight tiles of a tile row, the six rows of
/// their 6x6 input tiles read straight from `img` (masked loads give the zero padding on every
/// side), the first pass (`f4_column_group`'s operations) on each, then the second
/// (`f4_rows`' operations) on the six results: the same operations on the same values as the two
/// passes, so the same bits, without their 36 intermediate rows and the padded copy of the image.
/// A tile row's last two input rows are its successor's first two, their first pass done once.
///
/// Plane `xi`'s tiles go to `v[at + xi * stride..][..th tw]`, stored as [`f2_input`] stores
/// them ([`stored_lanes`]).
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f4_input(
    img: &[f32],
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    v: &mut [f32],
    at: usize,
    stride: usize,
    after: usize,
) {
    let tiles = th * tw;
    assert!(img.len() >= h * w && th == h.div_ceil(4) && tw == w.div_ceil(4));
    assert!(tiles == 0 || at + 35 * stride + tiles + after <= v.len());
    let (src, out) = (img.as_ptr(), v.as_mut_ptr().add(at));
    for g in (0..tw.div_ceil(W)).rev() {
        // Tile tx reads padded columns 4 tx .. 4 tx + 5, image columns 4 tx - 1 .. 4 tx + 4: the
        // group's 34 values of a row start at image column c0, read as five loads of eight.
        let c0 = (4 * g * W) as isize - 1;
        let loads = [
            Load::new(c0, w),
            Load::new(c0 + 8, w),
            Load::new(c0 + 16, w),
            Load::new(c0 + 24, w),
            Load::new(c0 + 32, w),
        ];
        let mut d = [[_mm256_setzero_ps(); 6]; 6];
        d[0] = f4_row_columns(src, h, w, 0, &loads);
        d[1] = f4_row_columns(src, h, w, 1, &loads);
        for ty in 0..th {
            for (k, dk) in d.iter_mut().enumerate().skip(2) {
                *dk = f4_row_columns(src, h, w, 4 * ty + k, &loads);
            }
            let n = stored_lanes(th, tw, ty, g, after);
            let t = out.add(ty * tw + g * W);
            // (Indices, not iterators: column j of all six rows.)
            #[allow(clippy::needless_range_loop)]
            for j in 0..6 {
                let col = input_1d8([d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]]);
                for (i, val) in col.into_iter().enumerate() {
                    store_first(t.add((i * 6 + j) * stride), val, n);
                }
            }
            (d[0], d[1]) = (d[4], d[5]);
        }
    }
}

/// The first pass (`f4_column_group`'s operations) of padded row `y` (image row `y - 1`; zeros
/// outside the image) for one group of eight tiles.
#[inline(always)]
unsafe fn f4_row_columns(
    src: *const f32,
    h: usize,
    w: usize,
    y: usize,
    loads: &[Load; 5],
) -> [__m256; 6] {
    let mut a = [_mm256_setzero_ps(); 5];
    if (1..=h).contains(&y) {
        let row = src.add((y - 1) * w);
        for (x, l) in a.iter_mut().zip(loads) {
            *x = l.read(row);
        }
    }
    // The tiles' first four values, then their last two from one tile on (the last lane's from
    // a[4]).
    let [p0, p1, p2, p3] = quads8([a[0], a[1], a[2], a[3]]);
    let next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    let p4 = _mm256_blend_ps::<0x80>(
        _mm256_permutevar8x32_ps(p0, next),
        _mm256_permutevar8x32_ps(a[4], _mm256_set1_epi32(0)),
    );
    let p5 = _mm256_blend_ps::<0x80>(
        _mm256_permutevar8x32_ps(p1, next),
        _mm256_permutevar8x32_ps(a[4], _mm256_set1_epi32(1)),
    );
    input_1d8([p0, p1, p2, p3, p4, p5])
}

/// The 32 values `a` (four vectors) as four vectors of their quads: lane `l` of result `q` is
/// value `4 l + q`. (As 128-bit rows, `[t0 | t1]` ... `[t6 | t7]` become `[t0 | t4]`, `[t1 | t5]`,
/// `[t2 | t6]`, `[t3 | t7]`, then a 4x4 transpose in each half.)
#[inline(always)]
unsafe fn quads8(a: [__m256; 4]) -> [__m256; 4] {
    let b0 = _mm256_permute2f128_ps::<0x20>(a[0], a[2]);
    let b1 = _mm256_permute2f128_ps::<0x31>(a[0], a[2]);
    let b2 = _mm256_permute2f128_ps::<0x20>(a[1], a[3]);
    let b3 = _mm256_permute2f128_ps::<0x31>(a[1], a[3]);
    let (t0, t1) = (_mm256_unpacklo_ps(b0, b1), _mm256_unpackhi_ps(b0, b1));
    let (t2, t3) = (_mm256_unpacklo_ps(b2, b3), _mm256_unpackhi_ps(b2, b3));
    [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    ]
}

/// The F(4x4) output transform's adjoint (`output_transform_adjoint` in `winograd4.rs`) of one
/// output-gradient plane `dy` (`h x w`) in one pass: for each group of eight tiles of a tile row,
/// the four rows of their 4x4 tiles read straight from `dy` (masked loads give zeros past the
/// edges), split into quads ([`quads8`]), then `f4_output_adjoint_tiles`' operations: the same
/// operations on the same values as the gather and the tile pass, so the same bits, without the
/// scalar gather into 16 intermediate planes.
///
/// Plane `xi` of `dM` goes to `dm[at + xi * stride..][..th tw]`, stored as [`f2_input`] stores
/// `V` ([`stored_lanes`]).
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f4_output_adjoint(
    dy: &[f32],
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
    dm: &mut [f32],
    at: usize,
    stride: usize,
    after: usize,
) {
    let tiles = th * tw;
    assert!(dy.len() >= h * w && th == h.div_ceil(4) && tw == w.div_ceil(4));
    assert!(tiles == 0 || at + 35 * stride + tiles + after <= dm.len());
    let (src, out) = (dy.as_ptr(), dm.as_mut_ptr().add(at));
    for g in (0..tw.div_ceil(W)).rev() {
        let c0 = (4 * g * W) as isize;
        let loads = [
            Load::new(c0, w),
            Load::new(c0 + 8, w),
            Load::new(c0 + 16, w),
            Load::new(c0 + 24, w),
        ];
        for ty in 0..th {
            // e[p][j] = sum_q dY[p][q] A^T[q][j]
            let mut e = [[_mm256_setzero_ps(); 6]; 4];
            for (p, ep) in e.iter_mut().enumerate() {
                let mut a = [_mm256_setzero_ps(); 4];
                let oy = 4 * ty + p;
                if oy < h {
                    let row = src.add(oy * w);
                    for (x, l) in a.iter_mut().zip(&loads) {
                        *x = l.read(row);
                    }
                }
                *ep = output_1d_adj8(quads8(a));
            }
            let n = stored_lanes(th, tw, ty, g, after);
            let t = out.add(ty * tw + g * W);
            // (Indices, not iterators: column j of all four rows.)
            #[allow(clippy::needless_range_loop)]
            for j in 0..6 {
                let col = output_1d_adj8([e[0][j], e[1][j], e[2][j], e[3][j]]);
                for (i, val) in col.into_iter().enumerate() {
                    store_first(t.add((i * 6 + j) * stride), val, n);
                }
            }
        }
    }
}

/// The F(4x4) input transform's second pass (`input_rows` in `winograd4.rs`) over channel `ci`'s
/// tiles `0..tiles` (a multiple of eight), eight at a time: `v[((i * 6 + j) * c + ci) * nt + t] =
/// input_1d(d[(k * 6 + j) * pitch + t] over k)[i]`. The portable loop computed each of its 72
/// load and store addresses with a bounds check, from indices the compiler kept on the stack.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f4_rows(
    d: &[f32],
    pitch: usize,
    v: &mut [f32],
    c: usize,
    ci: usize,
    nt: usize,
    tiles: usize,
) {
    assert!(tiles.is_multiple_of(W) && tiles <= nt && tiles <= pitch && ci < c);
    assert!(d.len() >= 35 * pitch + tiles && v.len() >= 36 * c * nt);
    let (dp, vp) = (d.as_ptr(), v.as_mut_ptr());
    let mut t = 0;
    while t < tiles {
        for j in 0..6 {
            let mut col = [_mm256_setzero_ps(); 6];
            for (k, x) in col.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(dp.add((k * 6 + j) * pitch + t));
            }
            for (i, val) in input_1d8(col).into_iter().enumerate() {
                _mm256_storeu_ps(vp.add(((i * 6 + j) * c + ci) * nt + t), val);
            }
        }
        t += W;
    }
}

/// `output_1d` of `winograd4.rs` on eight lanes, its operations in its order: with
/// `a = m1 + m2`, `b = m1 - m2`, `c = m3 + m4`, `d = m3 - m4`, the values
/// `[(m0 + a) + c, b + 2 d, a + 4 c, (b + 8 d) + m5]`.
#[inline(always)]
unsafe fn output_1d8(m: [__m256; 6]) -> [__m256; 4] {
    let (a, b) = (_mm256_add_ps(m[1], m[2]), _mm256_sub_ps(m[1], m[2]));
    let (c, d) = (_mm256_add_ps(m[3], m[4]), _mm256_sub_ps(m[3], m[4]));
    [
        _mm256_add_ps(_mm256_add_ps(m[0], a), c),
        _mm256_add_ps(b, _mm256_mul_ps(d, _mm256_set1_ps(2.0))),
        _mm256_add_ps(a, _mm256_mul_ps(c, _mm256_set1_ps(4.0))),
        _mm256_add_ps(
            _mm256_add_ps(b, _mm256_mul_ps(d, _mm256_set1_ps(8.0))),
            m[5],
        ),
    ]
}

/// `output_1d_adj` of `winograd4.rs` on eight lanes, its operations in its order: with
/// `s = y0 + y2`, `t = y1 + y3`, `s2 = y0 + 4 y2`, `t2 = 2 y1 + 8 y3`, the values
/// `[y0, s + t, s - t, s2 + t2, s2 - t2, y3]`.
#[inline(always)]
unsafe fn output_1d_adj8(y: [__m256; 4]) -> [__m256; 6] {
    let (s, t) = (_mm256_add_ps(y[0], y[2]), _mm256_add_ps(y[1], y[3]));
    let s2 = _mm256_add_ps(y[0], _mm256_mul_ps(y[2], _mm256_set1_ps(4.0)));
    let t2 = _mm256_add_ps(
        _mm256_mul_ps(y[1], _mm256_set1_ps(2.0)),
        _mm256_mul_ps(y[3], _mm256_set1_ps(8.0)),
    );
    [
        y[0],
        _mm256_add_ps(s, t),
        _mm256_sub_ps(s, t),
        _mm256_add_ps(s2, t2),
        _mm256_sub_ps(s2, t2),
        y[3],
    ]
}

/// `input_1d_adj` of `winograd4.rs` on eight lanes, its operations in its order: with
/// `s12 = v1 + v2`, `d12 = v1 - v2`, `s34 = v3 + v4`, `d34 = v3 - v4`, the values
/// `[4 v0, 4 (v5 - d12) - 2 d34, (-5 v0 - 4 s12) - s34, (d12 + 2 d34) - 5 v5, (v0 + s12) + s34,
/// v5]`.
#[inline(always)]
unsafe fn input_1d_adj8(v: [__m256; 6]) -> [__m256; 6] {
    let (s12, d12) = (_mm256_add_ps(v[1], v[2]), _mm256_sub_ps(v[1], v[2]));
    let (s34, d34) = (_mm256_add_ps(v[3], v[4]), _mm256_sub_ps(v[3], v[4]));
    let (c4, c2) = (_mm256_set1_ps(4.0), _mm256_set1_ps(2.0));
    let (cm5, c5) = (_mm256_set1_ps(-5.0), _mm256_set1_ps(5.0));
    [
        _mm256_mul_ps(v[0], c4),
        _mm256_sub_ps(
            _mm256_mul_ps(_mm256_sub_ps(v[5], d12), c4),
            _mm256_mul_ps(d34, c2),
        ),
        _mm256_sub_ps(
            _mm256_sub_ps(_mm256_mul_ps(v[0], cm5), _mm256_mul_ps(s12, c4)),
            s34,
        ),
        _mm256_sub_ps(
            _mm256_add_ps(d12, _mm256_mul_ps(d34, c2)),
            _mm256_mul_ps(v[5], c5),
        ),
        _mm256_add_ps(_mm256_add_ps(v[0], s12), s34),
        v[5],
    ]
}

/// The F(4x4) output transform of channel `o`'s tiles `0..tiles` (a multiple of eight; the
/// portable `output_tiles` of `winograd4.rs`), eight at a time:
/// `yt[(p * 4 + q) * nt + t] = (A^T M A)[p][q]` from `m[((i * 6 + j) * co + o) * nt + t]`, rows
/// first, then columns.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f4_output_tiles(
    m: &[f32],
    co: usize,
    o: usize,
    nt: usize,
    tiles: usize,
    yt: &mut [f32],
) {
    assert!(tiles.is_multiple_of(W) && tiles <= nt && o < co);
    assert!(m.len() >= 36 * co * nt && yt.len() >= 16 * nt);
    let (mp, yp) = (m.as_ptr(), yt.as_mut_ptr());
    let mut t = 0;
    while t < tiles {
        let mut r = [[_mm256_setzero_ps(); 4]; 6];
        for (i, ri) in r.iter_mut().enumerate() {
            let mut row = [_mm256_setzero_ps(); 6];
            for (j, x) in row.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(mp.add(((i * 6 + j) * co + o) * nt + t));
            }
            *ri = output_1d8(row);
        }
        for q in 0..4 {
            let mut col = [_mm256_setzero_ps(); 6];
            for (x, ri) in col.iter_mut().zip(&r) {
                *x = ri[q];
            }
            let col = output_1d8(col);
            for (p, val) in col.into_iter().enumerate() {
                _mm256_storeu_ps(yp.add((p * 4 + q) * nt + t), val);
            }
        }
        t += W;
    }
}

/// The F(4x4) output transform's adjoint for channel `o`'s tiles `0..tiles` (a multiple of eight;
/// the portable `output_adjoint_tiles` of `winograd4.rs`), eight at a time:
/// `dm[((i * 6 + j) * co + o) * nt + t] = (A dY A^T)[i][j]` from `g[(p * 4 + q) * nt + t]`.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f4_output_adjoint_tiles(
    g: &[f32],
    co: usize,
    o: usize,
    nt: usize,
    tiles: usize,
    dm: &mut [f32],
) {
    assert!(tiles.is_multiple_of(W) && tiles <= nt && o < co);
    assert!(g.len() >= 16 * nt && dm.len() >= 36 * co * nt);
    let (gp, dp) = (g.as_ptr(), dm.as_mut_ptr());
    let mut t = 0;
    while t < tiles {
        let mut e = [[_mm256_setzero_ps(); 6]; 4];
        for (p, ep) in e.iter_mut().enumerate() {
            let mut row = [_mm256_setzero_ps(); 4];
            for (q, x) in row.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(gp.add((p * 4 + q) * nt + t));
            }
            *ep = output_1d_adj8(row);
        }
        for j in 0..6 {
            let mut col = [_mm256_setzero_ps(); 4];
            for (x, ep) in col.iter_mut().zip(&e) {
                *x = ep[j];
            }
            let col = output_1d_adj8(col);
            for (i, val) in col.into_iter().enumerate() {
                _mm256_storeu_ps(dp.add(((i * 6 + j) * co + o) * nt + t), val);
            }
        }
        t += W;
    }
}

/// The F(4x4) input transform's adjoint for channel `ci`'s tiles `0..tiles` (a multiple of eight;
/// the portable `input_adjoint_tiles` of `winograd4.rs`), eight at a time:
/// `out[(k * 6 + l) * nt + t] = (B dV B^T)[k][l]` from `dv[((i * 6 + j) * c + ci) * nt + t]`.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f4_input_adjoint_tiles(
    dv: &[f32],
    c: usize,
    ci: usize,
    nt: usize,
    tiles: usize,
    out: &mut [f32],
) {
    assert!(tiles.is_multiple_of(W) && tiles <= nt && ci < c);
    assert!(dv.len() >= 36 * c * nt && out.len() >= 36 * nt);
    let (vp, op) = (dv.as_ptr(), out.as_mut_ptr());
    let mut t = 0;
    while t < tiles {
        let mut r = [[_mm256_setzero_ps(); 6]; 6];
        for (j, rj) in r.iter_mut().enumerate() {
            let mut col = [_mm256_setzero_ps(); 6];
            for (i, x) in col.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(vp.add(((i * 6 + j) * c + ci) * nt + t));
            }
            *rj = input_1d_adj8(col);
        }
        for k in 0..6 {
            let mut row = [_mm256_setzero_ps(); 6];
            for (x, rj) in row.iter_mut().zip(&r) {
                *x = rj[k];
            }
            let dd = input_1d_adj8(row);
            for (l, val) in dd.into_iter().enumerate() {
                _mm256_storeu_ps(op.add((k * 6 + l) * nt + t), val);
            }
        }
        t += W;
    }
}

/// `k` values from `p` (all eight with a plain load when `k == 8`, else a masked load that reads
/// nothing past them).
#[inline(always)]
unsafe fn load_first(p: *const f32, k: usize) -> __m256 {
    if k == W {
        _mm256_loadu_ps(p)
    } else {
        _mm256_maskload_ps(p, first_lanes(k))
    }
}

/// The F(2x2) output transform (`output_transform` in the parent) of output channel `o` in one
/// pass: for each group of up to eight tiles of a tile row, the sixteen planes of `M`
/// (`m[((i * 4 + j) * co + o) * nt + tile]`), then `A^T M A + bias` with the portable loop's
/// operations in its order (`a[i][0] = (m[i][0] + m[i][1]) + m[i][2]`,
/// `a[i][1] = (m[i][1] - m[i][2]) - m[i][3]`, the same along the other axis, then `+ bias`),
/// interleaved into the two output rows of the tile row: no intermediate planes. `y` holds the
/// channel's output for the chunk's `nb` images (`h x w` each), every value written once.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f2_output(
    m: &[f32],
    co: usize,
    o: usize,
    nt: usize,
    bias: f32,
    (nb, h, w): (usize, usize, usize),
    (th, tw): (usize, usize),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    assert!(nt == nb * th * tw && h.div_ceil(2) == th && w.div_ceil(2) == tw);
    assert!(o < co && m.len() >= 16 * co * nt && y.len() >= nb * h * w);
    let mp = m.as_ptr();
    let yp = y.as_mut_ptr().cast::<f32>();
    let b = _mm256_set1_ps(bias);
    for bi in 0..nb {
        for ty in 0..th {
            let t0 = (bi * th + ty) * tw;
            let mut tx = 0;
            while tx < tw {
                let k = (tw - tx).min(W);
                let ld = |i: usize, j: usize| mp.add(((i * 4 + j) * co + o) * nt + t0 + tx);
                let mut a = [[_mm256_setzero_ps(); 2]; 4];
                for (i, ai) in a.iter_mut().enumerate() {
                    let m0 = load_first(ld(i, 0), k);
                    let m1 = load_first(ld(i, 1), k);
                    let m2 = load_first(ld(i, 2), k);
                    let m3 = load_first(ld(i, 3), k);
                    ai[0] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                    ai[1] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
                }
                // (No closure: it would not inherit this function's AVX2.)
                let rows = [
                    [
                        _mm256_add_ps(_mm256_add_ps(a[0][0], a[1][0]), a[2][0]),
                        _mm256_add_ps(_mm256_add_ps(a[0][1], a[1][1]), a[2][1]),
                    ],
                    [
                        _mm256_sub_ps(_mm256_sub_ps(a[1][0], a[2][0]), a[3][0]),
                        _mm256_sub_ps(_mm256_sub_ps(a[1][1], a[2][1]), a[3][1]),
                    ],
                ];
                for (p, [y0, y1]) in rows.into_iter().enumerate() {
                    let oy = 2 * ty + p;
                    if oy >= h {
                        break;
                    }
                    let v0 = _mm256_add_ps(y0, b);
                    let v1 = _mm256_add_ps(y1, b);
                    // Tiles 0-1 and 4-5 | 2-3 and 6-7 as (even, odd) column pairs, then in order.
                    let lo = _mm256_unpacklo_ps(v0, v1);
                    let hi = _mm256_unpackhi_ps(v0, v1);
                    let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
                    let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
                    let cols = (w - 2 * tx).min(2 * W);
                    let dst = yp.add((bi * h + oy) * w + 2 * tx);
                    store_first(dst, first, cols.min(W));
                    store_first(dst.add(W), second, cols.saturating_sub(W));
                }
                tx += k;
            }
        }
    }
}

/// The F(2x2) output transform's adjoint (`output_transform_adjoint` in the parent) of one
/// output-gradient plane `dy` (`h x w`) in one pass: for each group of up to eight tiles of a tile
/// row, the two output rows read straight from `dy` (masked loads give the zeros past its edges)
/// and split into even and odd columns, then the column pass (`e[p] = [g0, g0 + g1, g0 - g1,
/// -g1]`) and the row pass (`dm[0][j] = e0, dm[1][j] = e0 + e1, dm[2][j] = e0 - e1, dm[3][j] =
/// -e1`), the portable loop's operations on the same values: the same bits, without its gathered
/// and intermediate planes.
///
/// Plane `(i, j)`'s tiles go to `dm[at + (i * 4 + j) * stride..][..th tw]`, stored as
/// [`f2_input`] stores `V` ([`stored_lanes`]).
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn f2_output_adjoint(
    dy: &[f32],
    (h, w): (usize, usize),
    (th, tw): (usize, usize),
    dm: &mut [f32],
    at: usize,
    stride: usize,
    after: usize,
) {
    let tiles = th * tw;
    assert!(dy.len() >= h * w && th == h.div_ceil(2) && tw == w.div_ceil(2));
    assert!(tiles == 0 || at + 15 * stride + tiles + after <= dm.len());
    let (src, out) = (dy.as_ptr(), dm.as_mut_ptr().add(at));
    let sign = _mm256_set1_ps(-0.0);
    for g in (0..tw.div_ceil(W)).rev() {
        // Tile tx covers columns 2 tx and 2 tx + 1: the group's sixteen start at column 16 g.
        let c0 = (2 * g * W) as isize;
        let loads = [Load::new(c0, w), Load::new(c0 + W as isize, w)];
        for ty in 0..th {
            // e[p][q]: the column pass of output row 2 ty + p (zeros past the last row).
            let mut e = [[_mm256_setzero_ps(); 4]; 2];
            for (p, ep) in e.iter_mut().enumerate() {
                let oy = 2 * ty + p;
                let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                if oy < h {
                    let row = src.add(oy * w);
                    (a, b) = (loads[0].read(row), loads[1].read(row));
                }
                let (g0, g1) = deinterleave8_of(a, b);
                *ep = [
                    g0,
                    _mm256_add_ps(g0, g1),
                    _mm256_sub_ps(g0, g1),
                    _mm256_xor_ps(g1, sign),
                ];
            }
            let n = stored_lanes(th, tw, ty, g, after);
            let t = out.add(ty * tw + g * W);
            for (j, (&e0, &e1)) in e[0].iter().zip(&e[1]).enumerate() {
                let planes = [
                    e0,
                    _mm256_add_ps(e0, e1),
                    _mm256_sub_ps(e0, e1),
                    _mm256_xor_ps(e1, sign),
                ];
                for (i, plane) in planes.into_iter().enumerate() {
                    store_first(t.add((i * 4 + j) * stride), plane, n);
                }
            }
        }
    }
}

/// The F(2x2) input transform's adjoint (`input_transform_adjoint` in the parent) of one image
/// plane in one pass, for planes of at most eight tiles a row (`tw <= 8`: one group a tile row).
/// For each tile row, its sixteen values of `dV` (`dv[at + (i * 4 + j) * stride + tile]`), the
/// row pass (`t[0][j] = v0`, `t[1][j] = (v1 - v2) + v3`, `t[2][j] = (v1 + v2) - v0`,
/// `t[3][j] = -v3`); then for each of its four padded rows inside the image, the column pass
/// (`dd = [a0, (a1 - a2) + a3, (a1 + a2) - a0, -a3]`), the sums of the two columns neighbouring
/// tiles share (`a0 + c2` and `((a1 - a2) + a3) + c3` of the previous tile's `c2`, `c3`, zero
/// before the first; the last tile's `c2`, `c3` alone) and the add into the image row `img`, in
/// the portable loop's order: the same bits, without its intermediate planes and padded row.
///
/// Image rows are added as whole vectors where they stay inside the plane, with `-0.0` (which
/// leaves any value as it is) in the lanes past the row: those lanes hold the next row's values,
/// read and written back unchanged.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f2_input_adjoint(
    dv: &[f32],
    at: usize,
    stride: usize,
    (h, w): (usize, usize),
    (th, tw): (usize, usize),
    img: &mut [f32],
) {
    assert!(th == h.div_ceil(2) && tw == w.div_ceil(2) && tw <= W && img.len() >= h * w);
    if th * tw == 0 {
        return;
    }
    assert!(at + 15 * stride + th * tw <= dv.len());
    let (src, dst) = (dv.as_ptr(), img.as_mut_ptr());
    let sign = _mm256_set1_ps(-0.0);
    let zero = _mm256_setzero_ps();
    // Tile lanes past the row hold the next tiles' values (or nothing, masked, at the end of `dv`).
    let tiles = _mm256_castsi256_ps(first_lanes(tw));
    let up = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
    let down = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    let plane = h * w;
    for ty in 0..th {
        let t0 = at + ty * tw;
        let full = t0 + 15 * stride + W <= dv.len();
        let mut v = [[zero; 4]; 4];
        for (i, vi) in v.iter_mut().enumerate() {
            for (j, x) in vi.iter_mut().enumerate() {
                let p = src.add(t0 + (i * 4 + j) * stride);
                *x = if full {
                    _mm256_loadu_ps(p)
                } else {
                    load_first(p, tw)
                };
            }
        }
        // Row pass: t[k][j].
        let mut t = [[zero; 4]; 4];
        for j in 0..4 {
            t[0][j] = v[0][j];
            t[1][j] = _mm256_add_ps(_mm256_sub_ps(v[1][j], v[2][j]), v[3][j]);
            t[2][j] = _mm256_sub_ps(_mm256_add_ps(v[1][j], v[2][j]), v[0][j]);
            t[3][j] = _mm256_xor_ps(v[3][j], sign);
        }
        for (k, a) in t.iter().enumerate() {
            let iy = 2 * ty + k;
            if iy == 0 || iy > h {
                continue;
            }
            // Column pass of each tile, then image column q = 2 x (x's second column plus the
            // previous tile's last, `c3`) and q = 2 x + 1 (the next tile's first column plus x's
            // third, `c2`; the last tile's `c2` alone, as -0.0 + c2).
            let d0 = _mm256_blendv_ps(sign, a[0], tiles);
            let d1 = _mm256_add_ps(_mm256_sub_ps(a[1], a[2]), a[3]);
            let d2 = _mm256_sub_ps(_mm256_add_ps(a[1], a[2]), a[0]);
            let d3 = _mm256_xor_ps(a[3], sign);
            let c3 = _mm256_blend_ps::<1>(_mm256_permutevar8x32_ps(d3, up), zero);
            let next0 = _mm256_blend_ps::<0x80>(_mm256_permutevar8x32_ps(d0, down), sign);
            let even = _mm256_add_ps(d1, c3);
            let odd = _mm256_add_ps(next0, d2);
            let lo = _mm256_unpacklo_ps(even, odd);
            let hi = _mm256_unpackhi_ps(even, odd);
            let halves = [
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            ];
            let row = (iy - 1) * w;
            for (half, x) in halves.into_iter().enumerate() {
                let q = half * W;
                if q >= w {
                    break;
                }
                let valid = (w - q).min(W);
                let p = dst.add(row + q);
                if row + q + W <= plane {
                    let x = _mm256_blendv_ps(sign, x, _mm256_castsi256_ps(first_lanes(valid)));
                    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), x));
                } else {
                    store_first(p, _mm256_add_ps(load_first(p, valid), x), valid);
                }
            }
        }
    }
}

/// The F(2x2) weight transform (`transform_weights_into` in the parent) of `blocks` groups of
/// eight kernels: `u[(i * 4 + j) * pairs + kernel] = (G g G^T)[i][j]`. Each group's nine taps are
/// read eight kernels at a time (taps 0-7 by eight row loads and a register transpose, tap 8 by
/// one gather; the portable loop loaded the 72 values one by one), then the portable loop's
/// operations in its order (`(g0 + g1 + g2) * 0.5`, `(g0 - g1 + g2) * 0.5` along each axis): the
/// same bits.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn f2_weights(weight: &[f32], pairs: usize, blocks: usize, u: &mut [f32]) {
    assert!(blocks * W <= pairs && pairs * 9 <= weight.len() && 16 * pairs <= u.len());
    let idx = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
    let half = _mm256_set1_ps(0.5);
    let (wp, up) = (weight.as_ptr(), u.as_mut_ptr());
    for blk in 0..blocks {
        let base = blk * W;
        let src = wp.add(base * 9);
        // Taps 0-7 of the eight kernels as eight rows, transposed, and tap 8 gathered (nine
        // gathers, through `array::from_fn`'s closure, which does not inherit this function's
        // AVX2, took 10% longer).
        let mut rows = [_mm256_setzero_ps(); 8];
        for (k, r) in rows.iter_mut().enumerate() {
            *r = _mm256_loadu_ps(src.add(9 * k));
        }
        let mut g = [_mm256_setzero_ps(); 9];
        g[..8].copy_from_slice(&transpose8(rows));
        g[8] = _mm256_i32gather_ps::<4>(src.add(8), idx);
        let mut t = [[_mm256_setzero_ps(); 3]; 4];
        for b in 0..3 {
            let (g0, g1, g2) = (g[b], g[3 + b], g[6 + b]);
            t[0][b] = g0;
            t[1][b] = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(g0, g1), g2), half);
            t[2][b] = _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(g0, g1), g2), half);
            t[3][b] = g2;
        }
        for (i, r) in t.iter().enumerate() {
            let (r0, r1, r2) = (r[0], r[1], r[2]);
            let row = [
                r0,
                _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(r0, r1), r2), half),
                _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(r0, r1), r2), half),
                r2,
            ];
            for (j, v) in row.into_iter().enumerate() {
                _mm256_storeu_ps(up.add((i * 4 + j) * pairs + base), v);
            }
        }
    }
}

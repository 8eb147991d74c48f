//! Winograd F(4x4, 3x3) (Lavin & Gray 2016, the interpolation points 0, +-1, +-2 and infinity):
//! each 4x4 output tile is `A^T [(G g G^T) . (B^T d B)] A` of its 6x6 input tile `d`, 36 products
//! per tile and channel pair for 16 outputs (2.25 per output, against 4 for F(2x2, 3x3) and 9
//! directly), computed as 36 matrix products `M_xi [C_out, T] = U_xi [C_out, C_in] V_xi [C_in, T]`.
//! The backward pass is the exact adjoint of the same three linear maps, as in the parent module's
//! F(2x2, 3x3): `dM = A dY A^T`, `dU_xi = dM_xi V_xi^T`, `dg = G^T dU G`, `dV_xi = U_xi^T dM_xi`,
//! `dd = B dV B^T` added back onto the (overlapping) input tiles.
//!
//! The parent module picks it where it is faster ([`super::use_f4`]) and runs it ([`F4`]) through
//! the drivers it runs F(2x2) through (`winograd_forward`, `winograd_backward`); this file holds
//! the transforms of its 6x6 tiles. Its larger transform matrices round more (their entries reach
//! 8 and 1/24): measured against the f64 reference, its `f32` results stay within the parent's
//! tests' 1e-5 relative error.
//!
//! Over 400 lines because its three transforms (weights, input, output) and their adjoints are
//! one algorithm, checked together (its tests against the reference path are in the parent
//! module's, beside F(2x2)'s).
//!
//! Every transform is written once, over a group of `N` tiles (or kernels) held in fixed-size
//! arrays ([`Ln`]): `N = 8` for the body of a loop (the compiler keeps each array in one vector
//! register), `N = 1` for its tail, with the same operations, so the same bits. On `f32` with
//! AVX2 the whole groups run in `avx2.rs` instead (`f4_column_group`, `f4_rows`,
//! `f4_output_tiles`, `f4_output_adjoint_tiles`, `f4_input_adjoint_tiles`: the same operations;
//! the portable loops gathered each tile's values one at a time, or bounds-checked each of dozens
//! of addresses per group from indices kept on the stack), and tests compare their bits.

use super::{at_least, ConvShape, Scratch, Tiling, Winograd};
use crate::engine::scalar::Real;
use std::ops::{Add, Mul, Range, Sub};

/// Tiles (or kernels) handled together: one AVX2 register of `f32`.
const G: usize = 8;

/// `N` values of `F` handled as one (see the module's comment).
#[derive(Clone, Copy)]
struct Ln<F, const N: usize>([F; N]);

impl<F: Real, const N: usize> Ln<F, N> {
    #[inline(always)]
    fn zero() -> Self {
        Ln([F::default(); N])
    }
    #[inline(always)]
    fn load(s: &[F]) -> Self {
        let mut r = Self::zero();
        r.0.copy_from_slice(&s[..N]);
        r
    }
    #[inline(always)]
    fn store(self, d: &mut [F]) {
        d[..N].copy_from_slice(&self.0);
    }
}

impl<F: Real, const N: usize> Add for Ln<F, N> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let mut r = self;
        for l in 0..N {
            r.0[l] = self.0[l] + o.0[l];
        }
        r
    }
}

impl<F: Real, const N: usize> Sub for Ln<F, N> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        let mut r = self;
        for l in 0..N {
            r.0[l] = self.0[l] - o.0[l];
        }
        r
    }
}

/// Times a constant.
impl<F: Real, const N: usize> Mul<f64> for Ln<F, N> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: f64) -> Self {
        let k = F::from_f64(k);
        let mut r = self;
        for l in 0..N {
            r.0[l] = self.0[l] * k;
        }
        r
    }
}

/// What the 1-D maps below need: [`Ln`] in the kernels, `f64` in the tests.
trait Lanes: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<f64, Output = Self> {}
impl<T: Copy + Add<Output = T> + Sub<Output = T> + Mul<f64, Output = T>> Lanes for T {}

/// `B^T d`: the input transform along one axis.
#[inline(always)]
fn input_1d<T: Lanes>(d: [T; 6]) -> [T; 6] {
    let (t0, t1) = (d[4] - d[2] * 4.0, d[3] - d[1] * 4.0);
    let (t2, t3) = (d[4] - d[2], (d[3] - d[1]) * 2.0);
    [
        d[0] * 4.0 - d[2] * 5.0 + d[4],
        t0 + t1,
        t0 - t1,
        t2 + t3,
        t2 - t3,
        d[1] * 4.0 - d[3] * 5.0 + d[5],
    ]
}

/// `B v`: the adjoint of [`input_1d`].
#[inline(always)]
fn input_1d_adj<T: Lanes>(v: [T; 6]) -> [T; 6] {
    let (s12, d12) = (v[1] + v[2], v[1] - v[2]);
    let (s34, d34) = (v[3] + v[4], v[3] - v[4]);
    [
        v[0] * 4.0,
        (v[5] - d12) * 4.0 - d34 * 2.0,
        v[0] * -5.0 - s12 * 4.0 - s34,
        d12 + d34 * 2.0 - v[5] * 5.0,
        v[0] + s12 + s34,
        v[5],
    ]
}

/// `A^T m`: the output transform along one axis.
#[inline(always)]
fn output_1d<T: Lanes>(m: [T; 6]) -> [T; 4] {
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    [m[0] + a + c, b + d * 2.0, a + c * 4.0, b + d * 8.0 + m[5]]
}

/// `A y`: the adjoint of [`output_1d`].
#[inline(always)]
fn output_1d_adj<T: Lanes>(y: [T; 4]) -> [T; 6] {
    let (s, t) = (y[0] + y[2], y[1] + y[3]);
    let (s2, t2) = (y[0] + y[2] * 4.0, y[1] * 2.0 + y[3] * 8.0);
    [y[0], s + t, s - t, s2 + t2, s2 - t2, y[3]]
}

/// `G g`: the weight transform along one axis.
#[inline(always)]
fn weight_1d<T: Lanes>(g: [T; 3]) -> [T; 6] {
    let s = g[0] + g[2];
    let (p, q) = (
        g[0] * (1.0 / 24.0) + g[2] * (1.0 / 6.0),
        g[1] * (1.0 / 12.0),
    );
    [
        g[0] * 0.25,
        (s + g[1]) * (-1.0 / 6.0),
        (s - g[1]) * (-1.0 / 6.0),
        p + q,
        p - q,
        g[2],
    ]
}

/// `G^T u`: the adjoint of [`weight_1d`].
#[inline(always)]
fn weight_1d_adj<T: Lanes>(u: [T; 6]) -> [T; 3] {
    let (s12, s34) = (u[1] + u[2], u[3] + u[4]);
    [
        u[0] * 0.25 - s12 * (1.0 / 6.0) + s34 * (1.0 / 24.0),
        (u[2] - u[1]) * (1.0 / 6.0) + (u[3] - u[4]) * (1.0 / 12.0),
        (s34 - s12) * (1.0 / 6.0) + u[5],
    ]
}

/// `U [36][C_out][C_in] = G g G^T` of every 3x3 kernel `g` of `weight [C_out, C_in, 3, 3]`, into
/// `u` (resized; every element is written).
#[inline(always)]
fn transform_weights_into<F: Real>(weight: &[F], pairs: usize, u: &mut Vec<F>) {
    u.resize(36 * pairs, F::default());
    let body = pairs / G * G;
    for k in (0..body).step_by(G) {
        weights_group::<F, G>(weight, pairs, k, u);
    }
    for k in body..pairs {
        weights_group::<F, 1>(weight, pairs, k, u);
    }
}

#[inline(always)]
fn weights_group<F: Real, const N: usize>(weight: &[F], pairs: usize, k: usize, u: &mut [F]) {
    let mut g = [Ln::<F, N>::zero(); 9];
    for l in 0..N {
        for (e, ge) in g.iter_mut().enumerate() {
            ge.0[l] = weight[(k + l) * 9 + e];
        }
    }
    // t[i][c] = (G g)[i][c], then U[i][j] = (t G^T)[i][j].
    let mut cols = [[Ln::<F, N>::zero(); 6]; 3];
    for (c, col) in cols.iter_mut().enumerate() {
        *col = weight_1d([g[c], g[3 + c], g[6 + c]]);
    }
    for i in 0..6 {
        let row = weight_1d([cols[0][i], cols[1][i], cols[2][i]]);
        for (j, v) in row.into_iter().enumerate() {
            v.store(&mut u[(i * 6 + j) * pairs + k..]);
        }
    }
}

/// Adjoint of [`transform_weights_into`]: `dW [C_out, C_in, 3, 3] = G^T dU G`.
#[inline(always)]
fn transform_weights_adjoint<F: Real>(du: &[F], pairs: usize) -> Vec<F> {
    let mut dw = vec![F::default(); pairs * 9];
    let body = pairs / G * G;
    for k in (0..body).step_by(G) {
        weights_adjoint_group::<F, G>(du, pairs, k, &mut dw);
    }
    for k in body..pairs {
        weights_adjoint_group::<F, 1>(du, pairs, k, &mut dw);
    }
    dw
}

#[inline(always)]
fn weights_adjoint_group<F: Real, const N: usize>(du: &[F], pairs: usize, k: usize, dw: &mut [F]) {
    // t[i][c] = (dU G)[i][c], then dW[r][c] = (G^T t)[r][c].
    let mut t = [[Ln::<F, N>::zero(); 3]; 6];
    for (i, ti) in t.iter_mut().enumerate() {
        let mut row = [Ln::zero(); 6];
        for (j, r) in row.iter_mut().enumerate() {
            *r = Ln::load(&du[(i * 6 + j) * pairs + k..]);
        }
        *ti = weight_1d_adj(row);
    }
    for c in 0..3 {
        let mut col = [Ln::zero(); 6];
        for (i, ci) in col.iter_mut().enumerate() {
            *ci = t[i][c];
        }
        let col = weight_1d_adj(col);
        for (r, v) in col.into_iter().enumerate() {
            for l in 0..N {
                dw[(k + l) * 9 + r * 3 + c] = v.0[l];
            }
        }
    }
}

/// `V [36][C_in][nt] = B^T d B` of the input tiles of `images` (tiles in image, row, column order):
/// in one pass per image plane ([`input_transform_fused`]) for `f32` on a CPU with AVX2 where that
/// wins ([`super::avx2::f4_in_one_pass`]), otherwise in two passes over the chunk
/// ([`input_transform_passes`]). The same bits either way.
#[inline(always)]
fn input_transform<F: Real>(
    x: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    v: &mut Vec<F>,
    sc: &mut Scratch<F>,
) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2() && super::avx2::f4_in_one_pass(tl.tw) {
        if let (Some(x), Some(v)) = (super::as_f32(x), super::super::cast_vec_mut::<F, f32>(v)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { input_transform_fused(x, s, images, tl, v) };
        }
    }
    input_transform_passes(x, s, images, tl, v, sc)
}

/// [`input_transform`] by [`super::avx2::f4_input`], one image plane at a time, both passes in one
/// and straight from the planes (no padded copy, no intermediate rows).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_transform_fused(
    x: &[f32],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    v: &mut Vec<f32>,
) {
    let (h, w, th, tw) = (s.h, s.w, tl.th, tl.tw);
    super::each_plane(
        x,
        s.c_in,
        s,
        images,
        tl,
        36,
        v,
        |img, v, at, stride, after| {
            // SAFETY: the CPU has AVX2 (this function's contract); `f4_input` checks its bounds.
            unsafe { super::avx2::f4_input(img, h, w, th, tw, v, at, stride, after) }
        },
    )
}

/// [`input_transform`] in two passes over the chunk, one input channel at a time: the first pass
/// of each padded image row ([`columns`]) into 36 intermediate rows of the chunk's tiles, then the
/// second ([`rows`]).
#[inline(always)]
fn input_transform_passes<F: Real>(
    x: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    v: &mut Vec<F>,
    sc: &mut Scratch<F>,
) {
    let nt = images.len() * tl.per_image();
    let c = s.c_in;
    let hw = s.h * s.w;
    // As the parent's F(2x2) transform: whole groups of tile columns ([`column_groups`]), the
    // padded plane wide enough for them, and G values of slack after each of the 36 rows of `d` (a
    // group may write past its tile row's end; those values are overwritten before they are read).
    let wp = 4 * column_groups(tl.tw).1 + 2;
    let pitch = nt + G;
    at_least(v, 36 * c * nt); // every element of `v[..36 c nt]` is written below
    sc.row.clear();
    sc.row.resize((4 * tl.th + 2) * wp, F::default());
    sc.a.resize(36 * pitch, F::default());
    let d = &mut sc.a;
    for ci in 0..c {
        for (bi, b) in images.clone().enumerate() {
            let img = &x[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
            for (src, dst) in img.chunks_exact(s.w).zip(sc.row[wp..].chunks_exact_mut(wp)) {
                dst[1..=s.w].copy_from_slice(src);
            }
            columns(&sc.row, wp, tl, bi, d, pitch);
        }
        // Rows, over the tiles: v[i][j] = sum_k B^T[i][k] d[k][j].
        rows(d, pitch, v, c, ci, nt);
    }
}

/// The second pass of [`input_transform`] over channel `ci`'s `nt` tiles: whole groups of `G` on
/// `f32` with AVX2 by `avx2::f4_rows` (the same operations; the portable loop computed each of its
/// 72 addresses with a bounds check), the rest by [`rows_portable`].
#[inline(always)]
fn rows<F: Real>(d: &[F], pitch: usize, v: &mut [F], c: usize, ci: usize, nt: usize) {
    #[allow(unused_mut)]
    let mut from = 0;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(d), Some(v)) = (super::avx2(), super::as_f32(d), super::as_f32_mut(v)) {
        from = nt / G * G;
        // SAFETY: the CPU has AVX2; `f4_rows` checks its bounds.
        unsafe { super::avx2::f4_rows(d, pitch, v, c, ci, nt, from) };
    }
    rows_portable(d, pitch, v, c, ci, nt, from);
}

/// [`rows`] as plain loops over the tiles from `from` (a multiple of `G`): `G` at a time, then one
/// at a time (every number type; the reference of the AVX2 kernel).
#[inline(always)]
fn rows_portable<F: Real>(
    d: &[F],
    pitch: usize,
    v: &mut [F],
    c: usize,
    ci: usize,
    nt: usize,
    from: usize,
) {
    tiles_portable(from, nt, |t, n| match n {
        G => input_rows::<F, G>(d, pitch, v, c, ci, nt, t),
        _ => input_rows::<F, 1>(d, pitch, v, c, ci, nt, t),
    });
}

/// Runs `f(t, n)` over the tiles `from..nt` (`from` a multiple of `G`): groups of `n = G` tiles,
/// then single tiles (`n = 1`): the portable loops' walk, after the AVX2 kernels' whole groups.
#[inline(always)]
fn tiles_portable(from: usize, nt: usize, mut f: impl FnMut(usize, usize)) {
    let body = nt / G * G;
    for t in (from..body).step_by(G) {
        f(t, G);
    }
    for t in body.max(from)..nt {
        f(t, 1);
    }
}

/// A tile transform of channel `ch` of `c` over `nt` tiles from `src` into `dst`
/// (`output_tiles`, `output_adjoint_tiles`, `input_adjoint_tiles`): `(src, c, ch, nt, t, dst)`
/// for the `N` tiles from `t`.
type TileFn<F> = fn(&[F], usize, usize, usize, usize, &mut [F]);

/// The AVX2 twin of a [`TileFn`] (`avx2::f4_output_tiles` and the like), over the whole groups of
/// `G` tiles up to its fifth argument. (None exist off x86-64.)
#[cfg(target_arch = "x86_64")]
type SimdTileFn = unsafe fn(&[f32], usize, usize, usize, usize, &mut [f32]);
#[cfg(not(target_arch = "x86_64"))]
type SimdTileFn = std::convert::Infallible;

/// `Some(avx2::$kernel)` on x86-64, `None` elsewhere.
macro_rules! simd {
    ($kernel:ident) => {{
        #[cfg(target_arch = "x86_64")]
        let k: Option<SimdTileFn> = Some(crate::engine::conv::fast::avx2::$kernel);
        #[cfg(not(target_arch = "x86_64"))]
        let k: Option<SimdTileFn> = None;
        k
    }};
}

/// Runs a tile transform over all `nt` tiles: its whole groups by `simd` (where given) on `f32`
/// with AVX2, then the rest (or all) by `portable[0]` (`G` tiles) and `portable[1]` (one tile).
#[inline(always)]
fn tile_pass<F: Real>(
    (src, c, ch, nt, dst): (&[F], usize, usize, usize, &mut [F]),
    portable: [TileFn<F>; 2],
    simd: Option<SimdTileFn>,
) {
    #[allow(unused_mut)]
    let mut from = 0;
    #[cfg(target_arch = "x86_64")]
    if let (Some(k), true, Some(s32), Some(d32)) = (
        simd,
        super::avx2(),
        super::as_f32(src),
        super::as_f32_mut(dst),
    ) {
        from = nt / G * G;
        // SAFETY: the CPU has AVX2; the AVX2 tile transforms check their bounds.
        unsafe { k(s32, c, ch, nt, from, d32) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    tiles_portable(from, nt, |t, n| {
        portable[usize::from(n != G)](src, c, ch, nt, t, dst)
    });
}

#[inline(always)]
fn input_rows<F: Real, const N: usize>(
    d: &[F],
    pitch: usize,
    v: &mut [F],
    c: usize,
    ci: usize,
    nt: usize,
    t: usize,
) {
    for j in 0..6 {
        let mut col = [Ln::<F, N>::zero(); 6];
        for (k, ck) in col.iter_mut().enumerate() {
            *ck = Ln::load(&d[(k * 6 + j) * pitch + t..]);
        }
        let col = input_1d(col);
        for (i, val) in col.into_iter().enumerate() {
            val.store(&mut v[((i * 6 + j) * c + ci) * nt + t..]);
        }
    }
}

/// Tile columns of the first pass's groups: `G` at a time, then `G / 2` for a remainder of at most
/// `G / 2` (fewer wasted lanes on narrow planes). Returns the number of wide groups and the tile
/// columns covered (at most `G - 1` past `tw`).
#[inline(always)]
fn column_groups(tw: usize) -> (usize, usize) {
    let rem = tw % G;
    let wide = tw / G + usize::from(rem > G / 2);
    let covered = if rem > G / 2 || rem == 0 {
        wide * G
    } else {
        wide * G + G / 2
    };
    (wide, covered)
}

/// The first pass over one padded image plane: `d[k][j][tile] = sum_l B^T[j][l] x_pad(4ty+k,
/// 4tx+l)` of image `bi`'s tiles, each padded row once, a group of tiles at a time
/// ([`column_groups`]), stored for the (up to two) tile rows that read it.
#[inline(always)]
fn columns<F: Real>(row: &[F], wp: usize, tl: Tiling, bi: usize, d: &mut [F], pitch: usize) {
    let (wide, covered) = column_groups(tl.tw);
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(row), Some(d)) = (super::avx2(), super::as_f32(row), super::as_f32_mut(d)) {
        for y in 0..4 * tl.th + 2 {
            let row = &row[y * wp..(y + 1) * wp];
            let mut targets = [(0, 0); 2];
            let mut count = 0;
            for (k, ty) in tile_rows(y, tl) {
                targets[count] = (k, (bi * tl.th + ty) * tl.tw);
                count += 1;
            }
            let groups = (0..wide)
                .map(|g| (G, g * G))
                .chain((covered > wide * G).then_some((G / 2, wide * G)));
            for (lanes, tx0) in groups {
                let mut at = targets;
                for t in &mut at[..count] {
                    t.1 += tx0;
                }
                // SAFETY: the CPU has AVX2; `f4_column_group` checks its bounds.
                unsafe { super::avx2::f4_column_group(row, lanes, tx0, &at[..count], d, pitch) };
            }
        }
        return;
    }
    columns_portable(row, wp, tl, bi, d, pitch);
}

/// [`columns`] as plain loops (every number type; the reference of the AVX2 kernel).
#[inline(always)]
fn columns_portable<F: Real>(
    row: &[F],
    wp: usize,
    tl: Tiling,
    bi: usize,
    d: &mut [F],
    pitch: usize,
) {
    let (wide, covered) = column_groups(tl.tw);
    for y in 0..4 * tl.th + 2 {
        let row = &row[y * wp..(y + 1) * wp];
        for g in 0..wide {
            column_group::<F, G>(row, y, tl, bi, g * G, d, pitch);
        }
        if covered > wide * G {
            column_group::<F, { G / 2 }>(row, y, tl, bi, wide * G, d, pitch);
        }
    }
}

/// [`columns`] for the `N` tiles from tile column `tx0` of padded row `y`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_group<F: Real, const N: usize>(
    row: &[F],
    y: usize,
    tl: Tiling,
    bi: usize,
    tx0: usize,
    d: &mut [F],
    pitch: usize,
) {
    let base = 4 * tx0;
    let mut p = [Ln::<F, N>::zero(); 6];
    for l in 0..N {
        for (k, pk) in p.iter_mut().enumerate() {
            pk.0[l] = row[base + 4 * l + k];
        }
    }
    let out = input_1d(p);
    for (k, ty) in tile_rows(y, tl) {
        let t0 = (bi * tl.th + ty) * tl.tw + tx0;
        for (j, vals) in out.iter().enumerate() {
            vals.store(&mut d[(k * 6 + j) * pitch + t0..]);
        }
    }
}

/// The (row `k` of the tile, tile row `ty`) pairs that padded row `y` is part of: row k = y - 4 ty
/// of tile rows ty = y / 4 (k = y % 4) and ty = y / 4 - 1 (k = y % 4 + 4, when under 6).
#[inline(always)]
fn tile_rows(y: usize, tl: Tiling) -> impl Iterator<Item = (usize, usize)> {
    [(y / 4, y % 4), (y / 4, y % 4 + 4)]
        .into_iter()
        .filter_map(move |(ty, k)| {
            let ty = ty.checked_sub(k / 4)?;
            (k < 6 && ty < tl.th).then_some((k, ty))
        })
}

/// Adjoint of [`input_transform`]: adds `B dV B^T` of every tile into `dx [C_in, N, H, W]` (the
/// parts of tiles over the padding are dropped).
#[inline(always)]
fn input_transform_adjoint<F: Real>(
    dv: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dx: &mut [F],
    sc: &mut Scratch<F>,
) {
    let nt = images.len() * tl.per_image();
    let (c, hw, wp) = (s.c_in, s.h * s.w, 4 * tl.tw + 2);
    sc.row.clear();
    sc.row.resize(wp, F::default());
    sc.b.resize(36 * nt, F::default());
    let t = &mut sc.b;
    for ci in 0..c {
        tile_pass(
            (dv, c, ci, nt, t),
            [input_adjoint_tiles::<F, G>, input_adjoint_tiles::<F, 1>],
            simd!(f4_input_adjoint_tiles),
        );
        // Each tile row's rows, tile by tile onto a padded row (tiles overlap by two columns),
        // then added into dx.
        for (bi, b) in images.clone().enumerate() {
            let img = &mut dx[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for k in 0..6 {
                    let iy = 4 * ty + k;
                    if iy == 0 || iy > s.h {
                        continue;
                    }
                    let tr = |l: usize| &t[(k * 6 + l) * nt + t0..(k * 6 + l) * nt + t0 + tl.tw];
                    let (t0s, t1s, t2s) = (tr(0), tr(1), tr(2));
                    let (t3s, t4s, t5s) = (tr(3), tr(4), tr(5));
                    let (mut c4, mut c5) = (F::default(), F::default());
                    for (tx, quad) in sc.row.chunks_exact_mut(4).take(tl.tw).enumerate() {
                        quad[0] = t0s[tx] + c4;
                        quad[1] = t1s[tx] + c5;
                        quad[2] = t2s[tx];
                        quad[3] = t3s[tx];
                        c4 = t4s[tx];
                        c5 = t5s[tx];
                    }
                    sc.row[4 * tl.tw] = c4;
                    sc.row[4 * tl.tw + 1] = c5;
                    for (o, &v) in img[(iy - 1) * s.w..iy * s.w]
                        .iter_mut()
                        .zip(&sc.row[1..=s.w])
                    {
                        *o += v;
                    }
                }
            }
        }
    }
}

/// `t[k][l][tile] = (B dV B^T)[k][l]` of channel `ci`'s tiles `i..i + N`.
#[inline(always)]
fn input_adjoint_tiles<F: Real, const N: usize>(
    dv: &[F],
    c: usize,
    ci: usize,
    nt: usize,
    i: usize,
    t: &mut [F],
) {
    // r[k][j] = sum_i B^T[i][k] dV[i][j], then dd[k][l] = sum_j r[k][j] B^T[j][l].
    let mut r = [[Ln::<F, N>::zero(); 6]; 6];
    for (j, rj) in r.iter_mut().enumerate() {
        let mut col = [Ln::zero(); 6];
        for (ii, v) in col.iter_mut().enumerate() {
            *v = Ln::load(&dv[((ii * 6 + j) * c + ci) * nt + i..]);
        }
        *rj = input_1d_adj(col);
    }
    for k in 0..6 {
        let mut row = [Ln::zero(); 6];
        for (j, v) in row.iter_mut().enumerate() {
            *v = r[j][k];
        }
        let dd = input_1d_adj(row);
        for (l, val) in dd.into_iter().enumerate() {
            val.store(&mut t[(k * 6 + l) * nt + i..]);
        }
    }
}

/// `y [C_out, N, H, W]` of `images` `= A^T M A + bias` from `M [36][C_out][nt]`: writes each of
/// those images' outputs exactly once (`y` may start uninitialised).
#[inline(always)]
fn output_transform<F: Real>(
    m: &[F],
    bias: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    y: &mut [std::mem::MaybeUninit<F>],
    sc: &mut Scratch<F>,
) {
    let nt = images.len() * tl.per_image();
    let (co, hw) = (s.c_out, s.h * s.w);
    sc.b.resize(16 * nt, F::default());
    let yt = &mut sc.b;
    for o in 0..co {
        tile_pass(
            (m, co, o, nt, yt),
            [output_tiles::<F, G>, output_tiles::<F, 1>],
            simd!(f4_output_tiles),
        );
        let bo = bias[o];
        for (bi, b) in images.clone().enumerate() {
            let img = &mut y[(o * s.n + b) * hw..(o * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for p in 0..4 {
                    let oy = 4 * ty + p;
                    if oy >= s.h {
                        break;
                    }
                    let row = &mut img[oy * s.w..(oy + 1) * s.w];
                    let src = |q: usize| &yt[(p * 4 + q) * nt + t0..(p * 4 + q) * nt + t0 + tl.tw];
                    let (y0, y1, y2, y3) = (src(0), src(1), src(2), src(3));
                    let mut quads = row.chunks_exact_mut(4);
                    for ((((quad, &v0), &v1), &v2), &v3) in
                        (&mut quads).zip(y0).zip(y1).zip(y2).zip(y3)
                    {
                        quad[0].write(v0 + bo);
                        quad[1].write(v1 + bo);
                        quad[2].write(v2 + bo);
                        quad[3].write(v3 + bo);
                    }
                    // The last, partial tile column.
                    let last = s.w / 4;
                    for (q, out) in quads.into_remainder().iter_mut().enumerate() {
                        out.write(yt[(p * 4 + q) * nt + t0 + last] + bo);
                    }
                }
            }
        }
    }
}

/// `yt[p][q][tile] = (A^T M A)[p][q]` of output channel `o`'s tiles `t..t + N`.
#[inline(always)]
fn output_tiles<F: Real, const N: usize>(
    m: &[F],
    co: usize,
    o: usize,
    nt: usize,
    t: usize,
    yt: &mut [F],
) {
    // r[i][q] = sum_j M[i][j] A^T[q][j], then y[p][q] = sum_i A^T[p][i] r[i][q].
    let mut r = [[Ln::<F, N>::zero(); 4]; 6];
    for (i, ri) in r.iter_mut().enumerate() {
        let mut row = [Ln::zero(); 6];
        for (j, v) in row.iter_mut().enumerate() {
            *v = Ln::load(&m[((i * 6 + j) * co + o) * nt + t..]);
        }
        *ri = output_1d(row);
    }
    for q in 0..4 {
        let mut col = [Ln::zero(); 6];
        for (i, v) in col.iter_mut().enumerate() {
            *v = r[i][q];
        }
        let col = output_1d(col);
        for (p, val) in col.into_iter().enumerate() {
            val.store(&mut yt[(p * 4 + q) * nt + t..]);
        }
    }
}

/// `dM [36][C_out][nt] = A dY A^T` of the output tiles of `images` (zeros past the edges): in one
/// pass per plane of `dY` ([`output_transform_adjoint_fused`]) for `f32` on a CPU with AVX2 where
/// that wins ([`super::avx2::f4_in_one_pass`]: the same rule), otherwise by a gather into
/// intermediate planes and a tile pass ([`output_transform_adjoint_passes`]). The same bits.
#[inline(always)]
fn output_transform_adjoint<F: Real>(
    dy: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dm: &mut Vec<F>,
    sc: &mut Scratch<F>,
) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2() && super::avx2::f4_in_one_pass(tl.tw) {
        if let (Some(dy), Some(dm)) = (super::as_f32(dy), super::super::cast_vec_mut::<F, f32>(dm))
        {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { output_transform_adjoint_fused(dy, s, images, tl, dm) };
        }
    }
    output_transform_adjoint_passes(dy, s, images, tl, dm, sc)
}

/// [`output_transform_adjoint`] by [`super::avx2::f4_output_adjoint`], one plane of `dY` at a
/// time, straight from the plane.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_transform_adjoint_fused(
    dy: &[f32],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dm: &mut Vec<f32>,
) {
    let (h, w, th, tw) = (s.h, s.w, tl.th, tl.tw);
    super::each_plane(
        dy,
        s.c_out,
        s,
        images,
        tl,
        36,
        dm,
        |img, dm, at, stride, after| {
            // SAFETY: the CPU has AVX2 (this function's contract); `f4_output_adjoint` checks its
            // bounds.
            unsafe { super::avx2::f4_output_adjoint(img, h, w, th, tw, dm, at, stride, after) }
        },
    )
}

/// [`output_transform_adjoint`] by a gather of each tile's values into 16 intermediate planes,
/// then a pass over the tiles.
#[inline(always)]
fn output_transform_adjoint_passes<F: Real>(
    dy: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dm: &mut Vec<F>,
    sc: &mut Scratch<F>,
) {
    let nt = images.len() * tl.per_image();
    let (co, hw) = (s.c_out, s.h * s.w);
    at_least(dm, 36 * co * nt); // every element of `dm[..36 co nt]` is written below
    sc.a.resize(16 * nt, F::default());
    let g = &mut sc.a;
    for o in 0..co {
        // g[p][q][tile] = dy at (4ty+p, 4tx+q), zero past the edges
        for (bi, b) in images.clone().enumerate() {
            let img = &dy[(o * s.n + b) * hw..(o * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for p in 0..4 {
                    let oy = 4 * ty + p;
                    if oy >= s.h {
                        for q in 0..4 {
                            let off = (p * 4 + q) * nt + t0;
                            g[off..off + tl.tw].fill(F::default());
                        }
                        continue;
                    }
                    let row = &img[oy * s.w..(oy + 1) * s.w];
                    for q in 0..4 {
                        let dst = &mut g[(p * 4 + q) * nt + t0..(p * 4 + q) * nt + t0 + tl.tw];
                        // Columns 4 tx + q past the image's edge stay zero.
                        dst.fill(F::default());
                        for (d, &v) in dst
                            .iter_mut()
                            .zip(row.get(q..).unwrap_or_default().iter().step_by(4))
                        {
                            *d = v;
                        }
                    }
                }
            }
        }
        tile_pass(
            (g, co, o, nt, dm),
            [output_adjoint_tiles::<F, G>, output_adjoint_tiles::<F, 1>],
            simd!(f4_output_adjoint_tiles),
        );
    }
}

/// `dM[i][j]` of output channel `o`'s tiles `t..t + N` from `g[p][q]`.
#[inline(always)]
fn output_adjoint_tiles<F: Real, const N: usize>(
    g: &[F],
    co: usize,
    o: usize,
    nt: usize,
    t: usize,
    dm: &mut [F],
) {
    // e[p][j] = sum_q dY[p][q] A^T[q][j], then dM[i][j] = sum_p A^T[p][i] e[p][j].
    let mut e = [[Ln::<F, N>::zero(); 6]; 4];
    for (p, ep) in e.iter_mut().enumerate() {
        let mut row = [Ln::zero(); 4];
        for (q, v) in row.iter_mut().enumerate() {
            *v = Ln::load(&g[(p * 4 + q) * nt + t..]);
        }
        *ep = output_1d_adj(row);
    }
    for j in 0..6 {
        let mut col = [Ln::zero(); 4];
        for (p, v) in col.iter_mut().enumerate() {
            *v = e[p][j];
        }
        let col = output_1d_adj(col);
        for (i, val) in col.into_iter().enumerate() {
            val.store(&mut dm[((i * 6 + j) * co + o) * nt + t..]);
        }
    }
}

/// Winograd F(4x4, 3x3), for the parent's drivers.
pub(super) struct F4;

impl Winograd for F4 {
    const M: usize = 4;
    #[inline(always)]
    fn transform_weights_into<F: Real>(weight: &[F], c_out: usize, c_in: usize, u: &mut Vec<F>) {
        transform_weights_into(weight, c_out * c_in, u)
    }
    #[inline(always)]
    fn transform_weights_adjoint<F: Real>(du: &[F], c_out: usize, c_in: usize) -> Vec<F> {
        transform_weights_adjoint(du, c_out * c_in)
    }
    #[inline(always)]
    fn input_transform<F: Real>(
        x: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        v: &mut Vec<F>,
        sc: &mut Scratch<F>,
    ) {
        input_transform(x, s, images, tl, v, sc)
    }
    #[inline(always)]
    fn input_transform_adjoint<F: Real>(
        dv: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        dx: &mut [F],
        sc: &mut Scratch<F>,
    ) {
        input_transform_adjoint(dv, s, images, tl, dx, sc)
    }
    #[inline(always)]
    fn output_transform<F: Real>(
        m: &[F],
        bias: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        y: &mut [std::mem::MaybeUninit<F>],
        sc: &mut Scratch<F>,
    ) {
        output_transform(m, bias, s, images, tl, y, sc)
    }
    #[inline(always)]
    fn output_transform_adjoint<F: Real>(
        dy: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        dm: &mut Vec<F>,
        sc: &mut Scratch<F>,
    ) {
        output_transform_adjoint(dy, s, images, tl, dm, sc)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "x86_64")]
    use super::super::tests::bits;
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_first_pass_has_the_portable_loops_bits() {
        use crate::engine::gradcheck::test_values;
        if !super::super::avx2() {
            return;
        }
        // (tile rows, tile columns, image): the 42x42 and 21x21 planes of 3x84x84 inputs (11 tile
        // columns: a wide group and a half group; 6: one wide group), 16x16 (a half group only),
        // one tile, wide ragged planes, a later image of a chunk.
        for (th, tw, bi) in [
            (11, 11, 0),
            (6, 6, 1),
            (4, 4, 0),
            (1, 1, 0),
            (3, 17, 2),
            (2, 13, 1),
        ] {
            let tl = Tiling { th, tw };
            let wp = 4 * column_groups(tw).1 + 2;
            let row: Vec<f32> = test_values((4 * th + 2) * wp, (th * 37 + tw) as u64)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let pitch = (bi + 1) * th * tw + G;
            let mut want = vec![0.0f32; 36 * pitch];
            columns_portable(&row, wp, tl, bi, &mut want, pitch);
            let mut got = vec![0.0f32; 36 * pitch];
            columns(&row, wp, tl, bi, &mut got, pitch);
            assert_eq!(bits(&got), bits(&want), "{th}x{tw} tiles, image {bi}");
        }
    }

    /// (images of the chunk, first image, h, w, channels): the 42x42 and 21x21 planes of 3x84x84
    /// inputs (two groups of tiles a row, the last ragged; one group), 16x16 (half a group), odd
    /// and narrow planes, planes of three groups, one pixel, one image and several.
    #[cfg(target_arch = "x86_64")]
    const ONE_PASS_CASES: [(usize, usize, usize, usize, usize); 11] = [
        (1, 0, 42, 42, 3),
        (2, 1, 42, 42, 2),
        (3, 0, 21, 21, 4),
        (1, 2, 21, 21, 64),
        (2, 0, 16, 16, 3),
        (3, 1, 17, 19, 2),
        (2, 0, 1, 1, 2),
        (3, 0, 2, 5, 2),
        (1, 1, 9, 70, 2),
        (2, 0, 5, 33, 3),
        (4, 0, 4, 4, 1),
    ];

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_input_transform_in_one_avx2_pass_has_the_two_passes_bits() {
        use super::super::tests::{assert_one_pass_bits, shape, to_f32};
        use crate::engine::gradcheck::test_values;
        if !super::super::avx2() {
            return;
        }
        for (nb, first, h, w, c) in ONE_PASS_CASES {
            let s = shape(c, 4, first + nb + 1, h, w);
            let tl = Tiling::new(&s, 4);
            let x = to_f32(&test_values(c * s.n * h * w, (h * 7 + w + c) as u64));
            let images = first..first + nb;
            assert_one_pass_bits(
                &format!("{nb} images from {first}, {h}x{w}, {c} channels"),
                |want| {
                    let sc = &mut Scratch::default();
                    input_transform_passes(&x, &s, images.clone(), tl, want, sc)
                },
                // SAFETY: the CPU has AVX2 (checked above).
                |got| unsafe { input_transform_fused(&x, &s, images.clone(), tl, got) },
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_output_adjoint_in_one_avx2_pass_has_the_passes_bits() {
        use super::super::tests::{assert_one_pass_bits, shape, to_f32};
        use crate::engine::gradcheck::test_values;
        if !super::super::avx2() {
            return;
        }
        for (nb, first, h, w, c) in ONE_PASS_CASES {
            let s = shape(2, c, first + nb + 1, h, w);
            let tl = Tiling::new(&s, 4);
            let dy = to_f32(&test_values(c * s.n * h * w, (h * 5 + w + c) as u64));
            let images = first..first + nb;
            assert_one_pass_bits(
                &format!("{nb} images from {first}, {h}x{w}, {c} channels"),
                |want| {
                    let sc = &mut Scratch::default();
                    output_transform_adjoint_passes(&dy, &s, images.clone(), tl, want, sc)
                },
                // SAFETY: the CPU has AVX2 (checked above).
                |got| unsafe { output_transform_adjoint_fused(&dy, &s, images.clone(), tl, got) },
            );
        }
    }

    /// One call of the input transform in two passes and in one, on 64 channels at the 3x84x84
    /// learner's F(4x4) planes (`cargo test --release -p bmssl --lib f4_one_pass_timings --
    /// --ignored --nocapture`): a measurement, not a test.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore]
    fn f4_one_pass_timings() {
        use super::super::tests::{best_us, shape, to_f32};
        use crate::engine::gradcheck::test_values;
        assert!(super::super::avx2(), "the timings are of the AVX2 build");
        for (nb, hw) in [
            (1, 42),
            (2, 42),
            (3, 21),
            (5, 21),
            (1, 21),
            (4, 16),
            (1, 16),
            (2, 32),
            (1, 20),
            (1, 24),
            (4, 24),
        ] {
            let s = shape(64, 64, nb, hw, hw);
            let tl = Tiling::new(&s, 4);
            let x = to_f32(&test_values(64 * nb * hw * hw, 5));
            let (mut v, mut sc) = (Vec::new(), Scratch::default());
            let passes = best_us(20, &mut || {
                input_transform_passes(&x, &s, 0..nb, tl, &mut v, &mut sc)
            });
            // SAFETY: the CPU has AVX2 (asserted above).
            let fused = best_us(20, &mut || unsafe {
                input_transform_fused(&x, &s, 0..nb, tl, &mut v)
            });
            let dy = x.clone();
            let adj = best_us(20, &mut || {
                output_transform_adjoint_passes(&dy, &s, 0..nb, tl, &mut v, &mut sc)
            });
            // SAFETY: the CPU has AVX2 (asserted above).
            let adj1 = best_us(20, &mut || unsafe {
                output_transform_adjoint_fused(&dy, &s, 0..nb, tl, &mut v)
            });
            eprintln!(
                "{nb} images x 64 channels, {hw}x{hw}: input transform, two passes {passes:.1} us, \
                 one pass {fused:.1} us; output adjoint, passes {adj:.1} us, one pass {adj1:.1} us"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_second_pass_has_the_portable_loops_bits() {
        use crate::engine::gradcheck::test_values;
        if !super::super::avx2() {
            return;
        }
        // Tile counts under, at and past whole groups of eight (121: one 42x42 image), one and
        // several channels, a later channel.
        for (nt, c, ci) in [(1, 1, 0), (8, 2, 1), (13, 3, 2), (121, 4, 1), (16, 1, 0)] {
            let pitch = nt + G;
            let d: Vec<f32> = test_values(36 * pitch, (nt * 7 + c) as u64)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let before: Vec<f32> = test_values(36 * c * nt, 99)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let mut want = before.clone();
            rows_portable(&d, pitch, &mut want, c, ci, nt, 0);
            let mut got = before;
            rows(&d, pitch, &mut got, c, ci, nt);
            assert_eq!(bits(&got), bits(&want), "{nt} tiles, channel {ci} of {c}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_tile_transforms_have_the_portable_loops_bits() {
        use crate::engine::gradcheck::test_values;
        if !super::super::avx2() {
            return;
        }
        let f32s = |len: usize, salt: u64| -> Vec<f32> {
            test_values(len, salt)
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        // Tile counts under, at and past whole groups of eight; one and several channels.
        for (nt, c, ch) in [(1, 1, 0), (8, 2, 1), (13, 3, 2), (121, 4, 1), (16, 1, 0)] {
            // (name, source and destination lengths, portable loops, AVX2 kernel)
            type Pass = (
                &'static str,
                usize,
                usize,
                [TileFn<f32>; 2],
                Option<SimdTileFn>,
            );
            let passes: [Pass; 3] = [
                (
                    "output transform",
                    36 * c * nt,
                    16 * nt,
                    [output_tiles::<f32, G>, output_tiles::<f32, 1>],
                    simd!(f4_output_tiles),
                ),
                (
                    "output adjoint",
                    16 * nt,
                    36 * c * nt,
                    [
                        output_adjoint_tiles::<f32, G>,
                        output_adjoint_tiles::<f32, 1>,
                    ],
                    simd!(f4_output_adjoint_tiles),
                ),
                (
                    "input adjoint",
                    36 * c * nt,
                    36 * nt,
                    [input_adjoint_tiles::<f32, G>, input_adjoint_tiles::<f32, 1>],
                    simd!(f4_input_adjoint_tiles),
                ),
            ];
            for (i, (what, src_len, dst_len, portable, simd)) in passes.into_iter().enumerate() {
                let src = f32s(src_len, (nt + 10 * i) as u64);
                let (mut got, mut want) = (f32s(dst_len, 3), f32s(dst_len, 3));
                tile_pass((&src, c, ch, nt, &mut got), portable, simd);
                tile_pass((&src, c, ch, nt, &mut want), portable, None);
                assert_eq!(bits(&got), bits(&want), "{what}, {nt} tiles");
            }
        }
    }

    /// The 1-D maps and their adjoints, as matrices: `<M x, y> = <x, M^T y>` for unit vectors.
    #[test]
    fn each_one_dimensional_map_and_its_adjoint_are_transposes() {
        let unit =
            |n: usize, i: usize| -> Vec<f64> { (0..n).map(|k| (k == i) as u8 as f64).collect() };
        for i in 0..6 {
            for k in 0..6 {
                let e: [f64; 6] = unit(6, i).try_into().unwrap();
                let f: [f64; 6] = unit(6, k).try_into().unwrap();
                assert_eq!(input_1d(e)[k], input_1d_adj(f)[i], "B^T[{k}][{i}]");
            }
            for p in 0..4 {
                let e: [f64; 6] = unit(6, i).try_into().unwrap();
                let f: [f64; 4] = unit(4, p).try_into().unwrap();
                assert_eq!(output_1d(e)[p], output_1d_adj(f)[i], "A^T[{p}][{i}]");
            }
            for r in 0..3 {
                let e: [f64; 3] = unit(3, r).try_into().unwrap();
                let f: [f64; 6] = unit(6, i).try_into().unwrap();
                assert_eq!(weight_1d(e)[i], weight_1d_adj(f)[r], "G[{i}][{r}]");
            }
        }
    }

    /// `A^T [(G g) . (B^T d)]` is the 1-D correlation of `d` with `g`: the identity F(4, 3)
    /// rests on.
    #[test]
    fn the_one_dimensional_transforms_compute_a_correlation() {
        let d = [0.3, -1.2, 2.5, 0.7, -0.4, 1.9];
        let g = [0.5, -0.8, 1.3];
        let (u, v) = (weight_1d(g), input_1d(d));
        let m: [f64; 6] = std::array::from_fn(|i| u[i] * v[i]);
        let y = output_1d(m);
        for (o, &yo) in y.iter().enumerate() {
            let want: f64 = (0..3).map(|k| d[o + k] * g[k]).sum();
            assert!((yo - want).abs() < 1e-12, "{o}: {yo} vs {want}");
        }
    }
}

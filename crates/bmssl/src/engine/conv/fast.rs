//! Fast kernels for the 3x3 "same" convolution on real numbers (`f32` uses them, and dual numbers
//! through `conv/dual.rs`, as [`super::forward`] and [`super::backward`] decide; `f64` keeps the
//! im2col + GEMM path of `conv.rs`, the reference these kernels are tested against).
//!
//! Over 400 lines because the two kernels (direct and Winograd F(2x2)), their backward passes, the
//! SSE2/AVX2 dispatch and the tests against the reference belong together: each kernel is checked
//! against the other path in the same file.
//!
//! - Few input channels (the first layer, `C_in <= 4`): a direct convolution over a zero-padded
//!   copy of the input, vectorised along image rows. im2col + GEMM with an inner dimension of
//!   `9 C_in` spends its time packing, not multiplying.
//! - Otherwise: Winograd F(2x2, 3x3) (Lavin & Gray 2016). Each 2x2 output tile is
//!   `A^T [(G g G^T) . (B^T d B)] A` of its 4x4 input tile `d`: 16 products per tile and channel
//!   pair instead of 36, computed as 16 GEMMs `M_xi [C_out, T] = U_xi [C_out, C_in] V_xi [C_in, T]`
//!   over the tiles `T` of a few images at a time. The backward pass is the exact adjoint of the
//!   same three linear maps: `dM = A dY A^T`, `dU_xi = dM_xi V_xi^T`, `dg = G^T dU G`,
//!   `dV_xi = U_xi^T dM_xi`, `dd = B dV B^T` scattered back onto the (overlapping) input tiles.
//!   Odd sizes work: tiles hang over the bottom/right edge, reading zeros and writing nothing.
//! - Planes of at most `small::MAX_SIDE` (3) on a side (Omniglot's fourth block): im2col and one
//!   matrix product per chunk of images, in `fast/small.rs` (Winograd's fixed costs, the weight
//!   transform and quarter-full tile groups, outweighed its savings there).
//! - Planes of side `F4_MIN_SIDE` (16) and more (the 42x42 and 21x21 layers of 3x84x84 inputs):
//!   Winograd F(4x4, 3x3), 36 products per 4x4 output tile, in `fast/winograd4.rs` (its own
//!   file: the same structure with 6x6 tiles).
//!
//! - `fast/avx2.rs`: loops of this file and of `winograd4.rs` in AVX2 intrinsics for `f32` (the
//!   direct kernel's forward and weight gradient, the input transforms, the F(2x2) output and
//!   weight transforms and both F(2x2) adjoints of the backward pass, the F(4x4) tile transforms),
//!   where the compiler's code for the portable loops was slow; the same operations in the same
//!   order, so the same bits (tests below and in `winograd4.rs` compare them with the portable
//!   loops).
//!
//! All are single-threaded and sum in a fixed order, so results are bit-reproducible.

#[cfg(target_arch = "x86_64")]
use super::products::{as_f32, as_f32_mut};
use super::{products, ConvGrads, ConvShape};
use crate::engine::reduce::{row_sums, sum};
use crate::engine::scalar::{MatRef, Real};
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod small;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(avx2::W == LANES);
mod winograd4;

/// Smallest image side at which F(4x4, 3x3) ([`winograd4`]) computes a convolution instead of
/// F(2x2, 3x3): the 42x42 and 21x21 planes of 3x84x84 inputs. Measured (`kernel_timings` below,
/// 64 -> 128 channels, one thread, 2-core AVX2 EPYC, 2026-12-07), F(2x2) / F(4x4) ms: 42x42
/// forward 21.5 / 17.1, backward 42.7 / 32.1; 21x21 6.0 / 5.5, 11.6 / 11.0. Meta-steps at 3x84x84
/// are +10-11% faster than with F(2x2) everywhere (`docs/results/engine-f4-2026-12-07/`).
///
/// On Omniglot's planes (14, 7, 3) one such call is faster in some passes and slower in others,
/// but whole Omniglot meta-steps with F(4x4) there were 11% slower (five alternating runs): they
/// keep F(2x2), and so their bits.
const F4_MIN_SIDE: usize = 16;

/// Whether [`winograd4`] computes this (Winograd) convolution.
fn use_f4(s: &ConvShape) -> bool {
    s.h.min(s.w) >= F4_MIN_SIDE
}

/// Input channels up to which the direct kernel is used instead of Winograd (the learner runs
/// such blocks a few output channels at a time: `conv::computes_channels_independently`).
pub(super) const DIRECT_MAX_C_IN: usize = 4;

/// Transformed-input elements (`16 * C_in * tiles`) per chunk of images (1 MiB of f32): the
/// transformed input and output of a chunk stay in cache.
const CHUNK_ELEMS: usize = 1 << 18;

/// Forward through a fast kernel, or `None` where none applies (not 3x3, or empty).
pub fn forward<F: Real>(x: &[F], weight: &[F], bias: &[F], s: &ConvShape) -> Option<Vec<F>> {
    let mut y = Vec::new();
    forward_append(x, weight, bias, s, &mut y).then_some(y)
}

/// [`forward`] appending its output `[C_out, N, H, W]` to `out` instead of returning a new vector:
/// the direct kernel writes there row by row, so a caller that keeps the output of several calls
/// side by side (the learner's first block, run a few output channels at a time) copies nothing.
/// Same bits as [`forward`]. `false` (and `out` untouched) where no fast kernel applies.
pub fn forward_append<F: Real>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
) -> bool {
    if s.k != 3 || s.positions() == 0 || s.c_in == 0 || s.c_out == 0 {
        return false;
    }
    check(s, x, weight);
    assert_eq!(bias.len(), s.c_out, "conv: bias has the wrong length");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        unsafe { forward_avx2(x, weight, bias, s, out) };
        return true;
    }
    forward_impl(x, weight, bias, s, out);
    true
}

/// Whether the CPU runs the AVX2 build of the kernels (detected once, cached by `std`).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

// The kernels are written as plain loops over slices; the same code compiled with AVX2 enabled
// (the crate's baseline is SSE2) runs their vectorised loops twice as wide. Everything below the
// two `*_impl` functions is `#[inline(always)]` so that it is compiled inside each copy.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<F: Real>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
) {
    forward_impl(x, weight, bias, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    backward_impl(dy, x, weight, s, need_input)
}

#[inline(always)]
fn forward_impl<F: Real>(x: &[F], weight: &[F], bias: &[F], s: &ConvShape, out: &mut Vec<F>) {
    if s.c_in <= DIRECT_MAX_C_IN {
        return direct_forward(x, weight, bias, s, out);
    }
    if small::applies(s) {
        return small::forward_append(x, weight, bias, s, out);
    }
    let y = if use_f4(s) {
        winograd_forward::<winograd4::F4, F>(x, weight, bias, s)
    } else {
        winograd_forward::<F2, F>(x, weight, bias, s)
    };
    if out.is_empty() {
        *out = y;
    } else {
        out.extend_from_slice(&y);
    }
}

#[inline(always)]
fn backward_impl<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    if s.c_in <= DIRECT_MAX_C_IN {
        direct_backward(dy, x, weight, s, need_input)
    } else if small::applies(s) {
        small::backward(dy, x, weight, s, need_input)
    } else if use_f4(s) {
        winograd_backward::<winograd4::F4, F>(dy, x, weight, s, need_input)
    } else {
        winograd_backward::<F2, F>(dy, x, weight, s, need_input)
    }
}

/// Backward through a fast kernel (as `conv::backward`), or `None` where none applies.
pub fn backward<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> Option<ConvGrads<F>> {
    if s.k != 3 || s.positions() == 0 || s.c_in == 0 || s.c_out == 0 {
        return None;
    }
    check(s, x, weight);
    assert_eq!(
        dy.len(),
        s.c_out * s.positions(),
        "conv: dy has the wrong length"
    );
    #[cfg(target_arch = "x86_64")]
    let (weight_grad, input) = if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        unsafe { backward_avx2(dy, x, weight, s, need_input) }
    } else {
        backward_impl(dy, x, weight, s, need_input)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (weight_grad, input) = backward_impl(dy, x, weight, s, need_input);
    Some(ConvGrads {
        weight: weight_grad,
        bias: row_sums(dy, s.positions()),
        input,
    })
}

/// Whether the direct kernel computes this convolution (a nonempty 3x3 convolution with at most
/// [`DIRECT_MAX_C_IN`] input channels): the shapes [`pad_input`] and the `*_padded` calls serve.
pub fn is_direct(s: &ConvShape) -> bool {
    s.k == 3 && s.positions() > 0 && (1..=DIRECT_MAX_C_IN).contains(&s.c_in) && s.c_out > 0
}

/// The zero-padded planes `[C_in, N, H+2, W+2]` of a direct-kernel convolution's input `x`
/// ([`is_direct`]), which [`forward_padded_append`] and [`backward_padded`] read: a caller running
/// several calls on the same input (the learner's first block, a few output channels at a time)
/// pads it once instead of once per call.
pub fn pad_input<F: Real>(x: &[F], s: &ConvShape) -> Vec<F> {
    assert_eq!(
        x.len(),
        s.c_in * s.positions(),
        "conv: input has the wrong length"
    );
    pad(x, s.c_in * s.n, s.h, s.w)
}

fn check_padded<F>(s: &ConvShape, xp: &[F], weight: &[F]) {
    assert!(is_direct(s), "conv: not a direct-kernel shape");
    assert_eq!(
        xp.len(),
        s.c_in * s.n * (s.h + 2) * (s.w + 2),
        "conv: padded input has the wrong length"
    );
    assert_eq!(
        weight.len(),
        s.c_out * s.patch(),
        "conv: weight has the wrong length"
    );
}

/// [`forward_append`] of a direct-kernel shape from the input's padded planes ([`pad_input`]):
/// the same bits.
pub fn forward_padded_append<F: Real>(
    xp: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
) {
    check_padded(s, xp, weight);
    assert_eq!(bias.len(), s.c_out, "conv: bias has the wrong length");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        unsafe { direct_forward_padded_avx2(xp, weight, bias, s, out) };
        return;
    }
    direct_forward_padded(xp, weight, bias, s, out);
}

/// [`backward`] of a direct-kernel shape, without the input gradient, from the input's padded
/// planes ([`pad_input`]): the same bits.
pub fn backward_padded<F: Real>(dy: &[F], xp: &[F], weight: &[F], s: &ConvShape) -> ConvGrads<F> {
    check_padded(s, xp, weight);
    assert_eq!(
        dy.len(),
        s.c_out * s.positions(),
        "conv: dy has the wrong length"
    );
    #[cfg(target_arch = "x86_64")]
    let (weight_grad, _) = if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        unsafe { direct_backward_padded_avx2(dy, xp, weight, s) }
    } else {
        direct_backward_padded(dy, xp, weight, s, false)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (weight_grad, _) = direct_backward_padded(dy, xp, weight, s, false);
    ConvGrads {
        weight: weight_grad,
        bias: row_sums(dy, s.positions()),
        input: None,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_forward_padded_avx2<F: Real>(
    xp: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
) {
    if s.w >= avx2::W {
        if let (Some(xp), Some(weight), Some(bias)) = (as_f32(xp), as_f32(weight), as_f32(bias)) {
            let len = s.c_out * s.positions();
            out.reserve(len);
            let y = uninit_as_f32(&mut out.spare_capacity_mut()[..len]).expect("F is f32");
            avx2::direct_forward(xp, weight, bias, (s.c_in, s.c_out, s.n, s.h, s.w), y);
            // SAFETY: `direct_forward` wrote every one of the `len` values past the old length.
            out.set_len(out.len() + len);
            return;
        }
    }
    direct_forward_padded(xp, weight, bias, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_backward_padded_avx2<F: Real>(
    dy: &[F],
    xp: &[F],
    weight: &[F],
    s: &ConvShape,
) -> (Vec<F>, Option<Vec<F>>) {
    direct_backward_padded(dy, xp, weight, s, false)
}

fn check<F>(s: &ConvShape, x: &[F], weight: &[F]) {
    assert_eq!(
        x.len(),
        s.c_in * s.positions(),
        "conv: input has the wrong length"
    );
    assert_eq!(
        weight.len(),
        s.c_out * s.patch(),
        "conv: weight has the wrong length"
    );
}

/// Zero-padded copy `[C, N, H+2, W+2]` of `x [C, N, H, W]`.
#[inline(always)]
fn pad<F: Real>(x: &[F], planes: usize, h: usize, w: usize) -> Vec<F> {
    let (hp, wp) = (h + 2, w + 2);
    let mut xp = vec![F::default(); planes * hp * wp];
    for (src, dst) in x.chunks_exact(h * w).zip(xp.chunks_exact_mut(hp * wp)) {
        for (srow, drow) in src.chunks_exact(w).zip(dst[wp..].chunks_exact_mut(wp)) {
            drow[1..=w].copy_from_slice(srow);
        }
    }
    xp
}

// ---------------------------------------------------------------------------------------------
// Direct kernel for few input channels.

/// The direct kernel's output, appended to `y` (each element written once, in order: no
/// zero-fill of the largest activation).
#[inline(always)]
fn direct_forward<F: Real>(x: &[F], weight: &[F], bias: &[F], s: &ConvShape, y: &mut Vec<F>) {
    forward_padded_append(&pad(x, s.c_in * s.n, s.h, s.w), weight, bias, s, y)
}

/// [`direct_forward`] from the input's padded planes `xp` `[C_in, N, H+2, W+2]`: the portable
/// loop, and the reference of [`avx2::direct_forward`] (which `f32` runs on an AVX2 CPU where
/// rows hold at least a vector).
#[inline(always)]
fn direct_forward_padded<F: Real>(
    xp: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    y: &mut Vec<F>,
) {
    let (n, h, w) = (s.n, s.h, s.w);
    let (hp, wp) = (h + 2, w + 2);
    // Outputs are computed in the padded planes' row pitch, `out[oy * wp + ox]`, as one flat
    // vectorisable loop over `len` positions (the two columns past each row are garbage and
    // dropped); the last row's two extra columns are left out so that all reads stay in the plane.
    let len = h * wp - 2;
    let mut acc = vec![F::default(); len];
    y.reserve(s.c_out * s.positions());
    for o in 0..s.c_out {
        for b in 0..n {
            acc.fill(bias[o]);
            for ci in 0..s.c_in {
                let p = &xp[(ci * n + b) * hp * wp..(ci * n + b + 1) * hp * wp];
                let k = &weight[(o * s.c_in + ci) * 9..(o * s.c_in + ci + 1) * 9];
                let sh = |ky: usize, kx: usize| &p[ky * wp + kx..ky * wp + kx + len];
                let (a0, a1, a2) = (sh(0, 0), sh(0, 1), sh(0, 2));
                let (b0, b1, b2) = (sh(1, 0), sh(1, 1), sh(1, 2));
                let (c0, c1, c2) = (sh(2, 0), sh(2, 1), sh(2, 2));
                let acc = &mut acc[..len];
                for i in 0..len {
                    let t = (k[0] * a0[i] + k[1] * a1[i] + k[2] * a2[i])
                        + (k[3] * b0[i] + k[4] * b1[i] + k[5] * b2[i])
                        + (k[6] * c0[i] + k[7] * c1[i] + k[8] * c2[i]);
                    acc[i] += t;
                }
            }
            for oy in 0..h {
                y.extend_from_slice(&acc[oy * wp..oy * wp + w]);
            }
        }
    }
}

/// Returns `(dW, dx)`.
#[inline(always)]
fn direct_backward<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    direct_backward_padded(dy, &pad(x, s.c_in * s.n, s.h, s.w), weight, s, need_input)
}

/// [`direct_backward`] from the input's padded planes `xp` `[C_in, N, H+2, W+2]`.
#[inline(always)]
fn direct_backward_padded<F: Real>(
    dy: &[F],
    xp: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    let (n, h, w) = (s.n, s.h, s.w);
    let (hp, wp) = (h + 2, w + 2);
    // dW[o][ci][ky][kx] = sum over positions of dy * xp shifted by (ky, kx), in the padded
    // planes' row pitch (dy copied there with zeros in the extra columns). The nine sums of a
    // kernel run in one pass over the positions, LANES at a time, in nine accumulators that stay
    // in registers across the batch (a pass per tap through a nine-row buffer in memory was a
    // load and a store per multiply-add); the lanes are summed at the end.
    let len = h * wp - 2;
    let mut dyp = vec![F::default(); n * h * wp];
    let mut dw = vec![F::default(); s.c_out * s.patch()];
    for o in 0..s.c_out {
        for (src, dst) in dy[o * n * h * w..(o + 1) * n * h * w]
            .chunks_exact(w)
            .zip(dyp.chunks_exact_mut(wp))
        {
            dst[..w].copy_from_slice(src);
        }
        for ci in 0..s.c_in {
            let planes = &xp[ci * n * hp * wp..(ci + 1) * n * hp * wp];
            let (acc, rest) = tap_sums(planes, hp * wp, &dyp, h * wp, n, wp, len);
            for (kk, (a, r)) in acc.iter().zip(rest).enumerate() {
                dw[(o * s.c_in + ci) * 9 + kk] = sum(a) + r;
            }
        }
    }
    let dx = need_input.then(|| {
        // dxp[ci][b][oy+ky][ox+kx] += W[o][ci][ky][kx] dy[o][b][oy][ox], then unpad.
        let mut dxp = vec![F::default(); s.c_in * n * hp * wp];
        for ci in 0..s.c_in {
            for b in 0..n {
                let plane = &mut dxp[(ci * n + b) * hp * wp..(ci * n + b + 1) * hp * wp];
                for o in 0..s.c_out {
                    let k = &weight[(o * s.c_in + ci) * 9..(o * s.c_in + ci + 1) * 9];
                    let dimg = &dy[(o * n + b) * h * w..(o * n + b + 1) * h * w];
                    for (oy, drow) in dimg.chunks_exact(w).enumerate() {
                        for ky in 0..3 {
                            let prow = &mut plane[(oy + ky) * wp..(oy + ky) * wp + wp];
                            for kx in 0..3 {
                                let kv = k[ky * 3 + kx];
                                for (p, &d) in prow[kx..kx + w].iter_mut().zip(drow) {
                                    *p += kv * d;
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut dx = vec![F::default(); s.c_in * s.positions()];
        for (dst, src) in dx.chunks_exact_mut(h * w).zip(dxp.chunks_exact(hp * wp)) {
            for (drow, srow) in dst.chunks_exact_mut(w).zip(src[wp..].chunks_exact(wp)) {
                drow.copy_from_slice(&srow[1..=w]);
            }
        }
        dx
    });
    (dw, dx)
}

/// The nine tap sums of [`direct_backward`] for one (output, input) channel pair: `planes` holds
/// the batch's padded input planes of the input channel (`plane` values each, rows of `wp`), `dyp`
/// the output channel's gradient in the padded row pitch (`dy_stride` values per image), `len`
/// positions per image. Each tap's sum runs `LANES` positions at a time in `LANES` accumulators
/// (returned unsummed), the positions past the last whole group in a scalar one. `f32` on an AVX2
/// CPU runs [`avx2::tap_sums`], the same operations in the same order.
#[inline(always)]
fn tap_sums<F: Real>(
    planes: &[F],
    plane: usize,
    dyp: &[F],
    dy_stride: usize,
    n: usize,
    wp: usize,
    len: usize,
) -> ([[F; LANES]; 9], [F; 9]) {
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(p), Some(d)) = (avx2(), as_f32(planes), as_f32(dyp)) {
        // SAFETY: the CPU has AVX2 (checked at run time); `tap_sums` checks its bounds.
        let (acc, rest) = unsafe { avx2::tap_sums(p, plane, d, dy_stride, n, wp, len) };
        // F is f32 (`as_f32` said so): these copy f32 arrays to themselves.
        // SAFETY: same type, same size.
        return unsafe {
            (
                std::mem::transmute_copy::<[[f32; LANES]; 9], [[F; LANES]; 9]>(&acc),
                std::mem::transmute_copy::<[f32; 9], [F; 9]>(&rest),
            )
        };
    }
    tap_sums_portable(planes, plane, dyp, dy_stride, n, wp, len)
}

/// [`tap_sums`] as plain loops (every number type; the reference of the AVX2 kernel).
#[inline(always)]
fn tap_sums_portable<F: Real>(
    planes: &[F],
    plane: usize,
    dyp: &[F],
    dy_stride: usize,
    n: usize,
    wp: usize,
    len: usize,
) -> ([[F; LANES]; 9], [F; 9]) {
    let body = len / LANES * LANES;
    let offs: [usize; 9] = std::array::from_fn(|kk| (kk / 3) * wp + kk % 3);
    let mut acc = [[F::default(); LANES]; 9];
    let mut rest = [F::default(); 9];
    for b in 0..n {
        let p = &planes[b * plane..(b + 1) * plane];
        let d = &dyp[b * dy_stride..b * dy_stride + len];
        for i in (0..body).step_by(LANES) {
            let dv: &[F; LANES] = d[i..i + LANES].try_into().expect("LANES values");
            for (a, &off) in acc.iter_mut().zip(&offs) {
                let pv: &[F; LANES] = p[off + i..off + i + LANES]
                    .try_into()
                    .expect("LANES values");
                for l in 0..LANES {
                    a[l] += dv[l] * pv[l];
                }
            }
        }
        for i in body..len {
            for (r, &off) in rest.iter_mut().zip(&offs) {
                *r += d[i] * p[off + i];
            }
        }
    }
    (acc, rest)
}

// ---------------------------------------------------------------------------------------------
// Winograd F(2x2, 3x3).

/// Tiles of one image for F(m x m, 3x3): `th x tw` tiles of m x m outputs, reading (m + 2)^2
/// inputs from the image padded by one zero row/column on top/left (and zeros beyond the
/// bottom/right).
#[derive(Clone, Copy)]
struct Tiling {
    th: usize,
    tw: usize,
}

impl Tiling {
    fn new(s: &ConvShape, m: usize) -> Self {
        Tiling {
            th: s.h.div_ceil(m),
            tw: s.w.div_ceil(m),
        }
    }
    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// The batch split into nearly equal ranges of images of at most `max_elems` elements each
/// (at least one image per range).
fn image_chunks(n: usize, per_image: usize, max_elems: usize) -> Vec<Range<usize>> {
    let count = (n * per_image.max(1))
        .div_ceil(max_elems.max(1))
        .clamp(1, n.max(1));
    (0..count)
        .map(|c| c * n / count..(c + 1) * n / count)
        .collect()
}

#[inline(always)]
fn map2<F: Real>(out: &mut [F], a: &[F], b: &[F], f: impl Fn(F, F) -> F) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

#[inline(always)]
fn map3<F: Real>(out: &mut [F], a: &[F], b: &[F], c: &[F], f: impl Fn(F, F, F) -> F) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = f(a, b, c);
    }
}

/// Values handled together by the loops written over fixed-size arrays (which the compiler turns
/// into vector registers): kernels in [`transform_weights`] and its adjoint, whose 16 planes of
/// `U` are then written (or read) `LANES` contiguous values at a time instead of one scattered
/// value per kernel; positions in the direct kernel's weight gradient.
const LANES: usize = 8;

/// `U [16][C_out][C_in] = G g G^T` of every 3x3 kernel `g` of `weight [C_out, C_in, 3, 3]`
/// (the kernels write into their reused buffers with [`transform_weights_into`]).
#[cfg(test)]
fn transform_weights<F: Real>(weight: &[F], c_out: usize, c_in: usize) -> Vec<F> {
    let mut u = Vec::new();
    transform_weights_into(weight, c_out, c_in, &mut u);
    u
}

/// [`transform_weights`] into `u`, resized to `16 C_out C_in` (every element is written, so a
/// reused buffer is neither zeroed nor faulted in again).
#[inline(always)]
fn transform_weights_into<F: Real>(weight: &[F], c_out: usize, c_in: usize, u: &mut Vec<F>) {
    let pairs = c_out * c_in;
    u.resize(16 * pairs, F::default());
    // The same operations as the one-kernel loop below, in the same order, so the same bits.
    let blocks = pairs / LANES;
    #[cfg(target_arch = "x86_64")]
    let first = match (avx2(), as_f32(weight), as_f32_mut(&mut u[..])) {
        (true, Some(w), Some(u)) => {
            // SAFETY: the CPU has AVX2 (checked at run time); `f2_weights` checks its bounds.
            unsafe { avx2::f2_weights(w, pairs, blocks, u) };
            blocks
        }
        _ => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let first = 0;
    transform_weights_portable(weight, pairs, first, u);
}

/// [`transform_weights_into`] as plain loops, from group `first` of `LANES` kernels on (and the
/// kernels past the last whole group): every number type, and the reference of the AVX2 kernel.
#[inline(always)]
fn transform_weights_portable<F: Real>(weight: &[F], pairs: usize, first: usize, u: &mut [F]) {
    let half = F::from_f64(0.5);
    let blocks = pairs / LANES;
    for blk in first..blocks {
        let base = blk * LANES;
        let mut g = [[F::default(); LANES]; 9];
        for l in 0..LANES {
            for (e, ge) in g.iter_mut().enumerate() {
                ge[l] = weight[(base + l) * 9 + e];
            }
        }
        let mut t = [[[F::default(); LANES]; 3]; 4];
        for b in 0..3 {
            for l in 0..LANES {
                let (g0, g1, g2) = (g[b][l], g[3 + b][l], g[6 + b][l]);
                t[0][b][l] = g0;
                t[1][b][l] = (g0 + g1 + g2) * half;
                t[2][b][l] = (g0 - g1 + g2) * half;
                t[3][b][l] = g2;
            }
        }
        for (i, r) in t.iter().enumerate() {
            let mut row = [[F::default(); LANES]; 4];
            for l in 0..LANES {
                let (r0, r1, r2) = (r[0][l], r[1][l], r[2][l]);
                row[0][l] = r0;
                row[1][l] = (r0 + r1 + r2) * half;
                row[2][l] = (r0 - r1 + r2) * half;
                row[3][l] = r2;
            }
            for (j, vals) in row.iter().enumerate() {
                let at = (i * 4 + j) * pairs + base;
                u[at..at + LANES].copy_from_slice(vals);
            }
        }
    }
    for (oi, g) in weight.chunks_exact(9).enumerate().skip(blocks * LANES) {
        // rows of G g (4 x 3)
        let mut t = [[F::default(); 3]; 4];
        for b in 0..3 {
            let (g0, g1, g2) = (g[b], g[3 + b], g[6 + b]);
            t[0][b] = g0;
            t[1][b] = (g0 + g1 + g2) * half;
            t[2][b] = (g0 - g1 + g2) * half;
            t[3][b] = g2;
        }
        for (i, r) in t.iter().enumerate() {
            let row = [
                r[0],
                (r[0] + r[1] + r[2]) * half,
                (r[0] - r[1] + r[2]) * half,
                r[2],
            ];
            for (j, &v) in row.iter().enumerate() {
                u[(i * 4 + j) * pairs + oi] = v;
            }
        }
    }
}

/// Adjoint of [`transform_weights`]: `dW [C_out, C_in, 3, 3] = G^T dU G`.
#[inline(always)]
fn transform_weights_adjoint<F: Real>(du: &[F], c_out: usize, c_in: usize) -> Vec<F> {
    let half = F::from_f64(0.5);
    let pairs = c_out * c_in;
    let mut dw = vec![F::default(); pairs * 9];
    let blocks = pairs / LANES;
    for blk in 0..blocks {
        let base = blk * LANES;
        // d[i][j][l] = dU[i][j] of kernel base + l, read LANES contiguous values at a time.
        let mut d = [[[F::default(); LANES]; 4]; 4];
        for (i, di) in d.iter_mut().enumerate() {
            for (j, dij) in di.iter_mut().enumerate() {
                let at = (i * 4 + j) * pairs + base;
                dij.copy_from_slice(&du[at..at + LANES]);
            }
        }
        let mut t = [[[F::default(); LANES]; 3]; 4];
        for (i, r) in t.iter_mut().enumerate() {
            for l in 0..LANES {
                let (u0, u1, u2, u3) = (d[i][0][l], d[i][1][l], d[i][2][l], d[i][3][l]);
                r[0][l] = u0 + (u1 + u2) * half;
                r[1][l] = (u1 - u2) * half;
                r[2][l] = (u1 + u2) * half + u3;
            }
        }
        let mut g = [[F::default(); LANES]; 9];
        for b in 0..3 {
            for l in 0..LANES {
                let (t0, t1, t2, t3) = (t[0][b][l], t[1][b][l], t[2][b][l], t[3][b][l]);
                g[b][l] = t0 + (t1 + t2) * half;
                g[3 + b][l] = (t1 - t2) * half;
                g[6 + b][l] = (t1 + t2) * half + t3;
            }
        }
        for l in 0..LANES {
            for (e, ge) in g.iter().enumerate() {
                dw[(base + l) * 9 + e] = ge[l];
            }
        }
    }
    for (oi, g) in dw.chunks_exact_mut(9).enumerate().skip(blocks * LANES) {
        let d = |i: usize, j: usize| du[(i * 4 + j) * pairs + oi];
        // t[i][b] = sum_j dU[i][j] G[j][b]
        let mut t = [[F::default(); 3]; 4];
        for (i, r) in t.iter_mut().enumerate() {
            let (u0, u1, u2, u3) = (d(i, 0), d(i, 1), d(i, 2), d(i, 3));
            r[0] = u0 + (u1 + u2) * half;
            r[1] = (u1 - u2) * half;
            r[2] = (u1 + u2) * half + u3;
        }
        for b in 0..3 {
            let (t0, t1, t2, t3) = (t[0][b], t[1][b], t[2][b], t[3][b]);
            g[b] = t0 + (t1 + t2) * half;
            g[3 + b] = (t1 - t2) * half;
            g[6 + b] = (t1 + t2) * half + t3;
        }
    }
    dw
}

/// Scratch buffers of the transforms, reused across chunks.
#[derive(Default)]
struct Scratch<F> {
    /// A padded image plane, or row.
    row: Vec<F>,
    /// Intermediate rows of `nt` values (16, 8 or 4 of them).
    a: Vec<F>,
    b: Vec<F>,
}

/// The buffers of the Winograd passes, kept per thread from one call to the next (the passes
/// run thousands of times on the same shapes: allocating and zeroing them each time cost more
/// than the transforms).
#[derive(Default)]
struct Buffers<F> {
    v: Vec<F>,
    m: Vec<F>,
    /// The transformed weights `U`, and their gradient `dU`.
    u: Vec<F>,
    du: Vec<F>,
    sc: Scratch<F>,
}

thread_local! {
    /// One [`Buffers`] per number type, type-erased.
    static POOL: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn take_buffers<F: Real>() -> Buffers<F> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|b| b.is::<Buffers<F>>())?;
        p.swap_remove(i).downcast::<Buffers<F>>().ok().map(|b| *b)
    })
    .unwrap_or_default()
}

fn put_buffers<F: Real>(b: Buffers<F>) {
    POOL.with(|p| p.borrow_mut().push(Box::new(b)));
}

/// Makes the pooled buffer `v` at least `n` long, never shorter, for a kernel that writes its
/// first `n` elements before it reads them (and indexes them explicitly): `resize` zero-fills
/// (`memset`) whatever it grows, and the buffers went from a 7x7 or 3x3 layer's length back to a
/// 14x14 layer's many times a meta-step (memset was 4-5% of an Omniglot BMSSL step in `perf`).
/// The buffer's capacity, and so the memory it holds, is what it was.
#[inline(always)]
pub(super) fn at_least<F: Copy + Default>(v: &mut Vec<F>, n: usize) {
    if v.len() < n {
        v.resize(n, F::default());
    }
}

/// Tile columns handled together in the input transform's first pass (eight tiles of one tile
/// row: one AVX2 register of `f32`). It computes each value with the same operations as one tile
/// at a time did (a tile per iteration, each interior row twice), so the same bits.
const TILE_LANES: usize = 8;

/// `V [16][C_in][nt] = B^T d B` of the input tiles of `images` (tiles in image, row, column order):
/// in one pass per image plane ([`input_transform_fused`]) for `f32` on a CPU with AVX2 where its
/// stores stay in L1, otherwise in two passes over the chunk ([`input_transform_two_pass`]). The
/// same bits either way.
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
    if avx2() && avx2::f2_input_fits_l1(s.c_in * images.len() * tl.per_image()) {
        if let (Some(x), Some(v)) = (as_f32(x), super::cast_vec_mut::<F, f32>(v)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { input_transform_fused(x, s, images, tl, v) };
        }
    }
    input_transform_two_pass(x, s, images, tl, v, sc)
}

/// [`input_transform`] by [`avx2::f2_input`], one image plane at a time, both passes in one and
/// straight from the planes (no padded copy, no intermediate planes).
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
    each_plane(
        x,
        s.c_in,
        s,
        images,
        tl,
        16,
        v,
        |img, v, at, stride, after| {
            // SAFETY: the CPU has AVX2 (this function's contract); `f2_input` checks its bounds.
            unsafe { avx2::f2_input(img, h, w, th, tw, v, at, stride, after) }
        },
    )
}

/// The walk of the one passes that turn each image plane of a chunk into its tiles' values in
/// `planes` planes (`input_transform_fused` and `output_transform_adjoint_fused`, here and in
/// `winograd4.rs`): `out` made at least `planes c nt` long (`c` channels of `src`, `nt` tiles in
/// the chunk; the kernel writes every element), then `kernel(plane, out, at, c nt, after)` for
/// each channel and image of `images` in turn: `at` is where the image's tiles of that channel
/// start in each plane, `c nt` the stride between planes, `after` the tiles of the chunk's later
/// images (stored by later calls, so stores may run past this image's).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn each_plane(
    src: &[f32],
    c: usize,
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    planes: usize,
    out: &mut Vec<f32>,
    mut kernel: impl FnMut(&[f32], &mut [f32], usize, usize, usize),
) {
    let (hw, per_image) = (s.h * s.w, tl.per_image());
    let nt = images.len() * per_image;
    at_least(out, planes * c * nt);
    for ch in 0..c {
        for (bi, b) in images.clone().enumerate() {
            let plane = &src[(ch * s.n + b) * hw..(ch * s.n + b + 1) * hw];
            let after = (images.len() - bi - 1) * per_image;
            kernel(plane, out, ch * nt + bi * per_image, c * nt, after);
        }
    }
}

/// [`input_transform`] in two passes over the chunk, one input channel at a time: the columns of
/// each image's tiles ([`columns`], or [`avx2::f2_columns`]) into 16 intermediate rows of `nt`
/// values, then the rows, vectorised over the tiles.
#[inline(always)]
fn input_transform_two_pass<F: Real>(
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
    // Tile columns rounded up to whole groups of TILE_LANES; the padded plane is wide enough for
    // them (zeros past the image), and each of the 16 rows of `d` has TILE_LANES values of slack,
    // so a group may write past its tile row's end: those values belong to the next tile row (or
    // the slack) and are overwritten before they are read.
    // (Narrow planes, under TILE_LANES tiles a row, take half as many at a time.)
    let lanes = if tl.tw >= TILE_LANES {
        TILE_LANES
    } else {
        TILE_LANES / 2
    };
    let wp = 2 * tl.tw.div_ceil(lanes) * lanes + 2;
    let pitch = nt + TILE_LANES;
    // Every element of `v[..16 c nt]` is written below.
    at_least(v, 16 * c * nt);
    // The padded plane (2 th + 2 rows of wp): only the image part is ever overwritten.
    sc.row.clear();
    sc.row.resize((2 * tl.th + 2) * wp, F::default());
    sc.a.resize(16 * pitch, F::default());
    let d = &mut sc.a;
    #[cfg(target_arch = "x86_64")]
    let simd = avx2();
    for ci in 0..c {
        // Columns (see `columns`), then rows.
        for (bi, b) in images.clone().enumerate() {
            let img = &x[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
            #[cfg(target_arch = "x86_64")]
            if let (true, Some(img), Some(row)) = (simd, as_f32(img), as_f32_mut(&mut sc.row)) {
                // SAFETY: the CPU has AVX2 (`simd`); `pad_rows` checks its bounds.
                unsafe { avx2::pad_rows(img, s.h, s.w, row, wp) };
            } else {
                pad_rows(img, s.w, &mut sc.row, wp);
            }
            #[cfg(not(target_arch = "x86_64"))]
            pad_rows(img, s.w, &mut sc.row, wp);
            #[cfg(target_arch = "x86_64")]
            if let (true, Some(row), Some(d)) = (simd, as_f32(&sc.row), as_f32_mut(d)) {
                // SAFETY: the CPU has AVX2 (`simd`); `f2_columns` checks its bounds.
                unsafe { avx2::f2_columns(row, wp, tl.th, tl.tw, lanes, bi, d, pitch) };
                continue;
            }
            if lanes == TILE_LANES {
                columns::<F, TILE_LANES>(&sc.row, wp, tl, bi, d, pitch);
            } else {
                columns::<F, { TILE_LANES / 2 }>(&sc.row, wp, tl, bi, d, pitch);
            }
        }
        // Rows, vectorised over the tiles: v[i][j] = sum_k B^T[i][k] d[k][j].
        let dr = |k: usize, j: usize| &d[(k * 4 + j) * pitch..(k * 4 + j) * pitch + nt];
        let vr = |xi: usize| (xi * c + ci) * nt..(xi * c + ci + 1) * nt;
        for j in 0..4 {
            let (d0, d1, d2, d3) = (dr(0, j), dr(1, j), dr(2, j), dr(3, j));
            map2(&mut v[vr(j)], d0, d2, |a, b| a - b);
            map2(&mut v[vr(4 + j)], d1, d2, |a, b| a + b);
            map2(&mut v[vr(8 + j)], d2, d1, |a, b| a - b);
            map2(&mut v[vr(12 + j)], d1, d3, |a, b| a - b);
        }
    }
}

/// The rows of image plane `img` (`w` wide) into the padded plane `row` (`wp` wide), from its
/// second row and second column.
#[inline(always)]
fn pad_rows<F: Real>(img: &[F], w: usize, row: &mut [F], wp: usize) {
    for (src, dst) in img.chunks_exact(w).zip(row[wp..].chunks_exact_mut(wp)) {
        dst[1..=w].copy_from_slice(src);
    }
}

/// The input transform's first pass over one padded image plane (`row`, `wp` wide): `d[k][j][tile]
/// = sum_l B^T[j][l] x_pad(2ty+k, 2tx+l)` of image `bi`'s tiles, each padded row once, `LN` tiles
/// at a time from its even and odd columns, stored for the (up to two) tile rows that read it.
#[inline(always)]
fn columns<F: Real, const LN: usize>(
    row: &[F],
    wp: usize,
    tl: Tiling,
    bi: usize,
    d: &mut [F],
    pitch: usize,
) {
    for y in 0..2 * tl.th + 2 {
        let row = &row[y * wp..(y + 1) * wp];
        for g in 0..tl.tw.div_ceil(LN) {
            let base = 2 * g * LN;
            // r = x_pad(y, 2tx..2tx+4) = (e[l], o[l], e[l+1], o[l+1]) for tx = g LN + l.
            let e: [F; LN] = std::array::from_fn(|l| row[base + 2 * l]);
            let o: [F; LN] = std::array::from_fn(|l| row[base + 2 * l + 1]);
            let (e_last, o_last) = (row[base + 2 * LN], row[base + 2 * LN + 1]);
            let e1: [F; LN] = std::array::from_fn(|l| if l + 1 < LN { e[l + 1] } else { e_last });
            let o1: [F; LN] = std::array::from_fn(|l| if l + 1 < LN { o[l + 1] } else { o_last });
            let mut out = [[F::default(); LN]; 4];
            for l in 0..LN {
                out[0][l] = e[l] - e1[l];
                out[1][l] = o[l] + e1[l];
                out[2][l] = e1[l] - o[l];
                out[3][l] = o[l] - o1[l];
            }
            // Row y is row k = y - 2 ty of tile rows ty = y / 2 (k = y % 2) and
            // ty = y / 2 - 1 (k = y % 2 + 2).
            for (ty, k) in [(y / 2, y % 2), (y / 2, y % 2 + 2)] {
                let Some(ty) = ty.checked_sub(k / 2) else {
                    continue;
                };
                if ty >= tl.th {
                    continue;
                }
                let t0 = (bi * tl.th + ty) * tl.tw + g * LN;
                for (j, vals) in out.iter().enumerate() {
                    let at = (k * 4 + j) * pitch + t0;
                    d[at..at + LN].copy_from_slice(vals);
                }
            }
        }
    }
}

/// Adjoint of [`input_transform`]: adds `B dV B^T` of every tile into `dx [C_in, N, H, W]`
/// (the parts of tiles over the padding are dropped): in one pass per image plane
/// ([`input_transform_adjoint_fused`]) for `f32` on a CPU with AVX2 where it was faster
/// ([`input_adjoint_in_one_pass`]), otherwise in two passes ([`input_transform_adjoint_passes`]).
/// The same bits either way.
#[inline(always)]
fn input_transform_adjoint<F: Real>(
    dv: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dx: &mut [F],
    sc: &mut Scratch<F>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() && input_adjoint_in_one_pass(tl) {
        if let (Some(dv), Some(dx)) = (as_f32(dv), as_f32_mut(dx)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { input_transform_adjoint_fused(dv, s, images, tl, dx) };
        }
    }
    input_transform_adjoint_passes(dv, s, images, tl, dx, sc)
}

/// [`input_transform_adjoint`] by [`avx2::f2_input_adjoint`], one image plane at a time, straight
/// into the plane (no intermediate planes, no padded row).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_transform_adjoint_fused(
    dv: &[f32],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dx: &mut [f32],
) {
    let (c, hw, per_image) = (s.c_in, s.h * s.w, tl.per_image());
    let nt = images.len() * per_image;
    assert!(dv.len() >= 16 * c * nt);
    for ci in 0..c {
        for (bi, b) in images.clone().enumerate() {
            let img = &mut dx[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
            let at = ci * nt + bi * per_image;
            // SAFETY: the CPU has AVX2; `f2_input_adjoint` checks its bounds.
            unsafe { avx2::f2_input_adjoint(dv, at, c * nt, (s.h, s.w), (tl.th, tl.tw), img) };
        }
    }
}

/// [`input_transform_adjoint`] in two passes, one input channel at a time: the rows, vectorised
/// over the tiles, into 16 intermediate planes, then the columns tile by tile through a padded row.
#[inline(always)]
fn input_transform_adjoint_passes<F: Real>(
    dv: &[F],
    s: &ConvShape,
    images: Range<usize>,
    tl: Tiling,
    dx: &mut [F],
    sc: &mut Scratch<F>,
) {
    let nt = images.len() * tl.per_image();
    let (c, hw, wp) = (s.c_in, s.h * s.w, 2 * tl.tw + 2);
    sc.row.clear();
    sc.row.resize(wp, F::default());
    sc.b.resize(16 * nt, F::default());
    let t = &mut sc.b;
    for ci in 0..c {
        // Rows, vectorised over the tiles: t[k][j] = sum_i B^T[i][k] dV[i][j].
        let vr =
            |i: usize, j: usize| &dv[((i * 4 + j) * c + ci) * nt..((i * 4 + j) * c + ci + 1) * nt];
        for j in 0..4 {
            let (v0, v1, v2, v3) = (vr(0, j), vr(1, j), vr(2, j), vr(3, j));
            t[j * nt..(j + 1) * nt].copy_from_slice(v0);
            map3(&mut t[(4 + j) * nt..(5 + j) * nt], v1, v2, v3, |a, b, c| {
                a - b + c
            });
            map3(&mut t[(8 + j) * nt..(9 + j) * nt], v1, v2, v0, |a, b, c| {
                a + b - c
            });
            map2(&mut t[(12 + j) * nt..(13 + j) * nt], v3, v3, |a, _| -a);
        }
        // Columns, tile by tile onto the padded rows (dd[l] = sum_j B^T[j][l] t[k][j]; tiles
        // overlap by two columns), then added into dx.
        for (bi, b) in images.clone().enumerate() {
            let img = &mut dx[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for k in 0..4 {
                    let iy = 2 * ty + k;
                    if iy == 0 || iy > s.h {
                        continue;
                    }
                    let tr = |j: usize| &t[(k * 4 + j) * nt + t0..(k * 4 + j) * nt + t0 + tl.tw];
                    let (mut c2, mut c3) = (F::default(), F::default());
                    let mut pairs = sc.row.chunks_exact_mut(2);
                    // (the tiles first: `zip` pulls from its left side first, and the last pair
                    // must stay in `pairs`)
                    for ((((&a0, &a1), &a2), &a3), pair) in tr(0)
                        .iter()
                        .zip(tr(1))
                        .zip(tr(2))
                        .zip(tr(3))
                        .zip(&mut pairs)
                    {
                        pair[0] = a0 + c2;
                        pair[1] = (a1 - a2 + a3) + c3;
                        c2 = a1 + a2 - a0;
                        c3 = -a3;
                    }
                    if let Some(pair) = pairs.next() {
                        pair[0] = c2;
                        pair[1] = c3;
                    }
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

/// `y [C_out, N, H, W]` of `images` `= A^T M A + bias` from `M [16][C_out][nt]`: writes each of
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
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(m), Some(bias)) = (avx2(), as_f32(m), as_f32(bias)) {
        let ys = uninit_as_f32(y).expect("F is f32, as `m` is");
        let (nb, co, hw) = (images.len(), s.c_out, s.h * s.w);
        let nt = nb * tl.per_image();
        for (o, &bo) in bias.iter().enumerate() {
            let at = (o * s.n + images.start) * hw;
            // SAFETY: the CPU has AVX2; `f2_output` checks its bounds.
            unsafe {
                avx2::f2_output(
                    m,
                    co,
                    o,
                    nt,
                    bo,
                    (nb, s.h, s.w),
                    (tl.th, tl.tw),
                    &mut ys[at..at + nb * hw],
                )
            };
        }
        return;
    }
    output_transform_portable(m, bias, s, images, tl, y, sc)
}

/// [`output_transform`] as plain loops: the column and row passes over whole planes of tiles,
/// then the results interleaved into the output rows.
#[inline(always)]
fn output_transform_portable<F: Real>(
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
    sc.a.resize(8 * nt, F::default());
    sc.b.resize(4 * nt, F::default());
    let (a, yt) = (&mut sc.a, &mut sc.b);
    for o in 0..co {
        let mr =
            |i: usize, j: usize| &m[((i * 4 + j) * co + o) * nt..((i * 4 + j) * co + o + 1) * nt];
        // columns: a[i][q] = sum_j M[i][j] A^T[q][j]
        for i in 0..4 {
            let (m0, m1, m2, m3) = (mr(i, 0), mr(i, 1), mr(i, 2), mr(i, 3));
            map3(
                &mut a[(i * 2) * nt..(i * 2 + 1) * nt],
                m0,
                m1,
                m2,
                |a, b, c| a + b + c,
            );
            map3(
                &mut a[(i * 2 + 1) * nt..(i * 2 + 2) * nt],
                m1,
                m2,
                m3,
                |a, b, c| a - b - c,
            );
        }
        // rows: y[p][q] = sum_i A^T[p][i] a[i][q]
        let ar = |i: usize, q: usize| &a[(i * 2 + q) * nt..(i * 2 + q + 1) * nt];
        for q in 0..2 {
            map3(
                &mut yt[q * nt..(q + 1) * nt],
                ar(0, q),
                ar(1, q),
                ar(2, q),
                |a, b, c| a + b + c,
            );
            map3(
                &mut yt[(2 + q) * nt..(3 + q) * nt],
                ar(1, q),
                ar(2, q),
                ar(3, q),
                |a, b, c| a - b - c,
            );
        }
        let bo = bias[o];
        for (bi, b) in images.clone().enumerate() {
            let img = &mut y[(o * s.n + b) * hw..(o * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for p in 0..2 {
                    let oy = 2 * ty + p;
                    if oy >= s.h {
                        break;
                    }
                    let row = &mut img[oy * s.w..(oy + 1) * s.w];
                    let y0 = &yt[(p * 2) * nt + t0..(p * 2) * nt + t0 + tl.tw];
                    let y1 = &yt[(p * 2 + 1) * nt + t0..(p * 2 + 1) * nt + t0 + tl.tw];
                    for (pair, (&v0, &v1)) in row.chunks_mut(2).zip(y0.iter().zip(y1)) {
                        pair[0].write(v0 + bo);
                        if let Some(r) = pair.get_mut(1) {
                            r.write(v1 + bo);
                        }
                    }
                }
            }
        }
    }
}

/// `y` as `f32`s where `F` is `f32`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn uninit_as_f32<F: 'static>(
    y: &mut [std::mem::MaybeUninit<F>],
) -> Option<&mut [std::mem::MaybeUninit<f32>]> {
    (std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>())
        // SAFETY: F is f32.
        .then(|| unsafe { std::slice::from_raw_parts_mut(y.as_mut_ptr().cast(), y.len()) })
}

/// `dM [16][C_out][nt] = A dY A^T` of the output tiles of `images` (zeros past the edges): in one
/// pass per output-gradient plane ([`output_transform_adjoint_fused`]) for `f32` on a CPU with
/// AVX2 where it was faster ([`output_adjoint_in_one_pass`]), otherwise in three passes over the
/// chunk ([`output_transform_adjoint_passes`]). The same bits either way.
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
    if avx2() && output_adjoint_in_one_pass(tl, s.c_out * images.len() * tl.per_image()) {
        if let (Some(dy), Some(dm)) = (as_f32(dy), super::cast_vec_mut::<F, f32>(dm)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { output_transform_adjoint_fused(dy, s, images, tl, dm) };
        }
    }
    output_transform_adjoint_passes(dy, s, images, tl, dm, sc)
}

/// Whether the output transform's adjoint runs in one pass per plane: on rows of six to eight
/// tiles whose sixteen planes of `dM` (`stride` apart) do not share one L1 set. On narrower rows
/// most of each vector's lanes are stored twice and the passes over whole planes were faster
/// (one call, 20 images x 64 channels, `adjoint_timings`: 14x14 368 against 661 us; 10x10 228
/// against 194; 7x7 332 against 213, also when the planes were stored in two or four sweeps).
#[cfg(target_arch = "x86_64")]
fn output_adjoint_in_one_pass(tl: Tiling, stride: usize) -> bool {
    (6..=avx2::W).contains(&tl.tw) && avx2::f2_input_fits_l1(stride)
}

/// Whether the input transform's adjoint runs in one pass per plane: on rows of three to eight
/// tiles (one call, 20 images x 64 channels, `adjoint_timings`: 14x14 382 against 1540 us; 10x10
/// 206 against 450; 7x7 255 against 279; 5x5 110 against 166; 3x3, two tiles a row, 156
/// against 84).
#[cfg(target_arch = "x86_64")]
fn input_adjoint_in_one_pass(tl: Tiling) -> bool {
    (3..=avx2::W).contains(&tl.tw)
}

/// [`output_transform_adjoint`] by [`avx2::f2_output_adjoint`], one output-gradient plane at a
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
    let (hw, thw) = ((s.h, s.w), (tl.th, tl.tw));
    each_plane(
        dy,
        s.c_out,
        s,
        images,
        tl,
        16,
        dm,
        |plane, dm, at, stride, after| {
            // SAFETY: the CPU has AVX2 (this function's contract); `f2_output_adjoint` checks its
            // bounds.
            unsafe { avx2::f2_output_adjoint(plane, hw, thw, dm, at, stride, after) }
        },
    )
}

/// [`output_transform_adjoint`] in three passes over the chunk, one output channel at a time: the
/// tiles' values gathered into four planes, the column pass, then the row pass, vectorised over
/// the tiles.
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
    at_least(dm, 16 * co * nt); // every element of `dm[..16 co nt]` is written below
    sc.a.resize(4 * nt, F::default());
    sc.b.resize(8 * nt, F::default());
    let (g, e) = (&mut sc.a, &mut sc.b);
    for o in 0..co {
        // g[p][q][tile] = dy at (2ty+p, 2tx+q), zero past the edges
        for (bi, b) in images.clone().enumerate() {
            let img = &dy[(o * s.n + b) * hw..(o * s.n + b + 1) * hw];
            for ty in 0..tl.th {
                let t0 = (bi * tl.th + ty) * tl.tw;
                for p in 0..2 {
                    let oy = 2 * ty + p;
                    let g0 = (p * 2) * nt + t0;
                    let g1 = (p * 2 + 1) * nt + t0;
                    if oy >= s.h {
                        g[g0..g0 + tl.tw].fill(F::default());
                        g[g1..g1 + tl.tw].fill(F::default());
                        continue;
                    }
                    let row = &img[oy * s.w..(oy + 1) * s.w];
                    for (tx, pair) in row.chunks(2).enumerate() {
                        g[g0 + tx] = pair[0];
                        g[g1 + tx] = pair.get(1).copied().unwrap_or_default();
                    }
                }
            }
        }
        // columns: e[p][j] = sum_q dY[p][q] A^T[q][j]
        let gr = |p: usize, q: usize| &g[(p * 2 + q) * nt..(p * 2 + q + 1) * nt];
        for p in 0..2 {
            let (g0, g1) = (gr(p, 0), gr(p, 1));
            e[(p * 4) * nt..(p * 4 + 1) * nt].copy_from_slice(g0);
            map2(
                &mut e[(p * 4 + 1) * nt..(p * 4 + 2) * nt],
                g0,
                g1,
                |a, b| a + b,
            );
            map2(
                &mut e[(p * 4 + 2) * nt..(p * 4 + 3) * nt],
                g0,
                g1,
                |a, b| a - b,
            );
            map2(
                &mut e[(p * 4 + 3) * nt..(p * 4 + 4) * nt],
                g1,
                g1,
                |a, _| -a,
            );
        }
        // rows: dM[i][j] = sum_p A^T[p][i] e[p][j]
        let er = |p: usize, j: usize| &e[(p * 4 + j) * nt..(p * 4 + j + 1) * nt];
        let mr = |i: usize, j: usize| ((i * 4 + j) * co + o) * nt..((i * 4 + j) * co + o + 1) * nt;
        for j in 0..4 {
            let (e0, e1) = (er(0, j), er(1, j));
            dm[mr(0, j)].copy_from_slice(e0);
            map2(&mut dm[mr(1, j)], e0, e1, |a, b| a + b);
            map2(&mut dm[mr(2, j)], e0, e1, |a, b| a - b);
            map2(&mut dm[mr(3, j)], e1, e1, |a, _| -a);
        }
    }
}

/// A Winograd algorithm F(m x m, 3x3): its tiling and its transforms, each with its adjoint. The
/// drivers [`winograd_forward`] and [`winograd_backward`] chain them with the products, the same
/// for F(2x2) ([`F2`]) and F(4x4) ([`winograd4::F4`]).
trait Winograd {
    /// Output tile side m.
    const M: usize;
    /// Transformed planes, (m + 2)^2: the products per tile and channel pair.
    const PLANES: usize = (Self::M + 2) * (Self::M + 2);
    /// `U [PLANES][C_out][C_in] = G g G^T` into `u` (resized; every element written).
    fn transform_weights_into<F: Real>(weight: &[F], c_out: usize, c_in: usize, u: &mut Vec<F>);
    /// `dW [C_out, C_in, 3, 3] = G^T dU G`.
    fn transform_weights_adjoint<F: Real>(du: &[F], c_out: usize, c_in: usize) -> Vec<F>;
    /// `V [PLANES][C_in][nt] = B^T d B` of the input tiles of `images`.
    fn input_transform<F: Real>(
        x: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        v: &mut Vec<F>,
        sc: &mut Scratch<F>,
    );
    /// Adds `B dV B^T` of every tile into `dx`.
    fn input_transform_adjoint<F: Real>(
        dv: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        dx: &mut [F],
        sc: &mut Scratch<F>,
    );
    /// `y = A^T M A + bias` of `images`, each of their outputs written once.
    #[allow(clippy::too_many_arguments)]
    fn output_transform<F: Real>(
        m: &[F],
        bias: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        y: &mut [std::mem::MaybeUninit<F>],
        sc: &mut Scratch<F>,
    );
    /// `dM [PLANES][C_out][nt] = A dY A^T` of the output tiles of `images`.
    fn output_transform_adjoint<F: Real>(
        dy: &[F],
        s: &ConvShape,
        images: Range<usize>,
        tl: Tiling,
        dm: &mut Vec<F>,
        sc: &mut Scratch<F>,
    );
}

/// Winograd F(2x2, 3x3): the transforms above.
struct F2;

impl Winograd for F2 {
    const M: usize = 2;
    #[inline(always)]
    fn transform_weights_into<F: Real>(weight: &[F], c_out: usize, c_in: usize, u: &mut Vec<F>) {
        transform_weights_into(weight, c_out, c_in, u)
    }
    #[inline(always)]
    fn transform_weights_adjoint<F: Real>(du: &[F], c_out: usize, c_in: usize) -> Vec<F> {
        transform_weights_adjoint(du, c_out, c_in)
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

#[inline(always)]
fn winograd_forward<W: Winograd, F: Real>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
) -> Vec<F> {
    let tl = Tiling::new(s, W::M);
    let (co, ci, planes) = (s.c_out, s.c_in, W::PLANES);
    // Not zero-filled: the output transforms below write every element exactly once.
    let len = co * s.positions();
    let mut y: Vec<F> = Vec::with_capacity(len);
    let yu = &mut y.spare_capacity_mut()[..len];
    let mut buf = take_buffers::<F>();
    let Buffers { v, m, u, sc, .. } = &mut buf;
    W::transform_weights_into(weight, co, ci, u);
    for r in image_chunks(s.n, planes * ci * tl.per_image(), CHUNK_ELEMS) {
        let nt = r.len() * tl.per_image();
        W::input_transform(x, s, r.clone(), tl, v, sc);
        // Every element of `m[..planes co nt]` is written by the products.
        at_least(m, planes * co * nt);
        for xi in 0..planes {
            products::product(
                &mut m[xi * co * nt..(xi + 1) * co * nt],
                nt,
                MatRef::rows(&u[xi * co * ci..(xi + 1) * co * ci], co, ci),
                MatRef::rows(&v[xi * ci * nt..(xi + 1) * ci * nt], ci, nt),
                false,
            );
        }
        W::output_transform(m, bias, s, r, tl, yu, sc);
    }
    put_buffers(buf);
    // SAFETY: the chunks cover every image, and `output_transform` writes every (channel,
    // image, row < H, column < W) of its images: all `len` elements are initialised.
    unsafe { y.set_len(len) };
    y
}

/// Returns `(dW, dx)`.
#[inline(always)]
fn winograd_backward<W: Winograd, F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    let tl = Tiling::new(s, W::M);
    let (co, ci, planes) = (s.c_out, s.c_in, W::PLANES);
    let mut dx = need_input.then(|| vec![F::default(); ci * s.positions()]);
    let mut buf = take_buffers::<F>();
    let Buffers {
        v,
        m: dm,
        u,
        du,
        sc,
    } = &mut buf;
    if need_input {
        W::transform_weights_into(weight, co, ci, u);
    }
    // Not zeroed: the first chunk's products overwrite every element (`accumulate` is false).
    du.resize(planes * co * ci, F::default());
    let per_image = planes * ci.max(co) * tl.per_image();
    for (idx, r) in image_chunks(s.n, per_image, CHUNK_ELEMS)
        .into_iter()
        .enumerate()
    {
        let nt = r.len() * tl.per_image();
        W::input_transform(x, s, r.clone(), tl, v, sc);
        W::output_transform_adjoint(dy, s, r.clone(), tl, dm, sc);
        for xi in 0..planes {
            products::product(
                &mut du[xi * co * ci..(xi + 1) * co * ci],
                ci,
                MatRef::rows(&dm[xi * co * nt..(xi + 1) * co * nt], co, nt),
                MatRef::rows(&v[xi * ci * nt..(xi + 1) * ci * nt], ci, nt).t(),
                idx > 0,
            );
        }
        if let Some(dx) = dx.as_mut() {
            // dV reuses V's buffer.
            for xi in 0..planes {
                products::product(
                    &mut v[xi * ci * nt..(xi + 1) * ci * nt],
                    nt,
                    MatRef::rows(&u[xi * co * ci..(xi + 1) * co * ci], co, ci).t(),
                    MatRef::rows(&dm[xi * co * nt..(xi + 1) * co * nt], co, nt),
                    false,
                );
            }
            W::input_transform_adjoint(v, s, r, tl, dx, sc);
        }
    }
    let dw = W::transform_weights_adjoint(du, co, ci);
    put_buffers(buf);
    (dw, dx)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::conv;
    use crate::engine::gradcheck::{assert_gradient, max_relative_error, test_values};

    /// A 3x3 convolution's shape (the test modules of `conv/` share it).
    pub(in crate::engine::conv) fn shape(
        c_in: usize,
        c_out: usize,
        n: usize,
        h: usize,
        w: usize,
    ) -> ConvShape {
        ConvShape {
            c_in,
            c_out,
            n,
            h,
            w,
            k: 3,
        }
    }

    /// Shapes for both kernels, odd and even sides, single rows and columns.
    fn shapes() -> Vec<ConvShape> {
        vec![
            shape(1, 3, 2, 5, 4),
            shape(3, 4, 3, 7, 6),
            shape(4, 2, 1, 1, 1),
            shape(5, 3, 2, 5, 4),
            shape(6, 7, 3, 7, 5),
            shape(8, 4, 2, 1, 3),
            shape(7, 5, 4, 3, 3),
            shape(9, 6, 1, 2, 1),
            shape(6, 6, 5, 14, 14),
            shape(2, 3, 2, 6, 19),
        ]
    }

    /// `(x, weight, bias, dy)` of a shape from four salts in a row.
    pub(super) fn inputs(s: &ConvShape, salt: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        (
            test_values(s.c_in * s.positions(), salt),
            test_values(s.c_out * s.patch(), salt + 1),
            test_values(s.c_out, salt + 2),
            test_values(s.c_out * s.positions(), salt + 3),
        )
    }

    /// The best of seven rounds of `reps` calls of `f`, in microseconds per call (the ignored
    /// timing tests' measurement).
    pub(super) fn best_us(reps: usize, f: &mut dyn FnMut()) -> f64 {
        let mut b = f64::INFINITY;
        for _ in 0..7 {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                f();
            }
            b = b.min(t.elapsed().as_secs_f64() / reps as f64 * 1e6);
        }
        b
    }

    /// The bit patterns of `v` (the AVX2 kernels' tests compare bits, not values).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    pub(super) fn to_f32(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    fn err32(got: &[f32], want: &[f64]) -> f64 {
        let got: Vec<f64> = got.iter().map(|&x| x as f64).collect();
        max_relative_error(&got, want, 1e-8)
    }

    #[test]
    fn fast_forward_and_backward_equal_the_im2col_path_in_f64() {
        for (i, s) in shapes().into_iter().enumerate() {
            let (x, wt, b, dy) = inputs(&s, 10 * i as u64);
            let want = conv::forward(&x, &wt, &b, &s);
            let got = forward(&x, &wt, &b, &s).unwrap();
            assert!(max_relative_error(&got, &want, 1e-8) < 1e-13, "{s:?}");
            let gw = conv::backward(&dy, &x, &wt, &s, true);
            let gf = backward(&dy, &x, &wt, &s, true).unwrap();
            assert!(
                max_relative_error(&gf.weight, &gw.weight, 1e-8) < 1e-13,
                "{s:?}"
            );
            assert!(
                max_relative_error(&gf.bias, &gw.bias, 1e-8) < 1e-13,
                "{s:?}"
            );
            let (a, b) = (gf.input.unwrap(), gw.input.unwrap());
            assert!(max_relative_error(&a, &b, 1e-8) < 1e-13, "{s:?}");
            assert!(backward(&dy, &x, &wt, &s, false).unwrap().input.is_none());
        }
    }

    #[test]
    fn blocked_weight_transforms_give_the_one_kernel_loops_bits() {
        // 5 x 7 = 35 kernels: four blocks of LANES and a tail of three.
        let (c_out, c_in) = (5, 7);
        let pairs = c_out * c_in;
        let w = to_f32(&test_values(pairs * 9, 51));
        let du = to_f32(&test_values(pairs * 16, 52));
        let u = transform_weights(&w, c_out, c_in);
        let dw = transform_weights_adjoint(&du, c_out, c_in);
        for k in 0..pairs {
            // One kernel alone takes the one-kernel loop.
            let uk = transform_weights(&w[k * 9..(k + 1) * 9], 1, 1);
            let duk: Vec<f32> = (0..16).map(|x| du[x * pairs + k]).collect();
            let dwk = transform_weights_adjoint(&duk, 1, 1);
            for x in 0..16 {
                assert_eq!(u[x * pairs + k].to_bits(), uk[x].to_bits());
            }
            for e in 0..9 {
                assert_eq!(dw[k * 9 + e].to_bits(), dwk[e].to_bits());
            }
        }
    }

    #[test]
    fn fast_f32_kernels_agree_with_the_f64_reference_to_rounding() {
        for (i, s) in shapes().into_iter().enumerate() {
            let (x, wt, b, dy) = inputs(&s, 100 + 10 * i as u64);
            let want = conv::forward(&x, &wt, &b, &s);
            let got = conv::forward(&to_f32(&x), &to_f32(&wt), &to_f32(&b), &s);
            assert!(err32(&got, &want) < 1e-5, "{s:?}: {}", err32(&got, &want));
            let gw = conv::backward(&dy, &x, &wt, &s, true);
            let gf = conv::backward(&to_f32(&dy), &to_f32(&x), &to_f32(&wt), &s, true);
            assert!(err32(&gf.weight, &gw.weight) < 1e-5, "{s:?}");
            assert!(err32(&gf.bias, &gw.bias) < 1e-5, "{s:?}");
            assert!(err32(gf.input.as_ref().unwrap(), gw.input.as_ref().unwrap()) < 1e-5);
        }
    }

    #[test]
    fn multi_chunk_winograd_equals_the_reference() {
        // 64 channels of 14x14: several chunks of images, uneven split.
        let s = shape(64, 8, 11, 14, 14);
        assert!(image_chunks(s.n, 16 * 64 * 49, CHUNK_ELEMS).len() > 2);
        let (x, wt, b, dy) = inputs(&s, 7);
        let want = conv::forward(&x, &wt, &b, &s);
        let got = forward(&x, &wt, &b, &s).unwrap();
        assert!(max_relative_error(&got, &want, 1e-8) < 1e-12);
        let gw = conv::backward(&dy, &x, &wt, &s, true);
        let gf = backward(&dy, &x, &wt, &s, true).unwrap();
        assert!(max_relative_error(&gf.weight, &gw.weight, 1e-8) < 1e-12);
        let (a, b) = (gf.input.unwrap(), gw.input.unwrap());
        assert!(max_relative_error(&a, &b, 1e-8) < 1e-12);
    }

    #[test]
    fn fast_gradients_match_finite_differences() {
        for s in [shape(2, 3, 2, 3, 4), shape(5, 2, 2, 3, 5)] {
            let (x, wt, b, r) = inputs(&s, 40);
            let g = backward(&r, &x, &wt, &s, true).unwrap();
            let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
            assert_gradient(
                "fast conv input",
                &mut |v| loss(forward(v, &wt, &b, &s).unwrap()),
                &x,
                g.input.as_ref().unwrap(),
                1e-7,
            );
            assert_gradient(
                "fast conv weight",
                &mut |v| loss(forward(&x, v, &b, &s).unwrap()),
                &wt,
                &g.weight,
                1e-7,
            );
        }
    }

    fn f4_forward<F: Real>(x: &[F], w: &[F], b: &[F], s: &ConvShape) -> Vec<F> {
        winograd_forward::<winograd4::F4, F>(x, w, b, s)
    }

    fn f4_backward<F: Real>(
        dy: &[F],
        x: &[F],
        w: &[F],
        s: &ConvShape,
        need_input: bool,
    ) -> (Vec<F>, Option<Vec<F>>) {
        winograd_backward::<winograd4::F4, F>(dy, x, w, s, need_input)
    }

    /// F(4x4, 3x3) on every Winograd shape of [`shapes`] (and several chunks of images), whatever
    /// [`use_f4`] picks for them.
    fn f4_shapes() -> Vec<ConvShape> {
        let mut v: Vec<ConvShape> = shapes()
            .into_iter()
            .filter(|s| s.c_in > DIRECT_MAX_C_IN)
            .collect();
        v.extend([
            shape(5, 2, 2, 6, 9),
            shape(6, 3, 1, 11, 13),
            shape(64, 8, 11, 14, 14),
        ]);
        v
    }

    #[test]
    fn f4_forward_and_backward_equal_the_im2col_path_in_f64() {
        // The last shape: 11 images of 64 channels, 4x4 tiles each, in two chunks.
        assert_eq!(image_chunks(11, 36 * 64 * 16, CHUNK_ELEMS).len(), 2);
        for (i, s) in f4_shapes().into_iter().enumerate() {
            let (x, wt, b, dy) = inputs(&s, 300 + 10 * i as u64);
            let want = conv::forward(&x, &wt, &b, &s);
            let got = f4_forward(&x, &wt, &b, &s);
            assert!(max_relative_error(&got, &want, 1e-8) < 1e-12, "{s:?}");
            let gw = conv::backward(&dy, &x, &wt, &s, true);
            let (dw, dx) = f4_backward(&dy, &x, &wt, &s, true);
            assert!(max_relative_error(&dw, &gw.weight, 1e-8) < 1e-12, "{s:?}");
            let dx = dx.unwrap();
            assert!(
                max_relative_error(&dx, gw.input.as_ref().unwrap(), 1e-8) < 1e-12,
                "{s:?}"
            );
            assert!(f4_backward(&dy, &x, &wt, &s, false).1.is_none());
        }
    }

    #[test]
    fn f4_in_f32_agrees_with_the_f64_reference_to_rounding() {
        for (i, s) in f4_shapes().into_iter().enumerate() {
            let (x, wt, b, dy) = inputs(&s, 400 + 10 * i as u64);
            let want = conv::forward(&x, &wt, &b, &s);
            let got = f4_forward(&to_f32(&x), &to_f32(&wt), &to_f32(&b), &s);
            assert!(err32(&got, &want) < 1e-5, "{s:?}: {}", err32(&got, &want));
            let gw = conv::backward(&dy, &x, &wt, &s, true);
            let (dw, dx) = f4_backward(&to_f32(&dy), &to_f32(&x), &to_f32(&wt), &s, true);
            assert!(
                err32(&dw, &gw.weight) < 1e-5,
                "{s:?}: {}",
                err32(&dw, &gw.weight)
            );
            let dx = dx.unwrap();
            let e = err32(&dx, gw.input.as_ref().unwrap());
            assert!(e < 1e-5, "{s:?}: {e}");
        }
    }

    #[test]
    fn planes_from_f4_min_side_up_take_f4() {
        assert!(!use_f4(&shape(64, 64, 5, 14, 14)));
        assert!(!use_f4(&shape(64, 64, 5, F4_MIN_SIDE, F4_MIN_SIDE - 1)));
        assert!(use_f4(&shape(64, 64, 5, F4_MIN_SIDE, F4_MIN_SIDE)));
        assert!(use_f4(&shape(64, 64, 5, 42, 42)));
    }

    #[test]
    fn f4_gradients_match_finite_differences() {
        for s in [shape(5, 2, 2, 3, 4), shape(6, 2, 1, 5, 7)] {
            let (x, wt, b, r) = inputs(&s, 60);
            let (dw, dx) = f4_backward(&r, &x, &wt, &s, true);
            let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
            assert_gradient(
                "F(4x4, 3x3) input",
                &mut |v| loss(f4_forward(v, &wt, &b, &s)),
                &x,
                dx.as_ref().unwrap(),
                1e-7,
            );
            assert_gradient(
                "F(4x4, 3x3) weight",
                &mut |v| loss(f4_forward(&x, v, &b, &s)),
                &wt,
                &dw,
                1e-7,
            );
        }
    }

    /// Timings of F(2x2, 3x3) and F(4x4, 3x3) at the learner's shapes, where [`F4_MIN_SIDE`] comes
    /// from (`cargo test --release -p bmssl --lib kernel_timings -- --ignored --nocapture`): a
    /// measurement, not a test.
    #[test]
    #[ignore]
    #[cfg(target_arch = "x86_64")]
    fn kernel_timings() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run(f4: bool, backward: bool, x: &[f32], w: &[f32], dy: &[f32], s: &ConvShape) {
            let b = vec![0.0; s.c_out];
            match (f4, backward) {
                (false, false) => drop(winograd_forward::<F2, f32>(x, w, &b, s)),
                (true, false) => drop(f4_forward(x, w, &b, s)),
                (false, true) => drop(winograd_backward::<F2, f32>(dy, x, w, s, true)),
                (true, true) => drop(f4_backward(dy, x, w, s, true)),
            }
        }
        assert!(avx2(), "the timings are of the AVX2 build");
        for (n, hw) in [(10, 42), (10, 21), (20, 14), (20, 10), (40, 7), (40, 3)] {
            let s = shape(64, 128, n, hw, hw);
            let (x, wt, _, dy) = inputs(&s, 1);
            let (x, wt, dy) = (to_f32(&x), to_f32(&wt), to_f32(&dy));
            // The fastest of five rounds of ten calls, the two algorithms alternating.
            let mut best = [f64::INFINITY; 4];
            for _ in 0..5 {
                for (i, b) in best.iter_mut().enumerate() {
                    let t = std::time::Instant::now();
                    for _ in 0..10 {
                        // SAFETY: the CPU has AVX2 and FMA (asserted above).
                        unsafe { run(i % 2 == 1, i >= 2, &x, &wt, &dy, &s) };
                    }
                    *b = b.min(t.elapsed().as_secs_f64() / 10.0 * 1e3);
                }
            }
            eprintln!(
                "{n} x 64 -> 128 channels, {hw}x{hw}: forward F(2x2) {:.2} ms, F(4x4) {:.2} ms; \
                 backward F(2x2) {:.2} ms, F(4x4) {:.2} ms",
                best[0], best[1], best[2], best[3]
            );
        }
    }

    #[test]
    #[ignore]
    #[cfg(target_arch = "x86_64")]
    fn adjoint_timings() {
        assert!(avx2(), "the timings are of the AVX2 build");
        for (n, hw) in [
            (5, 14),
            (20, 14),
            (5, 7),
            (20, 7),
            (5, 3),
            (20, 3),
            (20, 10),
            (20, 5),
        ] {
            let s = shape(64, 64, n, hw, hw);
            let tl = Tiling::new(&s, 2);
            let nt = n * tl.per_image();
            let dy = to_f32(&test_values(64 * n * hw * hw, 3));
            let dv = to_f32(&test_values(16 * 64 * nt, 4));
            let mut dm = Vec::new();
            let mut dx = vec![0.0f32; 64 * n * hw * hw];
            let mut sc = Scratch::default();
            let o_pass = best_us(20, &mut || {
                output_transform_adjoint_passes(&dy, &s, 0..n, tl, &mut dm, &mut sc)
            });
            // SAFETY: AVX2 (asserted above).
            let o1 = best_us(20, &mut || unsafe {
                output_transform_adjoint_fused(&dy, &s, 0..n, tl, &mut dm)
            });
            let i_pass = best_us(20, &mut || {
                input_transform_adjoint_passes(&dv, &s, 0..n, tl, &mut dx, &mut sc)
            });
            // SAFETY: AVX2 (asserted above).
            let i_one = best_us(20, &mut || unsafe {
                input_transform_adjoint_fused(&dv, &s, 0..n, tl, &mut dx)
            });
            eprintln!(
                "{n} x 64 at {hw}x{hw}: output adjoint passes {o_pass:.1} us, one pass {o1:.1}; \
                 input adjoint passes {i_pass:.1}, one pass {i_one:.1}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_input_adjoint_in_one_avx2_pass_adds_the_two_passes_bits() {
        if !avx2() {
            return;
        }
        // (images of the chunk, first image, h, w, channels): Omniglot's 14x14, 7x7 and 3x3
        // planes, 3x84x84's 10x10 and 5x5, one pixel, odd and narrow planes, rows of exactly
        // eight tiles, one image and several, the last image of the batch (whose last row's
        // adds end at `dx`'s end) and not.
        for (nb, first, h, w, c) in [
            (3, 0, 14, 14, 5),
            (2, 1, 7, 7, 3),
            (3, 0, 3, 3, 4),
            (4, 0, 10, 10, 2),
            (5, 1, 5, 5, 3),
            (2, 0, 1, 1, 4),
            (3, 0, 1, 2, 2),
            (2, 2, 2, 1, 3),
            (1, 2, 5, 15, 3),
            (2, 0, 9, 16, 2),
            (1, 0, 15, 13, 1),
            (3, 1, 2, 11, 2),
        ] {
            for extra in [0, 1] {
                let s = shape(c, 2, first + nb + extra, h, w);
                let tl = Tiling::new(&s, 2);
                let nt = nb * tl.per_image();
                let dv = to_f32(&test_values(16 * c * nt, (h * 3 + w + c) as u64));
                // dx already holds values (the adds must keep them, -0.0 included).
                let mut start = to_f32(&test_values(c * s.n * h * w, (h + w * 7) as u64));
                start[0] = -0.0;
                start[1] = 0.0;
                let images = first..first + nb;
                let mut want = start.clone();
                input_transform_adjoint_passes(
                    &dv,
                    &s,
                    images.clone(),
                    tl,
                    &mut want,
                    &mut Scratch::default(),
                );
                let mut got = start.clone();
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { input_transform_adjoint_fused(&dv, &s, images, tl, &mut got) };
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{nb} images from {first} of {}, {h}x{w}, {c} channels",
                    s.n
                );
            }
        }
    }

    /// (images of the chunk, first image, h, w, channels) for the one-pass F(2x2) transforms:
    /// Omniglot's 14x14, 7x7 (also with 64 channels, whose 16 planes are 4 KiB apart) and 3x3
    /// planes, 3x84x84's 10x10 and 5x5, one pixel, odd and narrow planes, planes wider than a
    /// group of eight tiles (a ragged last group), one image and several.
    #[cfg(target_arch = "x86_64")]
    const ONE_PASS_CASES: [(usize, usize, usize, usize, usize); 13] = [
        (3, 0, 14, 14, 5),
        (2, 1, 7, 7, 3),
        (1, 0, 7, 7, 64),
        (2, 1, 7, 7, 64),
        (3, 0, 3, 3, 4),
        (4, 0, 10, 10, 2),
        (5, 1, 5, 5, 3),
        (2, 0, 1, 1, 4),
        (3, 0, 1, 2, 2),
        (1, 2, 5, 17, 3),
        (2, 0, 9, 40, 2),
        (1, 0, 15, 13, 1),
        (3, 1, 2, 35, 2),
    ];

    /// Asserts that `fused` writes what `passes` writes, bit for bit: its output starts as NaN,
    /// so a value it leaves unwritten shows (and `passes` writes only finite values).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn assert_one_pass_bits(
        what: &str,
        passes: impl FnOnce(&mut Vec<f32>),
        fused: impl FnOnce(&mut Vec<f32>),
    ) {
        let mut want = Vec::new();
        passes(&mut want);
        let mut got = vec![f32::NAN; want.len()];
        fused(&mut got);
        assert!(want.iter().all(|v| v.is_finite()), "{what}");
        assert_eq!(bits(&got), bits(&want), "{what}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_output_adjoint_in_one_avx2_pass_has_the_three_passes_bits() {
        if !avx2() {
            return;
        }
        for (nb, first, h, w, c) in ONE_PASS_CASES {
            let s = shape(2, c, first + nb + 1, h, w);
            let tl = Tiling::new(&s, 2);
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_input_transform_in_one_avx2_pass_has_the_two_passes_bits() {
        if !avx2() {
            return;
        }
        for (nb, first, h, w, c) in ONE_PASS_CASES {
            let s = shape(c, 4, first + nb + 1, h, w);
            let tl = Tiling::new(&s, 2);
            let x = to_f32(&test_values(c * s.n * h * w, (h * 7 + w + c) as u64));
            let images = first..first + nb;
            assert_one_pass_bits(
                &format!("{nb} images from {first}, {h}x{w}, {c} channels"),
                |want| {
                    let sc = &mut Scratch::default();
                    input_transform_two_pass(&x, &s, images.clone(), tl, want, sc)
                },
                // SAFETY: the CPU has AVX2 (checked above).
                |got| unsafe { input_transform_fused(&x, &s, images.clone(), tl, got) },
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_row_copy_into_the_padded_plane_equals_the_plain_copy_and_keeps_the_padding_zero() {
        if !avx2() {
            return;
        }
        // (h, w, wp): 7x7 as the two passes pad it, a one-pixel plane, rows of one vector, of
        // more than one, and wider padded rows.
        for (h, w, wp) in [
            (7, 7, 10),
            (1, 1, 3),
            (4, 8, 10),
            (5, 14, 18),
            (3, 17, 34),
            (2, 9, 11),
        ] {
            let img = to_f32(&test_values(h * w, (h * 5 + w) as u64));
            let rows = 2 * h.div_ceil(2) + 2;
            let mut want = vec![0.0f32; rows * wp];
            pad_rows(&img, w, &mut want, wp);
            let mut got = vec![0.0f32; rows * wp];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { avx2::pad_rows(&img, h, w, &mut got, wp) };
            assert_eq!(bits(&got), bits(&want), "{h}x{w} into rows of {wp}");
        }
    }

    /// Where the sixteen planes of `V` are a multiple of 4 KiB apart (7x7 planes: 16 tiles an
    /// image) the one-pass transform is not used, elsewhere on the learner's shapes it is.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_one_pass_input_transform_is_kept_off_strides_that_fill_one_cache_set() {
        assert!(!avx2::f2_input_fits_l1(64 * 5 * 16));
        assert!(!avx2::f2_input_fits_l1(1024));
        assert!(avx2::f2_input_fits_l1(64 * 5 * 49));
        assert!(avx2::f2_input_fits_l1(64 * 20 * 25));
        assert!(avx2::f2_input_fits_l1(64 * 20 * 9));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_direct_forwards_avx2_kernel_has_the_portable_loops_bits() {
        if !avx2() {
            return;
        }
        // Rows narrower than a vector (the portable loop runs), of exactly a vector and wider, odd
        // sides, one to four input channels, output channels in whole groups of four and not, one
        // and several images.
        for (i, (c_in, c_out, n, h, w)) in [
            (1, 1, 1, 1, 8),
            (2, 3, 2, 3, 5),
            (3, 6, 2, 5, 9),
            (2, 4, 3, 8, 8),
            (4, 7, 2, 9, 13),
            (3, 64, 2, 28, 28),
            (1, 3, 1, 17, 23),
            (3, 5, 1, 84, 84),
        ]
        .into_iter()
        .enumerate()
        {
            let s = shape(c_in, c_out, n, h, w);
            let salt = 40 + 4 * i as u64;
            let xp = pad_input(&to_f32(&test_values(c_in * s.positions(), salt)), &s);
            let wt = to_f32(&test_values(c_out * s.patch(), salt + 1));
            let b = to_f32(&test_values(c_out, salt + 2));
            let mut got = vec![7.0f32];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { direct_forward_padded_avx2(&xp, &wt, &b, &s, &mut got) };
            let mut want = vec![7.0f32];
            direct_forward_padded(&xp, &wt, &b, &s, &mut want);
            assert_eq!(bits(&got), bits(&want), "{c_in} -> {c_out}, n {n}, {h}x{w}");
        }
    }

    /// One call of the direct kernel's forward (3 -> 64 channels, the first layer), the AVX2
    /// kernel beside the portable loop compiled with AVX2 (what ran before it), in microseconds
    /// and GFLOP/s, best of seven rounds (`cargo test --release -p bmssl --lib
    /// direct_forward_timings -- --ignored --nocapture`): a measurement, not a test.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore]
    fn direct_forward_timings() {
        assert!(avx2(), "the timings are of the AVX2 build");
        #[target_feature(enable = "avx2,fma")]
        unsafe fn portable_avx2(xp: &[f32], w: &[f32], b: &[f32], s: &ConvShape, y: &mut Vec<f32>) {
            direct_forward_padded(xp, w, b, s, y)
        }
        for (n, hw) in [(5, 84), (15, 84), (5, 28), (15, 28)] {
            let s = shape(3, 64, n, hw, hw);
            let xp = pad_input(&to_f32(&test_values(3 * s.positions(), 1)), &s);
            let (wt, b) = (
                to_f32(&test_values(64 * 27, 2)),
                to_f32(&test_values(64, 3)),
            );
            let mut y = Vec::new();
            let mut run = |kernel: bool| {
                best_us(5, &mut || {
                    y.clear();
                    // SAFETY: the CPU has AVX2 (asserted above).
                    unsafe {
                        if kernel {
                            direct_forward_padded_avx2(&xp, &wt, &b, &s, &mut y)
                        } else {
                            portable_avx2(&xp, &wt, &b, &s, &mut y)
                        }
                    }
                })
            };
            let (old, new) = (run(false), run(true));
            let gflop = 2.0 * (64 * 27 * s.positions()) as f64 / 1e3;
            println!(
                "n {n}, {hw}x{hw}: portable loop {old:.0} us ({:.1} GFLOP/s), kernel {new:.0} us ({:.1} GFLOP/s)",
                gflop / old,
                gflop / new
            );
        }
    }

    #[test]
    fn the_direct_weight_gradients_tap_sums_have_the_portable_loops_bits() {
        // One-pixel, narrower-than-a-vector and odd planes; one and several images.
        for (n, h, w) in [
            (1, 1, 1),
            (2, 1, 5),
            (3, 5, 3),
            (2, 7, 9),
            (4, 28, 28),
            (1, 13, 17),
        ] {
            let (hp, wp) = (h + 2, w + 2);
            let len = h * wp - 2;
            let planes = to_f32(&test_values(n * hp * wp, 11 + n as u64));
            let dyp = to_f32(&test_values(n * h * wp, 12 + w as u64));
            let got = tap_sums(&planes, hp * wp, &dyp, h * wp, n, wp, len);
            let want = tap_sums_portable(&planes, hp * wp, &dyp, h * wp, n, wp, len);
            let bits = |(a, r): ([[f32; LANES]; 9], [f32; 9])| {
                a.concat()
                    .iter()
                    .chain(&r)
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(got), bits(want), "n {n}, {h}x{w}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_weight_transform_in_avx2_has_the_portable_loops_bits() {
        if !avx2() {
            return;
        }
        // Kernel counts below, at and past whole groups of eight, and Omniglot's 64 x 64.
        for (co, ci) in [(1, 3), (2, 4), (3, 5), (64, 64), (64, 128), (7, 9)] {
            let w = to_f32(&test_values(co * ci * 9, (co * 31 + ci) as u64));
            let mut got = Vec::new();
            transform_weights_into(&w, co, ci, &mut got);
            let mut want = vec![f32::NAN; 16 * co * ci];
            transform_weights_portable(&w, co * ci, 0, &mut want);
            assert_eq!(bits(&got), bits(&want), "{co} x {ci}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_output_transform_in_one_avx2_pass_has_the_portable_loops_bits() {
        if !avx2() {
            return;
        }
        // (images of the chunk, first image, h, w): Omniglot's 14x14, 7x7 and 3x3 planes, one
        // pixel, odd and wide planes (tile rows of more than eight tiles, a ragged last group).
        for (nb, first, h, w) in [
            (3, 0, 14, 14),
            (2, 1, 7, 7),
            (4, 0, 3, 3),
            (2, 0, 1, 1),
            (1, 2, 5, 17),
            (2, 0, 21, 21),
            (1, 0, 6, 34),
        ] {
            let s = shape(4, 3, first + nb + 1, h, w);
            let tl = Tiling::new(&s, 2);
            let nt = nb * tl.per_image();
            let m = to_f32(&test_values(16 * s.c_out * nt, (h * 7 + w) as u64));
            let bias = to_f32(&test_values(s.c_out, 5));
            let run = |fast: bool| {
                let mut y = vec![std::mem::MaybeUninit::new(f32::NAN); s.c_out * s.positions()];
                let mut sc = Scratch::default();
                let images = first..first + nb;
                if fast {
                    output_transform(&m, &bias, &s, images, tl, &mut y, &mut sc);
                } else {
                    output_transform_portable(&m, &bias, &s, images, tl, &mut y, &mut sc);
                }
                // SAFETY: every element was initialised (to NaN, then maybe overwritten).
                y.iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect::<Vec<_>>()
            };
            let (got, want) = (run(true), run(false));
            assert!(want.iter().any(|v| !f32::from_bits(*v).is_nan()));
            assert_eq!(got, want, "{nb} images from {first}, {h}x{w}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_f2_input_transforms_avx2_first_pass_has_the_portable_loops_bits() {
        if !avx2() {
            return;
        }
        // (tile rows, tile columns, lanes, image): Omniglot's 14x14, 7x7 and 3x3 planes, wide and
        // ragged planes, a second image of a chunk.
        for (th, tw, lanes, bi) in [
            (7, 7, 4, 0),
            (4, 4, 4, 1),
            (2, 2, 4, 0),
            (1, 1, 4, 0),
            (11, 11, 8, 0),
            (3, 17, 8, 2),
            (5, 9, 8, 1),
        ] {
            let tl = Tiling { th, tw };
            let wp = 2 * tw.div_ceil(lanes) * lanes + 2;
            let row = to_f32(&test_values((2 * th + 2) * wp, (th * 31 + tw) as u64));
            let pitch = (bi + 1) * th * tw + TILE_LANES;
            let mut want = vec![0.0f32; 16 * pitch];
            if lanes == TILE_LANES {
                columns::<f32, TILE_LANES>(&row, wp, tl, bi, &mut want, pitch);
            } else {
                columns::<f32, { TILE_LANES / 2 }>(&row, wp, tl, bi, &mut want, pitch);
            }
            let mut got = vec![0.0f32; 16 * pitch];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { avx2::f2_columns(&row, wp, th, tw, lanes, bi, &mut got, pitch) };
            assert_eq!(
                bits(&got),
                bits(&want),
                "{th}x{tw} tiles, {lanes} lanes, image {bi}"
            );
        }
    }

    #[test]
    fn other_kernel_sizes_and_empty_batches_take_the_generic_path() {
        let s5 = ConvShape {
            k: 5,
            ..shape(6, 2, 1, 4, 4)
        };
        let (x, wt, b, _) = inputs(&s5, 3);
        assert!(forward(&x, &wt, &b, &s5).is_none());
        let s0 = shape(6, 2, 0, 4, 4);
        assert!(forward::<f64>(&[], &test_values(2 * 54, 1), &[0.0, 0.0], &s0).is_none());
    }
}

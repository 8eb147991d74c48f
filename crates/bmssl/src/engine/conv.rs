//! 2-D convolution, stride 1, "same" zero padding (3x3 with padding 1 in Conv4): the im2col + GEMM
//! path (every number type; the reference, and what `f64` checks run) and the dispatch to the fast
//! 3x3 kernels of [`fast`] for `f32` and, through [`dual`], for dual numbers.
//!
//! Layout: activations are channel-major `[C, N, H, W]` ("CNHW") throughout the backbone, so one
//! GEMM covers the whole batch and each channel's batch-norm statistics are one contiguous row.
//! Weights keep PyTorch's `[C_out, C_in, k, k]` order, read as a `[C_out, C_in*k*k]` matrix whose
//! column `ci*k*k + ky*k + kx` matches the im2col row of the same index.
//!
//! The batch is processed a few images at a time ([`chunks`]): the im2col matrix of a chunk
//! (a few megabytes at most) is reused and stays in cache, where the matrix of a whole 75-image
//! query batch would be 34 MB written and read back through memory. The forward pass keeps no
//! im2col matrix; the backward pass rebuilds it per chunk from the block input.
//!
//! Over 400 lines: im2col and col2im, the chunked forward and backward passes, the dispatch to the
//! fast kernels ([`fast`], [`dual`]) and the finite-difference tests are one kernel, kept together.

use super::scalar::{Dual, MatRef, Real, Scalar};
use std::any::TypeId;

pub mod dual;
pub mod fast;
mod padded;
pub mod products;

pub use padded::PaddedInput;

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub c_in: usize,
    pub c_out: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    /// Kernel side (odd); padding is `k / 2`, so the output has the input's spatial size.
    pub k: usize,
}

impl ConvShape {
    /// Rows of the im2col matrix: `C_in * k * k`.
    pub fn patch(&self) -> usize {
        self.c_in * self.k * self.k
    }
    /// Columns of the im2col matrix: `N * H * W`.
    pub fn positions(&self) -> usize {
        self.n * self.h * self.w
    }
}

/// Elements of an im2col chunk above which the batch is split (4 MiB of f32).
const CHUNK_ELEMS: usize = 1 << 20;

/// The batch split into nearly equal ranges of images whose im2col matrices hold at most
/// `max_elems` elements each (at least one image per range).
pub fn chunks(s: &ConvShape, max_elems: usize) -> Vec<std::ops::Range<usize>> {
    let per_image = (s.patch() * s.h * s.w).max(1);
    let count = (s.n * per_image)
        .div_ceil(max_elems.max(1))
        .clamp(1, s.n.max(1));
    (0..count)
        .map(|c| c * s.n / count..(c + 1) * s.n / count)
        .collect()
}

/// `x [C_in, N, H, W] -> cols [C_in*k*k, N*H*W]`, zeros where the window leaves the image.
pub fn im2col<S: Scalar>(x: &[S], s: &ConvShape) -> Vec<S> {
    let mut cols = Vec::new();
    im2col_range(x, s, 0..s.n, &mut cols);
    cols
}

/// im2col of images `images` only: `cols [C_in*k*k, |images|*H*W]` (cleared and refilled).
/// Written strictly in order, each element once (no zero-fill pass).
pub fn im2col_range<S: Scalar>(
    x: &[S],
    s: &ConvShape,
    images: std::ops::Range<usize>,
    cols: &mut Vec<S>,
) {
    let (h, w, k, pad) = (s.h as isize, s.w as isize, s.k, (s.k / 2) as isize);
    let hw = s.h * s.w;
    let zero = S::default();
    cols.clear();
    cols.reserve(s.patch() * images.len() * hw);
    for ci in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let (dy, dx) = (ky as isize - pad, kx as isize - pad);
                // Valid output columns for this horizontal shift.
                let x0 = ((-dx).max(0) as usize).min(s.w);
                let x1 = ((w - dx).min(w).max(0) as usize).max(x0);
                for b in images.clone() {
                    let src_img = &x[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
                    for y in 0..s.h {
                        let sy = y as isize + dy;
                        if sy < 0 || sy >= h {
                            cols.extend(std::iter::repeat_n(zero, s.w));
                            continue;
                        }
                        let src = &src_img[sy as usize * s.w..(sy as usize + 1) * s.w];
                        let sx0 = (x0 as isize + dx) as usize;
                        cols.extend(std::iter::repeat_n(zero, x0));
                        cols.extend_from_slice(&src[sx0..sx0 + (x1 - x0)]);
                        cols.extend(std::iter::repeat_n(zero, s.w - x1));
                    }
                }
            }
        }
    }
    debug_assert_eq!(cols.len(), s.patch() * images.len() * hw);
}

/// Adjoint of [`im2col`]: scatter-adds `cols [C_in*k*k, N*H*W]` back into `dx [C_in, N, H, W]`.
pub fn col2im<S: Scalar>(cols: &[S], s: &ConvShape) -> Vec<S> {
    let mut dx = vec![S::default(); s.c_in * s.n * s.h * s.w];
    col2im_range(cols, s, 0..s.n, &mut dx);
    dx
}

/// Adjoint of [`im2col_range`]: adds `cols [C_in*k*k, |images|*H*W]` into the images' part of
/// `dx [C_in, N, H, W]`.
pub fn col2im_range<S: Scalar>(
    cols: &[S],
    s: &ConvShape,
    images: std::ops::Range<usize>,
    dx: &mut [S],
) {
    let (h, w, k, pad) = (s.h as isize, s.w as isize, s.k, (s.k / 2) as isize);
    let hw = s.h * s.w;
    let cols_per_row = images.len() * hw;
    for ci in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src_row = &cols[row * cols_per_row..(row + 1) * cols_per_row];
                let (dy, dxs) = (ky as isize - pad, kx as isize - pad);
                let x0 = ((-dxs).max(0) as usize).min(s.w);
                let x1 = ((w - dxs).min(w).max(0) as usize).max(x0);
                for (bi, b) in images.clone().enumerate() {
                    let dst_img = &mut dx[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
                    for y in 0..s.h {
                        let sy = y as isize + dy;
                        if sy < 0 || sy >= h || x0 >= x1 {
                            continue;
                        }
                        let src = &src_row[(bi * s.h + y) * s.w..(bi * s.h + y + 1) * s.w];
                        let sx0 = (x0 as isize + dxs) as usize;
                        let dst = &mut dst_img
                            [sy as usize * s.w + sx0..sy as usize * s.w + sx0 + (x1 - x0)];
                        for (d, v) in dst.iter_mut().zip(&src[x0..x1]) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `y [C_out, N*H*W] = W [C_out, C_in*k*k] . im2col(x) + b`, chunk by chunk.
/// `f32` (training, evaluation) takes the fast kernels of [`fast`] where one applies to the shape,
/// and `Dual<f32>` / `Dual<f64>` (Hessian-vector products) the same kernels through [`dual`];
/// `f64` (the checks) keeps im2col + GEMM, the reference the fast kernels are tested against.
pub fn forward<S: Scalar>(x: &[S], weight: &[S], bias: &[S], s: &ConvShape) -> Vec<S> {
    if let Some(y) = forward_fast(x, weight, bias, s) {
        return y;
    }
    forward_chunked(x, weight, bias, s, CHUNK_ELEMS)
}

/// [`forward`] where the value part of the result is already known: `y_v`, the convolution of the
/// same input's values at the same weights' values, computed by a real pass (an inner step
/// before the Hessian-vector product at the same point). Dual numbers then compute only the
/// tangent ([`dual::forward_tangent`]) and take `y_v` as their value part; other number types,
/// and shapes no fast kernel serves, compute everything as [`forward`] does.
pub fn forward_known<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    s: &ConvShape,
    y_v: &[S::Value],
) -> Vec<S> {
    if let Some(y) = forward_tangent_fast(x, weight, bias, s, y_v) {
        return y;
    }
    forward(x, weight, bias, s)
}

/// [`backward`] where the value parts of the gradients are already known (as
/// [`forward_known`]); the input gradient is computed where `known.input` is given.
pub fn backward_known<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    s: &ConvShape,
    known: &KnownGrads<'_, S::Value>,
) -> ConvGrads<S> {
    if let Some(g) = backward_tangent_fast(dy, x, weight, s, known) {
        return g;
    }
    backward(dy, x, weight, s, known.input.is_some())
}

pub use dual::KnownGrads;

/// [`forward`] appending its output to `out` (same bits): the fast kernels for `f32` and the
/// known-value path for duals write there directly, so a caller keeping several calls' outputs
/// side by side (the learner's first block, a few output channels at a time) copies nothing.
pub fn forward_append<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    s: &ConvShape,
    out: &mut Vec<S>,
) {
    if let (Some(x), Some(o)) = (cast::<S, f32>(x), cast_vec_mut::<S, f32>(out)) {
        if let (Some(w), Some(b)) = (cast(weight), cast(bias)) {
            if fast::forward_append(x, w, b, s, o) {
                return;
            }
        }
    }
    out.extend_from_slice(&forward(x, weight, bias, s));
}

/// [`forward_known`] appending its output to `out` (as [`forward_append`]).
pub fn forward_known_append<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    s: &ConvShape,
    y_v: &[S::Value],
    out: &mut Vec<S>,
) {
    fn tangent<F: Real, S: Scalar>(
        x: &[S],
        weight: &[S],
        bias: &[S],
        s: &ConvShape,
        y_v: &[S::Value],
        out: &mut Vec<S>,
    ) -> Option<bool> {
        Some(dual::forward_tangent_append(
            cast::<S, Dual<F>>(x)?,
            cast(weight)?,
            cast(bias)?,
            s,
            cast(y_v)?,
            cast_vec_mut::<S, Dual<F>>(out)?,
        ))
    }
    if tangent::<f32, S>(x, weight, bias, s, y_v, out) == Some(true)
        || tangent::<f64, S>(x, weight, bias, s, y_v, out) == Some(true)
    {
        return;
    }
    out.extend_from_slice(&forward_known(x, weight, bias, s, y_v));
}

fn forward_tangent_fast<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    s: &ConvShape,
    y_v: &[S::Value],
) -> Option<Vec<S>> {
    if let Some(x) = cast::<S, Dual<f32>>(x) {
        let y = dual::forward_tangent(x, cast(weight)?, cast(bias)?, s, cast(y_v)?)?;
        return cast_vec(y);
    }
    if let Some(x) = cast::<S, Dual<f64>>(x) {
        let y = dual::forward_tangent(x, cast(weight)?, cast(bias)?, s, cast(y_v)?)?;
        return cast_vec(y);
    }
    None
}

fn backward_tangent_fast<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    s: &ConvShape,
    known: &KnownGrads<'_, S::Value>,
) -> Option<ConvGrads<S>> {
    fn cast_known<'a, V: 'static, F: 'static>(k: &KnownGrads<'a, V>) -> Option<KnownGrads<'a, F>> {
        Some(KnownGrads {
            weight: cast(k.weight)?,
            bias: cast(k.bias)?,
            input: match k.input {
                Some(v) => Some(cast(v)?),
                None => None,
            },
        })
    }
    if let Some(dy) = cast::<S, Dual<f32>>(dy) {
        let k = cast_known::<S::Value, f32>(known)?;
        return cast_grads(dual::backward_tangent(dy, cast(x)?, cast(weight)?, s, &k)?);
    }
    if let Some(dy) = cast::<S, Dual<f64>>(dy) {
        let k = cast_known::<S::Value, f64>(known)?;
        return cast_grads(dual::backward_tangent(dy, cast(x)?, cast(weight)?, s, &k)?);
    }
    None
}

/// Whether [`forward`] and [`backward`] (its weight and bias gradients) run the direct kernel of
/// [`fast`] on this shape for the number type `S`: `f32`, `Dual<f32>` and `Dual<f64>` (through
/// [`dual`]; [`fast_types`]), a nonempty 3x3 convolution with at most `fast::DIRECT_MAX_C_IN`
/// input channels.
///
/// That kernel computes each output channel from its own weights and bias alone, in an order that
/// does not depend on the other output channels, so a call on a contiguous range of output
/// channels (their rows of the weights and bias) gives exactly the bits of those channels in the
/// call on all of them: the learner relies on it to run such a block a few channels at a time,
/// in cache. False for `f64`, which keeps im2col + GEMM (the reference path), and for the Winograd
/// shapes. The input gradient sums over output channels, so it is not covered.
pub fn computes_channels_independently<S: Scalar>(s: &ConvShape) -> bool {
    fast_types().contains(&TypeId::of::<S>())
        && s.k == 3
        && s.positions() > 0
        && (1..=fast::DIRECT_MAX_C_IN).contains(&s.c_in)
        && s.c_out > 0
}

/// The number types [`forward_fast`] and [`backward_fast`] give to the fast kernels (a test checks
/// that the two lists agree).
fn fast_types() -> [TypeId; 3] {
    [
        TypeId::of::<f32>(),
        TypeId::of::<Dual<f32>>(),
        TypeId::of::<Dual<f64>>(),
    ]
}

/// `v` as a slice of `T` when `S` is `T` (the dispatch on the number type: the kernels choose
/// their path here, the number types know nothing of convolutions).
fn cast<S: 'static, T: 'static>(v: &[S]) -> Option<&[T]> {
    (TypeId::of::<S>() == TypeId::of::<T>()).then(|| {
        // SAFETY: S and T are the same type.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const T, v.len()) }
    })
}

/// `v` as a vector of `T` when `S` is `T` (as [`cast`], for a vector to append to).
fn cast_vec_mut<S: 'static, T: 'static>(v: &mut Vec<S>) -> Option<&mut Vec<T>> {
    (TypeId::of::<S>() == TypeId::of::<T>()).then(|| {
        // SAFETY: S and T are the same type, so `Vec<S>` is `Vec<T>`.
        unsafe { &mut *(v as *mut Vec<S> as *mut Vec<T>) }
    })
}

/// The inverse of [`cast`] for an owned vector.
fn cast_vec<T: 'static, S: 'static>(v: Vec<T>) -> Option<Vec<S>> {
    (TypeId::of::<S>() == TypeId::of::<T>()).then(|| {
        let mut v = std::mem::ManuallyDrop::new(v);
        // SAFETY: S and T are the same type, so pointer, length and capacity describe a Vec<S>.
        unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut S, v.len(), v.capacity()) }
    })
}

fn cast_grads<T: 'static, S: 'static>(g: ConvGrads<T>) -> Option<ConvGrads<S>> {
    Some(ConvGrads {
        weight: cast_vec(g.weight)?,
        bias: cast_vec(g.bias)?,
        input: match g.input {
            Some(v) => Some(cast_vec(v)?),
            None => None,
        },
    })
}

/// The fast forward for `f32`, `Dual<f32>` and `Dual<f64>` where a kernel applies, else `None`.
fn forward_fast<S: Scalar>(x: &[S], weight: &[S], bias: &[S], s: &ConvShape) -> Option<Vec<S>> {
    if let Some(x) = cast::<S, f32>(x) {
        return cast_vec(fast::forward(x, cast(weight)?, cast(bias)?, s)?);
    }
    if let Some(x) = cast::<S, Dual<f32>>(x) {
        return cast_vec(dual::forward(x, cast(weight)?, cast(bias)?, s)?);
    }
    if let Some(x) = cast::<S, Dual<f64>>(x) {
        return cast_vec(dual::forward(x, cast(weight)?, cast(bias)?, s)?);
    }
    None
}

/// The fast backward for the same types as [`forward_fast`], else `None`.
fn backward_fast<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    s: &ConvShape,
    need_input: bool,
) -> Option<ConvGrads<S>> {
    if let Some(dy) = cast::<S, f32>(dy) {
        return cast_grads(fast::backward(dy, cast(x)?, cast(weight)?, s, need_input)?);
    }
    if let Some(dy) = cast::<S, Dual<f32>>(dy) {
        return cast_grads(dual::backward(dy, cast(x)?, cast(weight)?, s, need_input)?);
    }
    if let Some(dy) = cast::<S, Dual<f64>>(dy) {
        return cast_grads(dual::backward(dy, cast(x)?, cast(weight)?, s, need_input)?);
    }
    None
}

fn forward_chunked<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    s: &ConvShape,
    max_elems: usize,
) -> Vec<S> {
    let (p, hw) = (s.positions(), s.h * s.w);
    let mut y: Vec<S> = bias
        .iter()
        .flat_map(|&b| std::iter::repeat_n(b, p))
        .collect();
    let mut cols = Vec::new();
    for r in chunks(s, max_elems) {
        im2col_range(x, s, r.clone(), &mut cols);
        let n = r.len() * hw;
        S::matmul_rs(
            &mut y[r.start * hw..],
            p,
            true,
            MatRef::rows(weight, s.c_out, s.patch()),
            MatRef::rows(&cols, s.patch(), n),
        );
    }
    y
}

/// Gradients of the convolution.
pub struct ConvGrads<S> {
    /// `[C_out, C_in, k, k]`
    pub weight: Vec<S>,
    /// `[C_out]`
    pub bias: Vec<S>,
    /// `[C_in, N, H, W]`, only when asked for (the first layer's input needs none).
    pub input: Option<Vec<S>>,
}

/// Backward from the block input `x`: `dW = dy . im2col(x)^T`, `db = row sums of dy`,
/// `dx = col2im(W^T . dy)`, chunk by chunk; `f32` takes the fast kernels as [`forward`] does.
pub fn backward<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    s: &ConvShape,
    need_input: bool,
) -> ConvGrads<S> {
    if let Some(g) = backward_fast(dy, x, weight, s, need_input) {
        return g;
    }
    backward_chunked(dy, x, weight, s, need_input, CHUNK_ELEMS)
}

fn backward_chunked<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    s: &ConvShape,
    need_input: bool,
    max_elems: usize,
) -> ConvGrads<S> {
    let (p, hw) = (s.positions(), s.h * s.w);
    let mut dw = vec![S::default(); s.c_out * s.patch()];
    let mut dx = need_input.then(|| vec![S::default(); s.c_in * s.n * hw]);
    let (mut cols, mut dcols) = (Vec::new(), Vec::new());
    for (i, r) in chunks(s, max_elems).into_iter().enumerate() {
        let n = r.len() * hw;
        // dy's columns of these images: a [C_out, n] block with rows p apart.
        let dy_block = MatRef {
            data: &dy[r.start * hw..],
            rows: s.c_out,
            cols: n,
            rs: p,
            cs: 1,
        };
        im2col_range(x, s, r.clone(), &mut cols);
        S::matmul(
            &mut dw,
            i > 0,
            dy_block,
            MatRef::rows(&cols, s.patch(), n).t(),
        );
        if let Some(dx) = dx.as_mut() {
            dcols.resize(s.patch() * n, S::default());
            S::matmul(
                &mut dcols,
                false,
                MatRef::rows(weight, s.c_out, s.patch()).t(),
                dy_block,
            );
            col2im_range(&dcols, s, r, dx);
        }
    }
    let db = super::reduce::row_sums(dy, p);
    ConvGrads {
        weight: dw,
        bias: db,
        input: dx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

    #[test]
    fn the_fast_types_are_exactly_the_types_the_fast_path_serves() {
        fn served<S: Scalar>() -> bool {
            let s = ConvShape {
                c_in: 1,
                c_out: 2,
                n: 1,
                h: 3,
                w: 3,
                k: 3,
            };
            let (x, w, b) = (
                vec![S::from_f64(0.5); 9],
                vec![S::from_f64(0.1); 18],
                vec![S::default(); 2],
            );
            let listed = fast_types().contains(&TypeId::of::<S>());
            assert_eq!(listed, computes_channels_independently::<S>(&s));
            let backward = backward_fast(&[S::from_f64(1.0); 18], &x, &w, &s, true).is_some();
            assert_eq!(forward_fast(&x, &w, &b, &s).is_some(), backward);
            assert_eq!(listed, backward);
            listed
        }
        assert!(served::<f32>() && served::<Dual<f32>>() && served::<Dual<f64>>());
        assert!(!served::<f64>());
    }

    const S: ConvShape = ConvShape {
        c_in: 2,
        c_out: 3,
        n: 2,
        h: 5,
        w: 4,
        k: 3,
    };

    fn direct(x: &[f64], wt: &[f64], b: &[f64], s: &ConvShape) -> Vec<f64> {
        let mut y = vec![0.0; s.c_out * s.positions()];
        for co in 0..s.c_out {
            for n in 0..s.n {
                for yy in 0..s.h {
                    for xx in 0..s.w {
                        let mut acc = b[co];
                        for ci in 0..s.c_in {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (sy, sx) = (
                                        yy as isize + ky as isize - 1,
                                        xx as isize + kx as isize - 1,
                                    );
                                    if sy >= 0
                                        && sx >= 0
                                        && (sy as usize) < s.h
                                        && (sx as usize) < s.w
                                    {
                                        acc += wt[((co * s.c_in + ci) * 3 + ky) * 3 + kx]
                                            * x[((ci * s.n + n) * s.h + sy as usize) * s.w
                                                + sx as usize];
                                    }
                                }
                            }
                        }
                        y[((co * s.n + n) * s.h + yy) * s.w + xx] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_a_direct_convolution() {
        let x = test_values(S.c_in * S.n * S.h * S.w, 1);
        let wt = test_values(S.c_out * S.patch(), 2);
        let b = test_values(S.c_out, 3);
        let y = forward(&x, &wt, &b, &S);
        for (a, d) in y.iter().zip(direct(&x, &wt, &b, &S)) {
            assert!((a - d).abs() < 1e-12);
        }
    }

    #[test]
    fn gradients_match_finite_differences_for_input_weight_and_bias() {
        let x = test_values(S.c_in * S.n * S.h * S.w, 1);
        let wt = test_values(S.c_out * S.patch(), 2);
        let b = test_values(S.c_out, 3);
        let r = test_values(S.c_out * S.positions(), 4); // loss = <r, y>
        let g = backward(&r, &x, &wt, &S, true);
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient(
            "conv input",
            &mut |v| loss(forward(v, &wt, &b, &S)),
            &x,
            g.input.as_ref().unwrap(),
            1e-7,
        );
        assert_gradient(
            "conv weight",
            &mut |v| loss(forward(&x, v, &b, &S)),
            &wt,
            &g.weight,
            1e-7,
        );
        assert_gradient(
            "conv bias",
            &mut |v| loss(forward(&x, &wt, v, &S)),
            &b,
            &g.bias,
            1e-7,
        );
    }

    #[test]
    fn chunked_passes_equal_the_whole_batch_pass_for_uneven_chunks() {
        let s = ConvShape { n: 5, ..S };
        let x = test_values(s.c_in * s.n * s.h * s.w, 5);
        let wt = test_values(s.c_out * s.patch(), 6);
        let b = test_values(s.c_out, 7);
        let r = test_values(s.c_out * s.positions(), 8);
        let one_image = s.patch() * s.h * s.w;
        assert_eq!(chunks(&s, 2 * one_image), vec![0..1, 1..3, 3..5]);
        let whole = forward_chunked(&x, &wt, &b, &s, usize::MAX);
        let split = forward_chunked(&x, &wt, &b, &s, 2 * one_image);
        for (a, d) in whole.iter().zip(&split) {
            assert!((a - d).abs() < 1e-12);
        }
        for (a, d) in whole.iter().zip(direct(&x, &wt, &b, &s)) {
            assert!((a - d).abs() < 1e-12);
        }
        let gw = backward_chunked(&r, &x, &wt, &s, true, usize::MAX);
        let gs = backward_chunked(&r, &x, &wt, &s, true, 2 * one_image);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&gw.weight, &gs.weight) && close(&gw.bias, &gs.bias));
        assert!(close(
            gw.input.as_ref().unwrap(),
            gs.input.as_ref().unwrap()
        ));
    }
}

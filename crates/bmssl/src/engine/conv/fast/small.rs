//! Convolutions of small planes (at most [`MAX_SIDE`] on a side: the 3x3 fourth block of
//! Omniglot's Conv4) as one matrix product over their im2col matrix per chunk of images.
//!
//! Why: on a 3x3 plane Winograd F(2x2) covers each image with four 4x4 tiles (64 products per
//! channel pair for 81 direct ones), and what it saves in multiply-adds it spends several times
//! over in fixed costs: the weight transform (23 us for 64 x 64 kernels, the same at any batch),
//! and input and output transforms whose groups of eight tiles are a quarter full. im2col's
//! matrix is small here (`9 C_in x N h w`), so one product with the weights read in place does
//! the convolution at the products' rate (figures at [`MAX_SIDE`]). A channel's im2col column for
//! one tap is its planes shifted by the tap's offset, with the positions whose tap lands in the
//! padding zeroed: one contiguous copy per channel and tap, not a gather per element.
//!
//! - forward: `y [C_out][N h w] = bias + W [C_out][9 C_in] cols [9 C_in][N h w]`;
//! - weight gradient: `dW = dY cols^T`, summed over the chunks in order;
//! - input gradient: `dcols = W^T dY`, then each tap's column (its padding taps zeroed) added
//!   back shifted onto `dx` (`col2im`), tap by tap in order `ky, kx`.
//!
//! Every sum runs in a fixed order (the products' chains, then the taps), so the bits do not
//! depend on threads or on the CPU's vector width.

use super::super::{products, ConvShape};
use super::{at_least, image_chunks, put_buffers, take_buffers, Buffers};
use crate::engine::scalar::{MatRef, Real};

/// Largest plane side computed here instead of by Winograd F(2x2). Measured (64 -> 64 channels,
/// one thread, 2-core AVX2 EPYC, 2026-12-07; forward / backward with the input gradient, us,
/// Winograd against this): 3x3 planes, 5 images 111 / 267 against 59 / 111, 15 images 213 / 486
/// against 164 / 298, 40 images 591 / 1060 against 447 / 795; 4x4 planes, 5 images 111 / 274
/// against 90 / 161 but 15 images 216 / 509 against 254 / 477 and 40 images 604 / 1137 against
/// 816 / 1406. So up to 3: at 4 and above Winograd's savings in multiply-adds win with the batch.
pub(super) const MAX_SIDE: usize = 3;

/// im2col elements per chunk of images (4 MiB of `f32`): bounds the scratch matrix for any batch.
const CHUNK_ELEMS: usize = 1 << 20;

/// Whether this convolution (3x3, Winograd-sized input channels) is computed here.
pub(super) fn applies(s: &ConvShape) -> bool {
    s.h.max(s.w) <= MAX_SIDE
}

/// Tap `t = 3 ky + kx` reads input position `q + off(t)` for output position `q` of the same
/// image (`off = (ky - 1) w + kx - 1`), where that lies inside the image: then a whole channel's
/// column of im2col is the channel's planes shifted by `off`, with the positions whose tap lands
/// in the padding zeroed.
fn offset(t: usize, w: usize) -> isize {
    (t / 3) as isize * w as isize - w as isize + (t % 3) as isize - 1
}

/// The range of `q` in `0..len` with `q + off` also in `0..len`, and where `q + off` starts
/// (empty, at 0, where there is none).
fn shifted(len: usize, off: isize) -> (std::ops::Range<usize>, usize) {
    let lo = (-off).max(0) as usize;
    let hi = len as isize - off.max(0);
    if hi <= lo as isize {
        return (0..0, 0);
    }
    (lo..hi as usize, (lo as isize + off) as usize)
}

/// Zeroes the positions of `images` (`h x w` each, side by side in `v`) whose tap `t` lands in
/// the padding: the top row for `ky = 0`, the bottom row for `ky = 2`, the left column for
/// `kx = 0`, the right one for `kx = 2`.
fn zero_padding_taps<F: Real>(v: &mut [F], t: usize, h: usize, w: usize) {
    let (ky, kx) = (t / 3, t % 3);
    if ky != 1 {
        let row = if ky == 0 { 0 } else { (h - 1) * w };
        for img in v.chunks_exact_mut(h * w) {
            img[row..row + w].fill(F::default());
        }
    }
    if kx != 1 {
        let col = if kx == 0 { 0 } else { w - 1 };
        for row in v.chunks_exact_mut(w) {
            row[col] = F::default();
        }
    }
}

/// `cols [(c, tap)][(image - images.start) h w + q]` of `images`, every element written: for
/// each channel and tap, the chunk's planes shifted by the tap's offset, then its padding taps
/// zeroed.
fn im2col<F: Real>(x: &[F], s: &ConvShape, images: std::ops::Range<usize>, cols: &mut Vec<F>) {
    let hw = s.h * s.w;
    let p = images.len() * hw;
    at_least(cols, 9 * s.c_in * p);
    for c in 0..s.c_in {
        let src = &x[(c * s.n + images.start) * hw..][..p];
        for t in 0..9 {
            let dst = &mut cols[(c * 9 + t) * p..][..p];
            let off = offset(t, s.w);
            let (q, from) = shifted(p, off);
            dst[..q.start].fill(F::default());
            dst[q.end..].fill(F::default());
            dst[q.clone()].copy_from_slice(&src[from..from + q.len()]);
            zero_padding_taps(dst, t, s.h, s.w);
        }
    }
}

/// Adds the columns `dcols` (the layout of [`im2col`]; their padding taps are zeroed here) back
/// onto `dx [C_in, N, h, w]`, tap by tap in order.
fn col2im<F: Real>(dcols: &mut [F], s: &ConvShape, images: std::ops::Range<usize>, dx: &mut [F]) {
    let hw = s.h * s.w;
    let p = images.len() * hw;
    for c in 0..s.c_in {
        let dst = &mut dx[(c * s.n + images.start) * hw..][..p];
        for t in 0..9 {
            let src = &mut dcols[(c * 9 + t) * p..][..p];
            zero_padding_taps(src, t, s.h, s.w);
            let off = offset(t, s.w);
            let (q, to) = shifted(p, off);
            for (d, &v) in dst[to..to + q.len()].iter_mut().zip(&src[q]) {
                *d += v;
            }
        }
    }
}

/// The forward pass, appending `y [C_out, N, H, W]` to `out`.
pub(super) fn forward_append<F: Real>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
) {
    forward_chunked(x, weight, bias, s, out, CHUNK_ELEMS)
}

fn forward_chunked<F: Real>(
    x: &[F],
    weight: &[F],
    bias: &[F],
    s: &ConvShape,
    out: &mut Vec<F>,
    chunk_elems: usize,
) {
    let (hw, patch, positions) = (s.h * s.w, 9 * s.c_in, s.positions());
    let start = out.len();
    for &b in bias {
        out.extend(std::iter::repeat_n(b, positions));
    }
    let y = &mut out[start..];
    let mut buf = take_buffers::<F>();
    let cols = &mut buf.v;
    for r in image_chunks(s.n, patch * hw, chunk_elems) {
        im2col(x, s, r.clone(), cols);
        let p = r.len() * hw;
        products::product(
            &mut y[r.start * hw..],
            positions,
            MatRef::rows(weight, s.c_out, patch),
            MatRef::rows(cols, patch, p),
            true,
        );
    }
    put_buffers(buf);
}

/// The backward pass: `(dW, dx)` (`dx` only when `need_input`).
pub(super) fn backward<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
) -> (Vec<F>, Option<Vec<F>>) {
    backward_chunked(dy, x, weight, s, need_input, CHUNK_ELEMS)
}

fn backward_chunked<F: Real>(
    dy: &[F],
    x: &[F],
    weight: &[F],
    s: &ConvShape,
    need_input: bool,
    chunk_elems: usize,
) -> (Vec<F>, Option<Vec<F>>) {
    let (hw, patch, positions) = (s.h * s.w, 9 * s.c_in, s.positions());
    let mut dw = vec![F::default(); s.c_out * patch];
    let mut dx = need_input.then(|| vec![F::default(); s.c_in * positions]);
    let mut buf = take_buffers::<F>();
    let Buffers {
        v: cols, m: dcols, ..
    } = &mut buf;
    for (idx, r) in image_chunks(s.n, patch * hw, chunk_elems)
        .into_iter()
        .enumerate()
    {
        im2col(x, s, r.clone(), cols);
        let p = r.len() * hw;
        let dyr = MatRef {
            data: &dy[r.start * hw..],
            rows: s.c_out,
            cols: p,
            rs: positions,
            cs: 1,
        };
        products::product(
            &mut dw,
            patch,
            dyr,
            MatRef::rows(cols, patch, p).t(),
            idx > 0,
        );
        if let Some(dx) = dx.as_mut() {
            at_least(dcols, patch * p); // every element of `dcols[..patch p]` is written by the product
            products::product(
                dcols,
                p,
                MatRef::rows(weight, s.c_out, patch).t(),
                dyr,
                false,
            );
            col2im(dcols, s, r, dx);
        }
    }
    put_buffers(buf);
    (dw, dx)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{inputs, shape};
    use super::*;
    use crate::engine::conv;
    use crate::engine::gradcheck::max_relative_error;

    #[test]
    fn planes_up_to_three_on_a_side_take_the_im2col_product_and_larger_ones_winograd() {
        assert!(applies(&shape(64, 64, 5, 3, 3)));
        assert!(applies(&shape(64, 64, 5, 1, 3)));
        assert!(applies(&shape(8, 4, 1, 1, 1)));
        assert!(!applies(&shape(64, 64, 5, 4, 3)));
        assert!(!applies(&shape(64, 64, 5, 7, 7)));
    }

    #[test]
    fn the_im2col_product_equals_the_reference_path_in_f64_in_one_chunk_and_in_several() {
        // One-pixel, single-row, single-column and square planes; one and several images.
        for (i, s) in [
            shape(5, 3, 1, 1, 1),
            shape(6, 4, 3, 1, 3),
            shape(7, 2, 2, 3, 1),
            shape(5, 6, 2, 2, 2),
            shape(9, 5, 4, 3, 3),
            shape(6, 7, 5, 3, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let (x, wt, b, dy) = inputs(&s, 10 * i as u64);
            let want = conv::forward(&x, &wt, &b, &s);
            let gw = conv::backward(&dy, &x, &wt, &s, true);
            let per_image = 9 * s.c_in * s.h * s.w;
            // One chunk, and one image per chunk.
            for chunk in [CHUNK_ELEMS, per_image] {
                let mut y = vec![7.0];
                forward_chunked(&x, &wt, &b, &s, &mut y, chunk);
                assert_eq!(y[0], 7.0, "appends after what is there");
                assert!(max_relative_error(&y[1..], &want, 1e-8) < 1e-13, "{s:?}");
                let (dw, dx) = backward_chunked(&dy, &x, &wt, &s, true, chunk);
                assert!(max_relative_error(&dw, &gw.weight, 1e-8) < 1e-13, "{s:?}");
                let dx = dx.expect("asked for");
                let dx_want = gw.input.as_ref().expect("asked for");
                assert!(max_relative_error(&dx, dx_want, 1e-8) < 1e-13, "{s:?}");
                let (dw0, none) = backward_chunked(&dy, &x, &wt, &s, false, chunk);
                assert_eq!(dw0, dw, "the weight gradient does not depend on need_input");
                assert!(none.is_none());
            }
        }
    }
}

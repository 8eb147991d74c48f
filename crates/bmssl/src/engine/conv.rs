//! 2-D convolution, stride 1, "same" zero padding (3x3 with padding 1 in Conv4), as im2col + GEMM.
//!
//! Layout: activations are channel-major `[C, N, H, W]` ("CNHW") throughout the backbone, so one
//! GEMM covers the whole batch and each channel's batch-norm statistics are one contiguous row.
//! Weights keep PyTorch's `[C_out, C_in, k, k]` order, read as a `[C_out, C_in*k*k]` matrix whose
//! column `ci*k*k + ky*k + kx` matches the im2col row of the same index.

use super::scalar::{MatRef, Scalar};

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

/// `x [C_in, N, H, W] -> cols [C_in*k*k, N*H*W]`, zeros where the window leaves the image.
pub fn im2col<S: Scalar>(x: &[S], s: &ConvShape) -> Vec<S> {
    let (h, w, k, pad) = (s.h as isize, s.w as isize, s.k, (s.k / 2) as isize);
    let hw = s.h * s.w;
    let zero = S::default();
    // Written strictly in order, each element once (no zero-fill pass over the whole matrix, which
    // is tens of megabytes for a 75-image query batch).
    let mut cols = Vec::with_capacity(s.patch() * s.positions());
    for ci in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let (dy, dx) = (ky as isize - pad, kx as isize - pad);
                // Valid output columns for this horizontal shift.
                let x0 = ((-dx).max(0) as usize).min(s.w);
                let x1 = ((w - dx).min(w).max(0) as usize).max(x0);
                for b in 0..s.n {
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
    debug_assert_eq!(cols.len(), s.patch() * s.positions());
    cols
}

/// Adjoint of [`im2col`]: scatter-adds `cols [C_in*k*k, N*H*W]` back into `dx [C_in, N, H, W]`.
pub fn col2im<S: Scalar>(cols: &[S], s: &ConvShape) -> Vec<S> {
    let (h, w, k, pad) = (s.h as isize, s.w as isize, s.k, (s.k / 2) as isize);
    let hw = s.h * s.w;
    let mut dx = vec![S::default(); s.c_in * s.n * hw];
    for ci in 0..s.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src_row = &cols[row * s.positions()..(row + 1) * s.positions()];
                let (dy, dxs) = (ky as isize - pad, kx as isize - pad);
                let x0 = (-dxs).max(0) as usize;
                let x1 = (w - dxs).min(w).max(0) as usize;
                for b in 0..s.n {
                    let dst_img = &mut dx[(ci * s.n + b) * hw..(ci * s.n + b + 1) * hw];
                    for y in 0..s.h {
                        let sy = y as isize + dy;
                        if sy < 0 || sy >= h || x0 >= x1 {
                            continue;
                        }
                        let src = &src_row[(b * s.h + y) * s.w..(b * s.h + y + 1) * s.w];
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
    dx
}

/// Forward: `y [C_out, N*H*W] = W [C_out, C_in*k*k] . cols + b`. Returns `(y, cols)`; the
/// im2col matrix is kept for the weight gradient.
pub fn forward<S: Scalar>(x: &[S], weight: &[S], bias: &[S], s: &ConvShape) -> (Vec<S>, Vec<S>) {
    let cols = im2col(x, s);
    let p = s.positions();
    let mut y: Vec<S> = bias
        .iter()
        .flat_map(|&b| std::iter::repeat_n(b, p))
        .collect();
    S::matmul(
        &mut y,
        true,
        MatRef::rows(weight, s.c_out, s.patch()),
        MatRef::rows(&cols, s.patch(), p),
    );
    (y, cols)
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

/// Backward: `dW = dy . cols^T`, `db = row sums of dy`, `dx = col2im(W^T . dy)`.
pub fn backward<S: Scalar>(
    dy: &[S],
    cols: &[S],
    weight: &[S],
    s: &ConvShape,
    need_input: bool,
) -> ConvGrads<S> {
    let p = s.positions();
    let mut dw = vec![S::default(); s.c_out * s.patch()];
    S::matmul(
        &mut dw,
        false,
        MatRef::rows(dy, s.c_out, p),
        MatRef::rows(cols, s.patch(), p).t(),
    );
    let db = dy.chunks(p).map(super::reduce::sum).collect();
    let input = need_input.then(|| {
        let mut dcols = vec![S::default(); s.patch() * p];
        S::matmul(
            &mut dcols,
            false,
            MatRef::rows(weight, s.c_out, s.patch()).t(),
            MatRef::rows(dy, s.c_out, p),
        );
        col2im(&dcols, s)
    });
    ConvGrads {
        weight: dw,
        bias: db,
        input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

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
        let (y, _) = forward(&x, &wt, &b, &S);
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
        let (_, cols) = forward(&x, &wt, &b, &S);
        let g = backward(&r, &cols, &wt, &S, true);
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient(
            "conv input",
            &mut |v| loss(forward(v, &wt, &b, &S).0),
            &x,
            g.input.as_ref().unwrap(),
            1e-7,
        );
        assert_gradient(
            "conv weight",
            &mut |v| loss(forward(&x, v, &b, &S).0),
            &wt,
            &g.weight,
            1e-7,
        );
        assert_gradient(
            "conv bias",
            &mut |v| loss(forward(&x, &wt, v, &S).0),
            &b,
            &g.bias,
            1e-7,
        );
    }
}

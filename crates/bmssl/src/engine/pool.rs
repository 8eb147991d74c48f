//! 2x2 max-pooling with stride 2, flooring odd sizes (7x7 -> 3x3) like `F.max_pool2d(x, 2)`.
//!
//! The winner of each window is chosen by value and remembered, so the backward pass routes the
//! gradient to exactly that input (first maximum on ties, as PyTorch).
//!
//! The fused affine + ReLU + pooling goes through `pool/avx2.rs` for `f32` and `Dual<f32>` on a CPU
//! with AVX2 (the same bits; the portable loops stay as the other types' path and the reference).
//!
//! Over 400 lines because each fused kernel's dispatch sits beside its portable loop, and the tests
//! (finite differences, and the AVX2 kernels' bits against the loops on odd widths, ties, signed
//! zeros and NaN) beside both.

use super::scalar::Scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// `x`'s floats and floats per element (1 for `f32`, 2 for `Dual<f32>`) when the CPU has AVX2:
/// what the kernels of `pool/avx2.rs` take.
#[cfg(target_arch = "x86_64")]
fn avx2_f32s<S: 'static>(x: &[S]) -> Option<(&[f32], usize)> {
    super::scalar::as_f32s(x).filter(|_| std::arch::is_x86_feature_detected!("avx2"))
}

/// [`avx2_f32s`] of a mutable slice.
#[cfg(target_arch = "x86_64")]
fn avx2_f32s_mut<S: 'static>(x: &mut [S]) -> Option<(&mut [f32], usize)> {
    super::scalar::as_f32s_mut(x).filter(|_| std::arch::is_x86_feature_detected!("avx2"))
}

/// Spatial geometry of a pooling layer over `[planes, H, W]` (planes = C*N in CNHW).
#[derive(Clone, Copy, Debug)]
pub struct PoolShape {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
}

impl PoolShape {
    /// Output height / width.
    pub fn out_hw(&self) -> (usize, usize) {
        (self.h / 2, self.w / 2)
    }
}

/// Forward: returns `y [planes, H/2, W/2]` and, per output, the flat index of its winning input.
pub fn forward<S: Scalar>(x: &[S], s: &PoolShape) -> (Vec<S>, Vec<u32>) {
    let (oh, ow) = s.out_hw();
    let mut y = Vec::with_capacity(s.planes * oh * ow);
    let mut arg = Vec::with_capacity(s.planes * oh * ow);
    for p in 0..s.planes {
        let base = p * s.h * s.w;
        for oy in 0..oh {
            for ox in 0..ow {
                let i0 = base + 2 * oy * s.w + 2 * ox;
                let mut best = i0;
                for i in [i0 + 1, i0 + s.w, i0 + s.w + 1] {
                    if x[i].re() > x[best].re() {
                        best = i;
                    }
                }
                y.push(x[best]);
                arg.push(best as u32);
            }
        }
    }
    (y, arg)
}

/// Backward: scatters `dy` to the winners; everything else gets zero.
pub fn backward<S: Scalar>(dy: &[S], arg: &[u32], input_len: usize) -> Vec<S> {
    let mut dx = vec![S::default(); input_len];
    for (&d, &i) in dy.iter().zip(arg) {
        dx[i as usize] += d;
    }
    dx
}

/// The winner of one 2x2 window of pre-activations `z = g * x + b`, `x` in the order top-left,
/// top-right, bottom-left, bottom-right: its position in that order (the first maximum wins, as
/// in PyTorch) and the output `max(z, 0)`.
#[inline(always)]
fn window_winner<S: Scalar>(g: S, b: S, x: [S; 4]) -> (usize, S) {
    // Written as selects rather than branches: which input of a window wins is data, and a
    // mispredicted branch per window cost more than the arithmetic.
    let (mut best, mut best_z) = (0, g * x[0] + b);
    for (k, v) in [(1, x[1]), (2, x[2]), (3, x[3])] {
        let z = g * v + b;
        let better = z.re() > best_z.re();
        best = if better { k } else { best };
        best_z = if better { z } else { best_z };
    }
    let y = if best_z.re() > 0.0 {
        best_z
    } else {
        S::default()
    };
    (best, y)
}

/// Fused `max-pool(ReLU(gamma_c * xhat + beta_c))` over `xhat [C, N, H, W]` (the batch-norm
/// affine part, ReLU and pooling in one pass, with no full-size intermediate). ReLU and max commute
/// (`relu(max(z)) = max(relu(z))`), so the winner is the window's largest pre-activation and the
/// output is clamped at zero. Returns `(y [C, N, H/2, W/2], winner index per output)`.
pub fn affine_relu_max<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
) -> (Vec<S>, Vec<u32>) {
    let (oh, ow) = s.out_hw();
    let mut y = vec![S::default(); s.planes * oh * ow];
    let mut arg = vec![0u32; s.planes * oh * ow];
    affine_relu_max_into(xhat, gamma, beta, s, 0, &mut y, &mut arg);
    (y, arg)
}

/// [`affine_relu_max`] of a part of a larger tensor (the learner pools a block a few channels at a
/// time): `xhat` starts at index `first` of that tensor, and the winners are written as indices
/// into it. Writes `y` and `arg`, `planes * (H/2) * (W/2)` each.
pub fn affine_relu_max_into<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
    first: usize,
    y: &mut [S],
    arg: &mut [u32],
) {
    let (oh, ow) = s.out_hw();
    assert!(y.len() == s.planes * oh * ow && arg.len() == y.len());
    let planes_per_channel = s.planes / gamma.len();
    let w = s.w as u32;
    #[cfg(target_arch = "x86_64")]
    if let (Some((x, e)), Some((g, _)), Some((b, _)), Some((y, _))) = (
        avx2_f32s(xhat),
        avx2_f32s(gamma),
        avx2_f32s(beta),
        avx2_f32s_mut(y),
    ) {
        // e floats per number: the same rows in floats.
        let rows = y
            .chunks_exact_mut(e * ow.max(1))
            .zip(arg.chunks_exact_mut(ow.max(1)));
        for (r, (y_row, arg_row)) in rows.enumerate().take(s.planes * oh) {
            let (p, oy) = (r / oh, r % oh);
            let c = p / planes_per_channel;
            let top = p * s.h * s.w + 2 * oy * s.w;
            let r0 = &x[e * top..e * (top + 2 * ow)];
            let r1 = &x[e * (top + s.w)..e * (top + s.w + 2 * ow)];
            let base = (first + top) as u32;
            // SAFETY: the CPU has AVX2 (`avx2_f32s` checked); the rows hold 2 ow numbers, and
            // for duals g and b hold (value, tangent) pairs.
            unsafe {
                if e == 2 {
                    let (gc, bc) = ([g[2 * c], g[2 * c + 1]], [b[2 * c], b[2 * c + 1]]);
                    avx2::winners_row_dual(gc, bc, r0, r1, y_row, arg_row, base, w);
                } else {
                    avx2::winners_row(g[c], b[c], r0, r1, y_row, arg_row, base, w);
                }
            }
        }
        return;
    }
    affine_relu_max_into_portable(xhat, gamma, beta, s, first, y, arg);
}

/// [`affine_relu_max_into`] as plain loops (every number type; the reference of the AVX2 kernel).
fn affine_relu_max_into_portable<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
    first: usize,
    y: &mut [S],
    arg: &mut [u32],
) {
    let (oh, ow) = s.out_hw();
    let planes_per_channel = s.planes / gamma.len();
    let w = s.w as u32;
    let offsets = [0, 1, w, w + 1];
    let rows = y
        .chunks_exact_mut(ow.max(1))
        .zip(arg.chunks_exact_mut(ow.max(1)));
    for (r, (y_row, arg_row)) in rows.enumerate().take(s.planes * oh) {
        let (p, oy) = (r / oh, r % oh);
        let (g, b) = (gamma[p / planes_per_channel], beta[p / planes_per_channel]);
        let top = p * s.h * s.w + 2 * oy * s.w;
        let r0 = &xhat[top..top + 2 * ow];
        let r1 = &xhat[top + s.w..top + s.w + 2 * ow];
        let base = (first + top) as u32;
        for (ox, ((yo, ao), (a, c))) in y_row
            .iter_mut()
            .zip(arg_row.iter_mut())
            .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
            .enumerate()
        {
            let (k, v) = window_winner(g, b, [a[0], a[1], c[0], c[1]]);
            *yo = v;
            *ao = base + (2 * ox) as u32 + offsets[k];
        }
    }
}

/// The outputs of [`affine_relu_max`] alone, bit for bit (inference: nothing flows back, so the
/// winners are not recorded), computed two rows at a time.
pub fn affine_relu_max_values<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
) -> Vec<S> {
    let (oh, ow) = s.out_hw();
    let mut y = Vec::with_capacity(s.planes * oh * ow);
    affine_relu_max_values_into(xhat, gamma, beta, s, &mut y);
    y
}

/// [`affine_relu_max_values`] appended to `y` (the learner pools a block a few channels at a
/// time, into one output).
pub fn affine_relu_max_values_into<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
    y: &mut Vec<S>,
) {
    let (oh, ow) = s.out_hw();
    let planes_per_channel = s.planes / gamma.len();
    #[cfg(target_arch = "x86_64")]
    if let (Some((x, 1)), Some((g, _)), Some((b, _))) =
        (avx2_f32s(xhat), avx2_f32s(gamma), avx2_f32s(beta))
    {
        if oh * ow == 0 {
            return;
        }
        let start = y.len();
        y.resize(start + s.planes * oh * ow, S::default());
        let (out, _) = avx2_f32s_mut(&mut y[start..]).expect("S is f32");
        for (p, (plane, out)) in x
            .chunks_exact(s.h * s.w)
            .zip(out.chunks_exact_mut(oh * ow))
            .enumerate()
        {
            let c = p / planes_per_channel;
            for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let r0 = &plane[2 * oy * s.w..2 * oy * s.w + 2 * ow];
                let r1 = &plane[(2 * oy + 1) * s.w..(2 * oy + 1) * s.w + 2 * ow];
                // SAFETY: the CPU has AVX2 (`avx2_f32s` checked); the rows hold 2 ow inputs.
                unsafe { avx2::values_row(g[c], b[c], r0, r1, out_row) };
            }
        }
        return;
    }
    affine_relu_max_values_into_portable(xhat, gamma, beta, s, y);
}

/// [`affine_relu_max_values_into`] as plain loops (every number type; the reference of the AVX2
/// kernel).
fn affine_relu_max_values_into_portable<S: Scalar>(
    xhat: &[S],
    gamma: &[S],
    beta: &[S],
    s: &PoolShape,
    y: &mut Vec<S>,
) {
    let (oh, ow) = s.out_hw();
    let planes_per_channel = s.planes / gamma.len();
    for (p, plane) in xhat.chunks_exact(s.h * s.w).enumerate() {
        let (g, b) = (gamma[p / planes_per_channel], beta[p / planes_per_channel]);
        for oy in 0..oh {
            let r0 = &plane[2 * oy * s.w..2 * oy * s.w + 2 * ow];
            let r1 = &plane[(2 * oy + 1) * s.w..(2 * oy + 1) * s.w + 2 * ow];
            y.extend(
                r0.chunks_exact(2)
                    .zip(r1.chunks_exact(2))
                    .map(|(a, c)| window_winner(g, b, [a[0], a[1], c[0], c[1]]).1),
            );
        }
    }
}

/// Backward of the ReLU + pooling part of [`affine_relu_max`]: `dy` goes to each window's winner
/// where the output was positive. Returns the gradient with respect to the pre-activation `z`.
pub fn relu_max_backward<S: Scalar>(dy: &[S], y: &[S], arg: &[u32], input_len: usize) -> Vec<S> {
    let mut dz = vec![S::default(); input_len];
    relu_max_backward_into(dy, y, arg, 0, &mut dz);
    dz
}

/// [`relu_max_backward`] of a part of a larger tensor: `arg` indexes that tensor, whose part from
/// index `first` on is `dz`, zero on entry (the learner's backward pass a few channels at a time).
pub fn relu_max_backward_into<S: Scalar>(
    dy: &[S],
    y: &[S],
    arg: &[u32],
    first: usize,
    dz: &mut [S],
) {
    // Without a branch: whether an output was positive is data (half of them, unpredictably), and
    // adding zero where it was not leaves `dz` as it was (+0 on entry, and each input wins at
    // most one window).
    for ((&d, &v), &i) in dy.iter().zip(y).zip(arg) {
        let d = if v.re() > 0.0 { d } else { S::default() };
        dz[i as usize - first] += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_affine_relu_pool_equals_the_three_steps_and_has_their_gradient() {
        let s = PoolShape {
            planes: 2 * 3,
            h: 4,
            w: 5,
        };
        let xhat = test_values(2 * 3 * 4 * 5, 15);
        let (g, b) = (vec![1.3, -0.7], vec![0.1, 0.2]);
        let z: Vec<f64> = xhat
            .iter()
            .enumerate()
            .map(|(i, &h)| g[i / 60] * h + b[i / 60])
            .collect();
        let (unfused, _) = forward(&crate::engine::activation::relu(&z), &s);
        let (fused, arg) = affine_relu_max(&xhat, &g, &b, &s);
        assert_eq!(fused, unfused);
        let r = test_values(fused.len(), 16);
        let dz = relu_max_backward(&r, &fused, &arg, z.len());
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        let relu_pool = |v: &[f64]| forward(&crate::engine::activation::relu(v), &s).0;
        assert_gradient("relu+maxpool", &mut |v| loss(relu_pool(v)), &z, &dz, 1e-8);
    }
    use crate::engine::gradcheck::{assert_gradient, test_values};

    #[test]
    fn inference_pooling_gives_the_fused_outputs_bit_for_bit_on_odd_sizes_and_ties() {
        let s = PoolShape {
            planes: 2 * 3,
            h: 7,
            w: 7,
        };
        let mut xhat: Vec<f32> = test_values(2 * 3 * 49, 21)
            .iter()
            .map(|&v| v as f32)
            .collect();
        // ties inside windows, and windows whose maximum is negative
        xhat[1] = xhat[0];
        xhat[8] = xhat[7];
        xhat[50..60].iter_mut().for_each(|v| *v = -v.abs());
        let (g, b) = (vec![1.3f32, -0.7], vec![0.1f32, -0.2]);
        let (want, _) = affine_relu_max(&xhat, &g, &b, &s);
        let got = affine_relu_max_values(&xhat, &g, &b, &s);
        assert_eq!(got.len(), 6 * 9);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn fused_winners_are_the_pooling_winners_of_the_activations_on_odd_sizes_and_ties() {
        let s = PoolShape {
            planes: 2 * 3,
            h: 7,
            w: 5,
        };
        let mut xhat: Vec<f32> = test_values(2 * 3 * 35, 31)
            .iter()
            .map(|&v| v as f32)
            .collect();
        xhat[1] = xhat[0];
        xhat[6] = xhat[5];
        xhat[40..50].iter_mut().for_each(|v| *v = v.abs());
        let (g, b) = (vec![1.3f32, 0.7], vec![0.1f32, -0.2]);
        let z: Vec<f32> = xhat
            .iter()
            .enumerate()
            .map(|(i, &h)| g[i / 105] * h + b[i / 105])
            .collect();
        let (want_y, want_arg) = forward(&z, &s);
        let (y, arg) = affine_relu_max(&xhat, &g, &b, &s);
        for i in 0..y.len() {
            assert_eq!(y[i].to_bits(), want_y[i].max(0.0).to_bits(), "output {i}");
            if want_y[i] > 0.0 {
                assert_eq!(arg[i], want_arg[i], "winner of window {i}");
            }
        }
    }

    #[test]
    fn odd_sizes_are_floored_and_the_maximum_is_kept() {
        let s = PoolShape {
            planes: 1,
            h: 3,
            w: 3,
        };
        let x = [1.0, 5.0, 9.0, 2.0, 3.0, 9.0, 9.0, 9.0, 9.0];
        let (y, arg) = forward(&x, &s);
        assert_eq!(y, vec![5.0]);
        assert_eq!(arg, vec![1]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let s = PoolShape {
            planes: 3,
            h: 5,
            w: 4,
        };
        let x = test_values(3 * 5 * 4, 13);
        let r = test_values(3 * 2 * 2, 14);
        let (_, arg) = forward(&x, &s);
        let dx = backward(&r, &arg, x.len());
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient("maxpool", &mut |v| loss(forward(v, &s).0), &x, &dx, 1e-8);
    }

    #[test]
    fn the_avx2_kernels_give_the_bits_of_the_plain_loops_at_every_width_with_ties_zeros_and_nans() {
        for (h, w) in [
            (2, 2),
            (3, 3),
            (4, 6),
            (5, 7),
            (7, 7),
            (6, 14),
            (14, 14),
            (4, 17),
            (5, 28),
            (3, 35),
        ] {
            let s = PoolShape {
                planes: 2 * 3,
                h,
                w,
            };
            let n = s.planes * h * w;
            let mut x: Vec<f32> = test_values(n, 40 + w as u64)
                .iter()
                .map(|&v| v as f32)
                .collect();
            for i in (0..n).step_by(7) {
                x[i] = x[i / 2]; // ties, within and across windows
            }
            for i in (3..n).step_by(11) {
                x[i] = if i % 2 == 0 { -0.0 } else { 0.0 };
            }
            x[n / 3] = f32::NAN;
            x[n / 2 + 1] = f32::NAN;
            let (g, b) = (vec![1.3f32, -0.7], vec![0.0f32, -0.2]);
            let (oh, ow) = s.out_hw();
            let (mut y, mut arg) = (
                vec![0.0f32; s.planes * oh * ow],
                vec![0u32; s.planes * oh * ow],
            );
            let (mut y0, mut arg0) = (y.clone(), arg.clone());
            affine_relu_max_into(&x, &g, &b, &s, 5, &mut y, &mut arg);
            affine_relu_max_into_portable(&x, &g, &b, &s, 5, &mut y0, &mut arg0);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&y0), "{h}x{w} outputs");
            assert_eq!(arg, arg0, "{h}x{w} winners");
            let (mut v, mut v0) = (vec![9.0f32], vec![9.0f32]);
            affine_relu_max_values_into(&x, &g, &b, &s, &mut v);
            affine_relu_max_values_into_portable(&x, &g, &b, &s, &mut v0);
            assert_eq!(bits(&v), bits(&v0), "{h}x{w} inference outputs");
            // Dual numbers: the winner by value, the tangent carried along.
            use crate::engine::Dual;
            let dx: Vec<Dual<f32>> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| Dual {
                    v,
                    t: ((i % 13) as f32 - 6.0) * 0.37,
                })
                .collect();
            let (dg, db) = (
                vec![Dual { v: 1.3f32, t: 0.2 }, Dual { v: -0.7, t: -0.4 }],
                vec![Dual { v: 0.0f32, t: 0.1 }, Dual { v: -0.2, t: 0.0 }],
            );
            let mut dy = vec![Dual { v: 5.0f32, t: 5.0 }; y.len()];
            let mut dy0 = dy.clone();
            let (mut darg, mut darg0) = (vec![0u32; y.len()], vec![0u32; y.len()]);
            affine_relu_max_into(&dx, &dg, &db, &s, 5, &mut dy, &mut darg);
            affine_relu_max_into_portable(&dx, &dg, &db, &s, 5, &mut dy0, &mut darg0);
            let dbits = |v: &[Dual<f32>]| {
                v.iter()
                    .map(|d| (d.v.to_bits(), d.t.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(dbits(&dy), dbits(&dy0), "{h}x{w} dual outputs");
            assert_eq!(darg, darg0, "{h}x{w} dual winners");
        }
    }
}

//! The convolution on dual numbers (the Hessian-vector products of the second-order
//! meta-gradient) through the fast real kernels of [`super::fast`].
//!
//! The convolution is bilinear in its input and weight, so on `x = x_v + eps x_t`,
//! `w = w_v + eps w_t` it is three real convolutions:
//! `y_v = w_v * x_v + b_v`, `y_t = w_t * x_v + w_v * x_t + b_t`. The backward pass likewise:
//! `dW_v = dy_v (*) x_v`, `dW_t = dy_t (*) x_v + dy_v (*) x_t` (correlations summed over the batch),
//! `dx_v = w_v^T dy_v`, `dx_t = w_v^T dy_t + w_t^T dy_v`.
//!
//! Work is shared by stacking output channels, so each shared operand is transformed once and each
//! GEMM is twice as tall:
//! - forward: one call on `x_v` with the weights `[w_v; w_t]` gives `[y_v; w_t * x_v + b_t]`;
//! - weight gradient: one call with `dy = [dy_v; dy_t]` on `x_v` gives `[dW_v; dy_t (*) x_v]`;
//! - input gradient: the adjoint of a stride-1 "same" 3x3 convolution is the forward convolution
//!   with the kernel flipped and its channel axes swapped, so one forward call on `dy_v` with
//!   `[flip(w_v)^T; flip(w_t)^T]` gives `[dx_v; w_t^T dy_v]`.
//!
//! The term with the input's tangent `x_t` (one more real convolution in each pass) is skipped when
//! that tangent is exactly zero: the input images of the first layer, the common case.
//! Tests compare every result with the dual im2col + GEMM path of `conv.rs` in f64.
//!
//! Over 400 lines because each pass comes in three forms that share the helpers at the end: the
//! whole dual convolution, the tangent alone where the values are known (`*_tangent`), and both
//! from an input padded once for several calls (`*_padded`, through `conv/padded.rs`).

use super::{fast, ConvGrads, ConvShape};
use crate::engine::reduce::row_sums;
use crate::engine::scalar::{Dual, Real};

/// Forward on duals through the fast kernels, or `None` where none applies (as [`fast::forward`]).
pub fn forward<F: Real>(
    x: &[Dual<F>],
    weight: &[Dual<F>],
    bias: &[Dual<F>],
    s: &ConvShape,
) -> Option<Vec<Dual<F>>> {
    let (xv, xt) = split(x);
    let (wv, wt) = split(weight);
    let (bv, bt) = split(bias);
    let stacked = ConvShape {
        c_out: 2 * s.c_out,
        ..*s
    };
    let mut y = fast::forward(&xv, &concat(&wv, &wt), &concat(&bv, &bt), &stacked)?;
    let (yv, yt) = y.split_at_mut(s.c_out * s.positions());
    if !all_zero(&xt) {
        let zeros = vec![F::default(); s.c_out];
        add(yt, &fast::forward(&xt, &wv, &zeros, s)?);
    }
    Some(join(yv, yt))
}

/// Backward on duals through the fast kernels, or `None` where none applies (as
/// [`fast::backward`]).
pub fn backward<F: Real>(
    dy: &[Dual<F>],
    x: &[Dual<F>],
    weight: &[Dual<F>],
    s: &ConvShape,
    need_input: bool,
) -> Option<ConvGrads<Dual<F>>> {
    let (dyv, dyt) = split(dy);
    let (xv, xt) = split(x);
    let (wv, wt) = split(weight);
    let stacked = ConvShape {
        c_out: 2 * s.c_out,
        ..*s
    };
    // [dW_v; dy_t (*) x_v] and [db_v; db_t]; the weights only give the call its shape.
    let mut g = fast::backward(&concat(&dyv, &dyt), &xv, &concat(&wv, &wt), &stacked, false)?;
    let (dwv, dwt) = g.weight.split_at_mut(wv.len());
    if !all_zero(&xt) {
        add(dwt, &fast::backward(&dyv, &xt, &wv, s, false)?.weight);
    }
    let (dbv, dbt) = g.bias.split_at(s.c_out);
    let input = if need_input {
        // The adjoint as a forward convolution from C_out to C_in channels.
        let adjoint = ConvShape {
            c_in: s.c_out,
            c_out: s.c_in,
            ..*s
        };
        let stacked_adjoint = ConvShape {
            c_out: 2 * s.c_in,
            ..adjoint
        };
        let (fv, ft) = (flip_transpose(&wv, s), flip_transpose(&wt, s));
        let zeros = vec![F::default(); 2 * s.c_in];
        let mut dx = fast::forward(&dyv, &concat(&fv, &ft), &zeros, &stacked_adjoint)?;
        let (dxv, dxt) = dx.split_at_mut(s.c_in * s.positions());
        if !all_zero(&dyt) {
            add(dxt, &fast::forward(&dyt, &fv, &zeros[..s.c_in], &adjoint)?);
        }
        Some(join(dxv, dxt))
    } else {
        None
    };
    Some(ConvGrads {
        weight: join(dwv, dwt),
        bias: join(dbv, dbt),
        input,
    })
}

/// What a real pass at the same weights and input already computed: the value parts of a
/// convolution's gradients ([`backward_tangent`]).
pub struct KnownGrads<'a, F> {
    /// `dW_v` `[C_out, C_in, k, k]`
    pub weight: &'a [F],
    /// `db_v` `[C_out]`
    pub bias: &'a [F],
    /// `dx_v` `[C_in, N, H, W]`, where the input gradient is asked for.
    pub input: Option<&'a [F]>,
}

impl<F> KnownGrads<'_, F> {
    /// Panics unless the weight and bias gradients fit `weight_len` weights of shape `s`.
    fn check(&self, weight_len: usize, s: &ConvShape) {
        assert_eq!(
            self.weight.len(),
            weight_len,
            "conv: known weight gradient length"
        );
        assert_eq!(self.bias.len(), s.c_out, "conv: known bias gradient length");
    }
}

/// Panics unless `y_v` is a known convolution output `[C_out, N, H, W]` of shape `s`.
fn check_known_value<F>(y_v: &[F], s: &ConvShape) {
    assert_eq!(
        y_v.len(),
        s.c_out * s.positions(),
        "conv: known value has the wrong length"
    );
}

/// Forward on duals whose value part `y_v = w_v * x_v + b_v` is already known (a real pass at
/// the same weights and input computed it): only the tangent
/// `y_t = w_t * x_v + w_v * x_t + b_t` is computed, as *one* convolution of the input
/// `[x_v; x_t]` (2 C_in channels) with the weights `[w_t, w_v]` side by side, or `w_t * x_v + b_t`
/// alone where `x_t` is zero. Two real convolutions' products instead of [`forward`]'s three.
pub fn forward_tangent<F: Real>(
    x: &[Dual<F>],
    weight: &[Dual<F>],
    bias: &[Dual<F>],
    s: &ConvShape,
    y_v: &[F],
) -> Option<Vec<Dual<F>>> {
    let mut y = Vec::with_capacity(y_v.len());
    forward_tangent_append(x, weight, bias, s, y_v, &mut y).then_some(y)
}

/// [`forward_tangent`] appending its output to `out` (untouched where it returns `false`: no
/// fast kernel applies).
pub fn forward_tangent_append<F: Real>(
    x: &[Dual<F>],
    weight: &[Dual<F>],
    bias: &[Dual<F>],
    s: &ConvShape,
    y_v: &[F],
    out: &mut Vec<Dual<F>>,
) -> bool {
    check_known_value(y_v, s);
    let (xv, xt) = split(x);
    let (wv, wt) = split(weight);
    let bt: Vec<F> = bias.iter().map(|d| d.t).collect();
    let yt = if all_zero(&xt) {
        fast::forward(&xv, &wt, &bt, s)
    } else {
        let wide = ConvShape {
            c_in: 2 * s.c_in,
            ..*s
        };
        fast::forward(
            &concat(&xv, &xt),
            &side_by_side(&wt, &wv, s.c_out),
            &bt,
            &wide,
        )
    };
    let Some(yt) = yt else {
        return false;
    };
    debug_assert_eq!(yt.len(), y_v.len());
    out.extend(y_v.iter().zip(&yt).map(|(&v, &t)| Dual { v, t }));
    true
}

/// Backward on duals whose value parts (`known`) are already known: only the tangents, each as
/// one real call.
/// - `dW_t = dy_t (*) x_v + dy_v (*) x_t`: one weight gradient over a batch of 2N images,
///   `[dy_t | dy_v]` against `[x_v | x_t]` (the correlation sums over the batch);
/// - `db_t`: the row sums of `dy_t`;
/// - `dx_t = w_v^T dy_t + w_t^T dy_v`: one adjoint convolution of `[dy_t; dy_v]` (2 C_out
///   channels) with the flipped weights `[flip(w_v)^T, flip(w_t)^T]` side by side.
///
/// Two real convolutions' products in each pass instead of [`backward`]'s three.
pub fn backward_tangent<F: Real>(
    dy: &[Dual<F>],
    x: &[Dual<F>],
    weight: &[Dual<F>],
    s: &ConvShape,
    known: &KnownGrads<'_, F>,
) -> Option<ConvGrads<Dual<F>>> {
    known.check(weight.len(), s);
    let (dyv, dyt) = split(dy);
    let (xv, xt) = split(x);
    let (wv, wt) = split(weight);
    let dwt = if all_zero(&xt) {
        fast::backward(&dyt, &xv, &wv, s, false)?.weight
    } else {
        let twice = ConvShape { n: 2 * s.n, ..*s };
        let hw = s.h * s.w;
        let dy2 = batches(&dyt, &dyv, s.c_out, s.n * hw);
        let x2 = batches(&xv, &xt, s.c_in, s.n * hw);
        fast::backward(&dy2, &x2, &wv, &twice, false)?.weight
    };
    let dbt = row_sums(&dyt, s.positions());
    let input = match known.input {
        None => None,
        Some(dxv) => {
            assert_eq!(dxv.len(), x.len(), "conv: known input gradient length");
            let wide_adjoint = ConvShape {
                c_in: 2 * s.c_out,
                c_out: s.c_in,
                ..*s
            };
            let (fv, ft) = (flip_transpose(&wv, s), flip_transpose(&wt, s));
            let zeros = vec![F::default(); s.c_in];
            let dxt = fast::forward(
                &concat(&dyt, &dyv),
                &side_by_side(&fv, &ft, s.c_in),
                &zeros,
                &wide_adjoint,
            )?;
            Some(join(dxv, &dxt))
        }
    };
    Some(ConvGrads {
        weight: join(known.weight, &dwt),
        bias: join(known.bias, &dbt),
        input,
    })
}

/// [`forward`] on an input whose tangent is zero (the learner's input images), from its values'
/// zero-padded planes `xvp` ([`fast::pad_input`], a direct-kernel shape), appended to `out`: the
/// same bits.
pub fn forward_padded_append<F: Real>(
    xvp: &[F],
    weight: &[Dual<F>],
    bias: &[Dual<F>],
    s: &ConvShape,
    out: &mut Vec<Dual<F>>,
) {
    let (wv, wt) = split(weight);
    let (bv, bt) = split(bias);
    let stacked = ConvShape {
        c_out: 2 * s.c_out,
        ..*s
    };
    let mut y = Vec::new();
    fast::forward_padded_append(xvp, &concat(&wv, &wt), &concat(&bv, &bt), &stacked, &mut y);
    let (yv, yt) = y.split_at(s.c_out * s.positions());
    out.extend(yv.iter().zip(yt).map(|(&v, &t)| Dual { v, t }));
}

/// [`forward_tangent_append`] on an input whose tangent is zero, from its values' padded planes
/// (as [`forward_padded_append`]): the same bits.
pub fn forward_tangent_padded_append<F: Real>(
    xvp: &[F],
    weight: &[Dual<F>],
    bias: &[Dual<F>],
    s: &ConvShape,
    y_v: &[F],
    out: &mut Vec<Dual<F>>,
) {
    check_known_value(y_v, s);
    let wt: Vec<F> = weight.iter().map(|d| d.t).collect();
    let bt: Vec<F> = bias.iter().map(|d| d.t).collect();
    let mut yt = Vec::with_capacity(y_v.len());
    fast::forward_padded_append(xvp, &wt, &bt, s, &mut yt);
    out.extend(y_v.iter().zip(&yt).map(|(&v, &t)| Dual { v, t }));
}

/// [`backward`] without the input gradient, on an input whose tangent is zero, from its values'
/// padded planes (as [`forward_padded_append`]): the same bits.
pub fn backward_padded<F: Real>(
    dy: &[Dual<F>],
    xvp: &[F],
    weight: &[Dual<F>],
    s: &ConvShape,
) -> ConvGrads<Dual<F>> {
    let (dyv, dyt) = split(dy);
    let (wv, wt) = split(weight);
    let stacked = ConvShape {
        c_out: 2 * s.c_out,
        ..*s
    };
    // [dW_v; dy_t (*) x_v] and [db_v; db_t]; the weights only give the call its shape.
    let g = fast::backward_padded(&concat(&dyv, &dyt), xvp, &concat(&wv, &wt), &stacked);
    let (dwv, dwt) = g.weight.split_at(wv.len());
    let (dbv, dbt) = g.bias.split_at(s.c_out);
    ConvGrads {
        weight: join(dwv, dwt),
        bias: join(dbv, dbt),
        input: None,
    }
}

/// [`backward_tangent`] without the input gradient (`known.input` is ignored), on an input whose
/// tangent is zero, from its values' padded planes (as [`forward_padded_append`]): the same bits.
pub fn backward_tangent_padded<F: Real>(
    dy: &[Dual<F>],
    xvp: &[F],
    weight: &[Dual<F>],
    s: &ConvShape,
    known: &KnownGrads<'_, F>,
) -> ConvGrads<Dual<F>> {
    known.check(weight.len(), s);
    let dyt: Vec<F> = dy.iter().map(|d| d.t).collect();
    let wv: Vec<F> = weight.iter().map(|d| d.v).collect();
    // dW_t = dy_t (*) x_v and db_t = the row sums of dy_t (x_t is zero).
    let g = fast::backward_padded(&dyt, xvp, &wv, s);
    ConvGrads {
        weight: join(known.weight, &g.weight),
        bias: join(known.bias, &g.bias),
        input: None,
    }
}

/// The values of `x` when every tangent is zero (`None` otherwise): the input of the `*_padded`
/// calls above.
pub fn zero_tangent_values<F: Real>(x: &[Dual<F>]) -> Option<Vec<F>> {
    x.iter()
        .all(|d| d.t == F::default())
        .then(|| x.iter().map(|d| d.v).collect())
}

/// `[rows, a_cols + b_cols]`: each row of `a` followed by the same row of `b` (`a` and `b` have
/// `rows` rows of equal length).
fn side_by_side<F: Real>(a: &[F], b: &[F], rows: usize) -> Vec<F> {
    debug_assert_eq!(a.len(), b.len());
    let cols = a.len().checked_div(rows).unwrap_or(0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    for (ra, rb) in a.chunks_exact(cols.max(1)).zip(b.chunks_exact(cols.max(1))) {
        out.extend_from_slice(ra);
        out.extend_from_slice(rb);
    }
    out
}

/// `[C, 2N, H, W]` from two `[C, N, H, W]`: each channel's images of `a`, then of `b`
/// (`per_channel` = N H W).
fn batches<F: Real>(a: &[F], b: &[F], channels: usize, per_channel: usize) -> Vec<F> {
    debug_assert_eq!(a.len(), channels * per_channel);
    debug_assert_eq!(b.len(), channels * per_channel);
    let mut out = Vec::with_capacity(a.len() + b.len());
    for c in 0..channels {
        out.extend_from_slice(&a[c * per_channel..(c + 1) * per_channel]);
        out.extend_from_slice(&b[c * per_channel..(c + 1) * per_channel]);
    }
    out
}

/// The value and tangent parts of dual numbers, as two real vectors.
fn split<F: Real>(v: &[Dual<F>]) -> (Vec<F>, Vec<F>) {
    (
        v.iter().map(|d| d.v).collect(),
        v.iter().map(|d| d.t).collect(),
    )
}

/// Dual numbers from their value and tangent parts.
fn join<F: Real>(v: &[F], t: &[F]) -> Vec<Dual<F>> {
    debug_assert_eq!(v.len(), t.len());
    v.iter().zip(t).map(|(&v, &t)| Dual { v, t }).collect()
}

fn concat<F: Real>(a: &[F], b: &[F]) -> Vec<F> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

fn add<F: Real>(acc: &mut [F], more: &[F]) {
    debug_assert_eq!(acc.len(), more.len());
    for (a, &m) in acc.iter_mut().zip(more) {
        *a += m;
    }
}

fn all_zero<F: Real>(v: &[F]) -> bool {
    v.iter().all(|&x| x == F::default())
}

/// `[C_out, C_in, k, k] -> [C_in, C_out, k, k]` with each kernel turned by 180 degrees: the weights
/// of the forward convolution that computes the adjoint `w^T dy`.
fn flip_transpose<F: Real>(w: &[F], s: &ConvShape) -> Vec<F> {
    let kk = s.k * s.k;
    let mut out = vec![F::default(); w.len()];
    for co in 0..s.c_out {
        for ci in 0..s.c_in {
            let src = &w[(co * s.c_in + ci) * kk..(co * s.c_in + ci + 1) * kk];
            let dst = &mut out[(ci * s.c_out + co) * kk..(ci * s.c_out + co + 1) * kk];
            for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conv::fast::tests::shape;
    use crate::engine::conv::{backward_chunked, forward_chunked};
    use crate::engine::gradcheck::test_values;

    fn duals(len: usize, salt: u64, zero_tangent: bool) -> Vec<Dual<f64>> {
        let v = test_values(len, salt);
        let t = test_values(len, salt + 100);
        v.iter()
            .zip(&t)
            .map(|(&v, &t)| Dual::new(v, if zero_tangent { 0.0 } else { t }))
            .collect()
    }

    fn max_err(got: &[Dual<f64>], want: &[Dual<f64>]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(g, w)| (g.v - w.v).abs().max((g.t - w.t).abs()))
            .fold(0.0, f64::max)
    }

    /// Shapes that take the direct kernel (C_in <= 4), Winograd F(2x2) and F(4x4) (the 16x17
    /// planes), odd and even sizes, one-pixel images, and a batch large enough for several
    /// Winograd chunks.
    fn shapes() -> Vec<ConvShape> {
        vec![
            shape(1, 3, 2, 5, 4),
            shape(3, 4, 3, 7, 7),
            shape(6, 5, 2, 6, 9),
            shape(5, 7, 3, 1, 1),
            shape(8, 6, 1, 2, 3),
            shape(16, 8, 40, 14, 14),
            shape(7, 5, 3, 16, 17),
        ]
    }

    /// A test convolution's operands: input (its tangent zero where asked), weights, bias and
    /// output gradient.
    struct Operands {
        x: Vec<Dual<f64>>,
        w: Vec<Dual<f64>>,
        b: Vec<Dual<f64>>,
        dy: Vec<Dual<f64>>,
    }

    fn operands(s: &ConvShape, salt: u64, zero_input_tangent: bool) -> Operands {
        Operands {
            x: duals(s.c_in * s.n * s.h * s.w, salt + 1, zero_input_tangent),
            w: duals(s.c_out * s.patch(), salt + 2, false),
            b: duals(s.c_out, salt + 3, false),
            dy: duals(s.c_out * s.positions(), salt + 4, false),
        }
    }

    /// Every shape of [`shapes`], with and without an input tangent.
    fn cases() -> impl Iterator<Item = (ConvShape, Operands)> {
        shapes().into_iter().enumerate().flat_map(|(i, s)| {
            [false, true]
                .map(|zero_input_tangent| (s, operands(&s, 10 * i as u64, zero_input_tangent)))
        })
    }

    /// Weight, bias and (where asked) input gradients within 1e-12 of the reference's.
    fn assert_grads_close(
        s: &ConvShape,
        what: &str,
        got: ConvGrads<Dual<f64>>,
        want: ConvGrads<Dual<f64>>,
        need_input: bool,
    ) {
        let err = max_err(&got.weight, &want.weight).max(max_err(&got.bias, &want.bias));
        assert!(err < 1e-12, "{s:?}: weight/bias {what} differ by {err}");
        assert_eq!(got.input.is_some(), need_input);
        if let (Some(g), Some(w)) = (got.input, want.input) {
            let err = max_err(&g, &w);
            assert!(err < 1e-12, "{s:?}: input {what} differ by {err}");
        }
    }

    #[test]
    fn the_dual_forward_equals_the_dual_im2col_path_with_and_without_an_input_tangent() {
        for (s, Operands { x, w, b, .. }) in cases() {
            let got = forward(&x, &w, &b, &s).expect("a fast kernel applies");
            let want = forward_chunked(&x, &w, &b, &s, usize::MAX);
            let err = max_err(&got, &want);
            assert!(err < 1e-12, "{s:?}: forward differs by {err}");
        }
    }

    #[test]
    fn the_dual_backward_equals_the_dual_im2col_path_for_weights_bias_and_input() {
        for (s, Operands { x, w, dy, .. }) in cases() {
            for need_input in [true, false] {
                let got = backward(&dy, &x, &w, &s, need_input).expect("a fast kernel");
                let want = backward_chunked(&dy, &x, &w, &s, need_input, usize::MAX);
                assert_grads_close(&s, "gradients", got, want, need_input);
            }
        }
    }

    fn values(v: &[Dual<f64>]) -> Vec<f64> {
        v.iter().map(|d| d.v).collect()
    }

    #[test]
    fn the_tangent_only_forward_with_a_known_value_equals_the_dual_im2col_path() {
        for (s, Operands { x, w, b, .. }) in cases() {
            let want = forward_chunked(&x, &w, &b, &s, usize::MAX);
            let got = forward_tangent(&x, &w, &b, &s, &values(&want)).expect("a kernel");
            let err = max_err(&got, &want);
            assert!(err < 1e-12, "{s:?}: tangent-only forward differs by {err}");
        }
    }

    #[test]
    fn the_tangent_only_backward_with_known_values_equals_the_dual_im2col_path() {
        for (s, Operands { x, w, dy, .. }) in cases() {
            for need_input in [true, false] {
                let want = backward_chunked(&dy, &x, &w, &s, need_input, usize::MAX);
                let (wv, bv) = (values(&want.weight), values(&want.bias));
                let xv = want.input.as_deref().map(values);
                let known = KnownGrads {
                    weight: &wv,
                    bias: &bv,
                    input: xv.as_deref(),
                };
                let got = backward_tangent(&dy, &x, &w, &s, &known).expect("a kernel");
                assert_grads_close(&s, "tangents", got, want, need_input);
            }
        }
    }

    #[test]
    fn the_tangent_only_passes_take_the_known_value_parts_as_they_are() {
        // The value parts are the caller's, bit for bit (not recomputed).
        let s = shape(6, 5, 2, 6, 7);
        let Operands { x, w, b, dy } = operands(&s, 0, false);
        let y_v = test_values(s.c_out * s.positions(), 5);
        let y = forward_tangent(&x, &w, &b, &s, &y_v).unwrap();
        assert_eq!(values(&y), y_v);
        let (wv, bv, xv) = (
            test_values(w.len(), 6),
            test_values(s.c_out, 7),
            test_values(x.len(), 8),
        );
        let known = KnownGrads {
            weight: &wv,
            bias: &bv,
            input: Some(&xv),
        };
        let g = backward_tangent(&dy, &x, &w, &s, &known).unwrap();
        assert_eq!(values(&g.weight), wv);
        assert_eq!(values(&g.bias), bv);
        assert_eq!(values(&g.input.unwrap()), xv);
    }

    #[test]
    fn a_zero_output_tangent_gives_the_same_input_gradient_as_the_reference() {
        let s = shape(6, 5, 2, 6, 7);
        let x = duals(s.c_in * s.n * s.h * s.w, 1, false);
        let w = duals(s.c_out * s.patch(), 2, false);
        let dy = duals(s.c_out * s.positions(), 3, true);
        let got = backward(&dy, &x, &w, &s, true).unwrap();
        let want = backward_chunked(&dy, &x, &w, &s, true, usize::MAX);
        assert!(max_err(&got.input.unwrap(), &want.input.unwrap()) < 1e-12);
        assert!(max_err(&got.weight, &want.weight) < 1e-12);
    }

    #[test]
    fn dual_f32_agrees_with_the_f64_reference_to_rounding() {
        let s = shape(16, 8, 5, 14, 14);
        let Operands { x, w, b, dy } = operands(&s, 0, false);
        let to32 = |v: &[Dual<f64>]| -> Vec<Dual<f32>> {
            v.iter()
                .map(|d| Dual::new(d.v as f32, d.t as f32))
                .collect()
        };
        let err = |got: &[Dual<f32>], want: &[Dual<f64>]| {
            let scale = want
                .iter()
                .map(|d| d.v.abs().max(d.t.abs()))
                .fold(1.0, f64::max);
            got.iter()
                .zip(want)
                .map(|(g, w)| (g.v as f64 - w.v).abs().max((g.t as f64 - w.t).abs()))
                .fold(0.0, f64::max)
                / scale
        };
        let y = forward(&to32(&x), &to32(&w), &to32(&b), &s).unwrap();
        assert!(err(&y, &forward_chunked(&x, &w, &b, &s, usize::MAX)) < 1e-5);
        let g = backward(&to32(&dy), &to32(&x), &to32(&w), &s, true).unwrap();
        let want = backward_chunked(&dy, &x, &w, &s, true, usize::MAX);
        assert!(err(&g.weight, &want.weight) < 1e-5);
        assert!(err(&g.input.unwrap(), &want.input.unwrap()) < 1e-5);
    }

    #[test]
    fn other_kernel_sizes_take_the_reference_path() {
        let s = ConvShape {
            k: 5,
            ..shape(2, 3, 1, 6, 6)
        };
        let Operands { x, w, b, .. } = operands(&s, 0, false);
        assert!(forward(&x, &w, &b, &s).is_none());
    }
}

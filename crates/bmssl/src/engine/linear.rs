//! Fully connected layer `y [B, out] = x [B, in] . W^T + b` with `W [out, in]` (PyTorch's layout).

use super::scalar::{MatRef, Scalar};

/// Forward.
pub fn forward<S: Scalar>(
    x: &[S],
    weight: &[S],
    bias: &[S],
    batch: usize,
    d_in: usize,
    d_out: usize,
) -> Vec<S> {
    let mut y = vec![S::default(); batch * d_out];
    for row in y.chunks_mut(d_out) {
        row.copy_from_slice(bias);
    }
    S::matmul(
        &mut y,
        true,
        MatRef::rows(x, batch, d_in),
        MatRef::rows(weight, d_out, d_in).t(),
    );
    y
}

/// Gradients of the layer.
pub struct LinearGrads<S> {
    /// `[out, in]`
    pub weight: Vec<S>,
    /// `[out]`
    pub bias: Vec<S>,
    /// `[B, in]`
    pub input: Vec<S>,
}

/// Backward: `dW = dy^T . x`, `db = column sums of dy`, `dx = dy . W`.
pub fn backward<S: Scalar>(
    dy: &[S],
    x: &[S],
    weight: &[S],
    batch: usize,
    d_in: usize,
    d_out: usize,
) -> LinearGrads<S> {
    let mut dw = vec![S::default(); d_out * d_in];
    S::matmul(
        &mut dw,
        false,
        MatRef::rows(dy, batch, d_out).t(),
        MatRef::rows(x, batch, d_in),
    );
    let mut db = vec![S::default(); d_out];
    for row in dy.chunks(d_out) {
        for (a, &b) in db.iter_mut().zip(row) {
            *a += b;
        }
    }
    let mut dx = vec![S::default(); batch * d_in];
    S::matmul(
        &mut dx,
        false,
        MatRef::rows(dy, batch, d_out),
        MatRef::rows(weight, d_out, d_in),
    );
    LinearGrads {
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
    fn gradients_match_finite_differences_for_input_weight_and_bias() {
        let (b, i, o) = (4, 6, 3);
        let x = test_values(b * i, 21);
        let w = test_values(o * i, 22);
        let bias = test_values(o, 23);
        let r = test_values(b * o, 24);
        let g = backward(&r, &x, &w, b, i, o);
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient(
            "linear input",
            &mut |v| loss(forward(v, &w, &bias, b, i, o)),
            &x,
            &g.input,
            1e-8,
        );
        assert_gradient(
            "linear weight",
            &mut |v| loss(forward(&x, v, &bias, b, i, o)),
            &w,
            &g.weight,
            1e-8,
        );
        assert_gradient(
            "linear bias",
            &mut |v| loss(forward(&x, &w, v, b, i, o)),
            &bias,
            &g.bias,
            1e-8,
        );
    }
}

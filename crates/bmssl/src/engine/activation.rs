//! Rectified linear unit. Its derivative is taken on the branch the *value* picks (for dual numbers
//! too), so its second derivative is zero almost everywhere, as in every autodiff framework.

use super::scalar::Scalar;

/// `y = max(x, 0)`.
pub fn relu<S: Scalar>(x: &[S]) -> Vec<S> {
    x.iter()
        .map(|&v| if v.re() > 0.0 { v } else { S::default() })
        .collect()
}

/// `dx = dy * [y > 0]`, given the forward output `y`.
pub fn relu_backward<S: Scalar>(dy: &[S], y: &[S]) -> Vec<S> {
    dy.iter()
        .zip(y)
        .map(|(&d, &v)| if v.re() > 0.0 { d } else { S::default() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};

    #[test]
    fn gradient_matches_finite_differences_away_from_the_kink() {
        let x: Vec<f64> = test_values(20, 11)
            .iter()
            .map(|v| if v.abs() < 0.05 { 0.3 } else { *v })
            .collect();
        let r = test_values(20, 12);
        let y = relu(&x);
        let dx = relu_backward(&r, &y);
        let loss = |y: Vec<f64>| y.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
        assert_gradient("relu", &mut |v| loss(relu(v)), &x, &dx, 1e-8);
    }
}

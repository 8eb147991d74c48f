//! The number types the engine computes with.
//!
//! Every kernel is generic over [`Scalar`], implemented by:
//! - `f32` for training and benchmarks,
//! - `f64` for finite-difference and golden-file checks,
//! - [`Dual<F>`] (a value and a tangent, `v + eps t` with `eps^2 = 0`) for forward-mode
//!   differentiation.
//!
//! Why duals: the meta-gradient needs Hessian-vector products `H u` of the inner loss. Running the
//! ordinary gradient code (forward + hand-written backward) on `Dual` numbers whose tangent is `u`
//! yields `grad` in the value part and `H u` in the tangent part: forward-over-reverse
//! differentiation (Pearlmutter 1994). The second-order path is therefore the *same code* as the
//! first-order one, checked by the same tests, with no graph and no tape.
//!
//! Over 400 lines: the `Scalar` and `Real` traits, their `f32`/`f64` implementations and the `Dual`
//! number with every operator it needs are one number-type module; about 80 lines are tests.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A strided read-only matrix view: element (i, j) lives at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, S> {
    pub data: &'a [S],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, S> MatRef<'a, S> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [S], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    pub(crate) fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "{what}: strided view out of bounds");
        }
    }
}

/// A number the engine can differentiate through.
pub trait Scalar:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// The real number type of the value part (`Self` for a real, `F` for `Dual<F>`).
    type Value: Real;
    /// The value part (the number itself for a real).
    fn value(self) -> Self::Value;
    /// A constant (zero tangent).
    fn from_f64(x: f64) -> Self;
    /// The value part, used for every comparison (ReLU masks, max-pool winners, log-sum-exp
    /// shifts): derivatives of piecewise-linear choices are taken on the branch the value picks.
    fn re(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    /// `self * k` for a real constant.
    fn scale(self, k: f64) -> Self {
        self * Self::from_f64(k)
    }
    /// Exactly zero, tangent included (a gradient that is zero everywhere need not be pushed
    /// further back: everything it would produce is zero).
    fn is_zero(self) -> bool;
    /// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] * rhs[k x n]`, `dst` row-major.
    fn matmul(dst: &mut [Self], accumulate: bool, lhs: MatRef<'_, Self>, rhs: MatRef<'_, Self>) {
        assert_eq!(
            dst.len(),
            lhs.rows * rhs.cols,
            "matmul: destination has the wrong size"
        );
        Self::matmul_rs(dst, rhs.cols, accumulate, lhs, rhs);
    }
    /// As [`Scalar::matmul`] into a destination whose rows are `dst_rs` apart (a column block of
    /// a wider row-major matrix): element (i, j) is `dst[i * dst_rs + j]`.
    fn matmul_rs(
        dst: &mut [Self],
        dst_rs: usize,
        accumulate: bool,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
    );
}

fn check_matmul<S>(dst: &[S], dst_rs: usize, lhs: &MatRef<'_, S>, rhs: &MatRef<'_, S>) {
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner dimensions differ");
    let (m, n) = (lhs.rows, rhs.cols);
    assert!(dst_rs >= n, "matmul: destination rows overlap");
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(),
        "matmul: destination too small"
    );
    lhs.check("matmul lhs");
    rhs.check("matmul rhs");
}

macro_rules! real_scalar {
    ($t:ty; $($extra:tt)*) => {
        impl Scalar for $t {
            type Value = $t;
            #[inline(always)]
            fn value(self) -> Self {
                self
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn re(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0.0
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn matmul_rs(
                dst: &mut [Self],
                dst_rs: usize,
                accumulate: bool,
                lhs: MatRef<'_, Self>,
                rhs: MatRef<'_, Self>,
            ) {
                check_matmul(dst, dst_rs, &lhs, &rhs);
                let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
                <$t as Real>::matmul_strided(dst, m, n, dst_rs, 1, accumulate, lhs, rhs, k);
            }
            $($extra)*
        }
    };
}

real_scalar! { f32; }
real_scalar! { f64; }

/// A real number type that can be the value part of a [`Dual`].
pub trait Real: Scalar<Value = Self> + PartialOrd {
    /// `self * b + c` rounded once (a fused multiply-add: the same bits on every CPU, fast where
    /// the code is compiled with FMA).
    fn fma(self, b: Self, c: Self) -> Self;
    /// `dst (+)= lhs . rhs` with `dst` element (i, j) at `dst[i * dst_rs + j * dst_cs]`.
    #[allow(clippy::too_many_arguments)]
    fn matmul_strided(
        dst: &mut [Self],
        m: usize,
        n: usize,
        dst_rs: usize,
        dst_cs: usize,
        accumulate: bool,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
        k: usize,
    );
}

macro_rules! real_strided {
    ($t:ty) => {
        impl Real for $t {
            #[inline(always)]
            fn fma(self, b: Self, c: Self) -> Self {
                <$t>::mul_add(self, b, c)
            }
            fn matmul_strided(
                dst: &mut [Self],
                m: usize,
                n: usize,
                dst_rs: usize,
                dst_cs: usize,
                accumulate: bool,
                lhs: MatRef<'_, Self>,
                rhs: MatRef<'_, Self>,
                k: usize,
            ) {
                assert!(
                    lhs.rows == m && rhs.cols == n && lhs.cols == k && rhs.rows == k,
                    "matmul: shapes differ"
                );
                lhs.check("matmul lhs");
                rhs.check("matmul rhs");
                if m == 0 || n == 0 {
                    return;
                }
                assert!(
                    (m - 1) * dst_rs + (n - 1) * dst_cs < dst.len(),
                    "matmul: destination view out of bounds"
                );
                if k == 0 {
                    if !accumulate {
                        for i in 0..m {
                            for j in 0..n {
                                dst[i * dst_rs + j * dst_cs] = 0.0;
                            }
                        }
                    }
                    return;
                }
                // SAFETY: the bounds of all three strided views were checked above; `dst` is
                // exclusively borrowed and does not overlap the operands.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        dst_cs as isize,
                        dst_rs as isize,
                        accumulate,
                        lhs.data.as_ptr(),
                        lhs.cs as isize,
                        lhs.rs as isize,
                        rhs.data.as_ptr(),
                        rhs.cs as isize,
                        rhs.rs as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    };
}

real_strided!(f32);
real_strided!(f64);

/// A dual number `v + eps t` with `eps^2 = 0`: `f(v + eps t) = f(v) + eps f'(v) t`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Dual<F> {
    /// Value.
    pub v: F,
    /// Tangent (directional derivative).
    pub t: F,
}

/// Floats per element where a kernel reads numbers as plain `f32`s: 1 for `f32`, 2 for
/// `Dual<f32>` (`#[repr(C)]`, value then tangent); `None` for every other type.
#[inline(always)]
pub(crate) fn f32s_per_element<S: 'static>() -> Option<usize> {
    let t = std::any::TypeId::of::<S>();
    if t == std::any::TypeId::of::<f32>() {
        Some(1)
    } else if t == std::any::TypeId::of::<Dual<f32>>() {
        Some(2)
    } else {
        None
    }
}

/// `x`'s floats and how many make one element ([`f32s_per_element`]), or `None`.
#[inline(always)]
pub(crate) fn as_f32s<S: 'static>(x: &[S]) -> Option<(&[f32], usize)> {
    let e = f32s_per_element::<S>()?;
    // SAFETY: S is f32 or Dual<f32>, which is e f32s with no padding.
    Some((
        unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), e * x.len()) },
        e,
    ))
}

/// [`as_f32s`] of a mutable slice.
#[inline(always)]
pub(crate) fn as_f32s_mut<S: 'static>(x: &mut [S]) -> Option<(&mut [f32], usize)> {
    let e = f32s_per_element::<S>()?;
    // SAFETY: as in `as_f32s`.
    Some((
        unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), e * x.len()) },
        e,
    ))
}

impl<F: Real> Dual<F> {
    /// A dual with the given value and tangent.
    pub fn new(v: F, t: F) -> Self {
        Dual { v, t }
    }
}

impl<F: Real> Add for Dual<F> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Dual {
            v: self.v + o.v,
            t: self.t + o.t,
        }
    }
}
impl<F: Real> Sub for Dual<F> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Dual {
            v: self.v - o.v,
            t: self.t - o.t,
        }
    }
}
impl<F: Real> Mul for Dual<F> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Dual {
            v: self.v * o.v,
            t: self.t * o.v + self.v * o.t,
        }
    }
}
impl<F: Real> Div for Dual<F> {
    type Output = Self;
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        let q = self.v / o.v;
        Dual {
            v: q,
            t: (self.t - q * o.t) / o.v,
        }
    }
}
impl<F: Real> Neg for Dual<F> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Dual {
            v: -self.v,
            t: -self.t,
        }
    }
}
impl<F: Real> AddAssign for Dual<F> {
    #[inline(always)]
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}
impl<F: Real> SubAssign for Dual<F> {
    #[inline(always)]
    fn sub_assign(&mut self, o: Self) {
        *self = *self - o;
    }
}
impl<F: Real> MulAssign for Dual<F> {
    #[inline(always)]
    fn mul_assign(&mut self, o: Self) {
        *self = *self * o;
    }
}
impl<F: Real> Sum for Dual<F> {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Dual::default(), |a, b| a + b)
    }
}

/// One part (value or tangent) of a dual matrix, seen as a real matrix in place: `Dual<F>` is
/// `#[repr(C)] {v, t}`, so part `p` of element (i, j) is real number `2 (i rs + j cs) + p`.
fn part<'a, F: Real>(m: &MatRef<'a, Dual<F>>, p: usize) -> MatRef<'a, F> {
    // SAFETY: Dual<F> is repr(C) with two F fields and no padding (size 2 * size_of::<F>()),
    // so the slice of n duals is a valid slice of 2n reals with the same lifetime.
    let reals: &'a [F] =
        unsafe { std::slice::from_raw_parts(m.data.as_ptr() as *const F, m.data.len() * 2) };
    MatRef {
        data: &reals[p..],
        rows: m.rows,
        cols: m.cols,
        rs: 2 * m.rs,
        cs: 2 * m.cs,
    }
}

/// Whether every tangent in the view is zero, so that products with it can be skipped.
fn tangent_is_zero<F: Real>(m: &MatRef<'_, Dual<F>>) -> bool {
    (0..m.rows).all(|i| (0..m.cols).all(|j| m.data[i * m.rs + j * m.cs].t == F::default()))
}

/// `dst (+)= lhs . rhs` for real strided views and an interleaved destination part.
fn matmul_part<F: Real>(
    dst: &mut [Dual<F>],
    dst_rs: usize,
    p: usize,
    accumulate: bool,
    lhs: MatRef<'_, F>,
    rhs: MatRef<'_, F>,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    // SAFETY: as in `part`; `dst` is exclusively borrowed for the call.
    let reals: &mut [F] =
        unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut F, dst.len() * 2) };
    F::matmul_strided(
        &mut reals[p..],
        m,
        n,
        2 * dst_rs,
        2,
        accumulate,
        lhs,
        rhs,
        k,
    );
}

impl<F: Real> Scalar for Dual<F> {
    type Value = F;
    #[inline(always)]
    fn value(self) -> F {
        self.v
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        Dual {
            v: F::from_f64(x),
            t: F::default(),
        }
    }
    #[inline(always)]
    fn re(self) -> f64 {
        self.v.re()
    }
    #[inline(always)]
    fn is_zero(self) -> bool {
        self.v.is_zero() && self.t.is_zero()
    }
    #[inline(always)]
    fn exp(self) -> Self {
        let e = self.v.exp();
        Dual {
            v: e,
            t: self.t * e,
        }
    }
    #[inline(always)]
    fn ln(self) -> Self {
        Dual {
            v: self.v.ln(),
            t: self.t / self.v,
        }
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        let s = self.v.sqrt();
        Dual {
            v: s,
            t: self.t / (s + s),
        }
    }
    #[inline(always)]
    fn scale(self, k: f64) -> Self {
        let k = F::from_f64(k);
        Dual {
            v: self.v * k,
            t: self.t * k,
        }
    }
    /// Three real products on the interleaved storage, no copies: `v = Av Bv`,
    /// `t = At Bv + Av Bt`, skipping a product with an all-zero tangent.
    fn matmul_rs(
        dst: &mut [Self],
        dst_rs: usize,
        accumulate: bool,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
    ) {
        check_matmul(dst, dst_rs, &lhs, &rhs);
        let (a_zero, b_zero) = (tangent_is_zero(&lhs), tangent_is_zero(&rhs));
        matmul_part(dst, dst_rs, 0, accumulate, part(&lhs, 0), part(&rhs, 0));
        let mut tangent_written = accumulate;
        if !a_zero {
            matmul_part(
                dst,
                dst_rs,
                1,
                tangent_written,
                part(&lhs, 1),
                part(&rhs, 0),
            );
            tangent_written = true;
        }
        if !b_zero {
            matmul_part(
                dst,
                dst_rs,
                1,
                tangent_written,
                part(&lhs, 0),
                part(&rhs, 1),
            );
            tangent_written = true;
        }
        if !tangent_written {
            for row in dst.chunks_mut(dst_rs).take(lhs.rows) {
                for d in row.iter_mut().take(rhs.cols) {
                    d.t = F::default();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn matmul_matches_the_schoolbook_product_with_and_without_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0.0; m * n];
        f64::matmul(
            &mut c,
            false,
            MatRef::rows(&a, m, k),
            MatRef::rows(&b, k, n),
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // A stored transposed (k x m) and read through .t() gives the same product.
        let at: Vec<f64> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
        let mut c2 = vec![1.0; m * n];
        f64::matmul(
            &mut c2,
            true,
            MatRef::rows(&at, k, m).t(),
            MatRef::rows(&b, k, n),
        );
        for (x, y) in c2.iter().zip(&want) {
            assert!((x - 1.0 - y).abs() < 1e-12);
        }
    }

    #[test]
    fn dual_matmul_tangent_is_the_product_rule() {
        let (m, k, n) = (3, 4, 2);
        let a: Vec<Dual<f64>> = (0..m * k)
            .map(|i| Dual::new(i as f64 * 0.1, (i as f64).sin()))
            .collect();
        let b: Vec<Dual<f64>> = (0..k * n)
            .map(|i| Dual::new((i as f64).cos(), i as f64 * 0.2))
            .collect();
        let mut c = vec![Dual::default(); m * n];
        Dual::matmul(
            &mut c,
            false,
            MatRef::rows(&a, m, k),
            MatRef::rows(&b, k, n),
        );
        let h = 1e-6;
        let perturbed = |s: f64| {
            let av: Vec<f64> = a.iter().map(|d| d.v + s * d.t).collect();
            let bv: Vec<f64> = b.iter().map(|d| d.v + s * d.t).collect();
            naive(&av, &bv, m, k, n)
        };
        let (p, q) = (perturbed(h), perturbed(-h));
        for i in 0..m * n {
            assert!((c[i].t - (p[i] - q[i]) / (2.0 * h)).abs() < 1e-8);
            assert!((c[i].v - (p[i] + q[i]) / 2.0).abs() < 1e-8);
        }
    }

    #[test]
    fn dual_elementary_functions_carry_their_derivatives() {
        let x = Dual::new(0.7f64, 1.0);
        assert!((x.exp().t - 0.7f64.exp()).abs() < 1e-15);
        assert!((x.ln().t - 1.0 / 0.7).abs() < 1e-15);
        assert!((x.sqrt().t - 0.5 / 0.7f64.sqrt()).abs() < 1e-15);
        assert!(((x / Dual::new(2.0, 0.0)).t - 0.5).abs() < 1e-15);
    }
}

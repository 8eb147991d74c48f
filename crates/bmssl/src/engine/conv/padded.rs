//! A direct-kernel convolution's input zero-padded once for several calls on ranges of its output
//! channels: the learner's first block runs its convolution a few output channels at a time
//! (`model/grouped.rs`), and each call used to pad the whole block input again (and on dual
//! numbers first split it into values and tangents and scan the tangents): at 3x84x84 that was
//! ~4% of a BMSSL meta-step, in eleven groups per pass.
//!
//! [`PaddedInput`] pads `f32` inputs, and the values of dual inputs whose tangent is zero (the
//! input images: the common case), through [`fast::pad_input`]; its calls then run the same
//! kernels on those planes ([`fast::forward_padded_append`], [`fast::backward_padded`] and their
//! dual forms in [`dual`]), so the results have the bits of [`super::forward_append`] and the
//! other unpadded calls, which every other case (a nonzero tangent, `f64`, a shape the direct
//! kernel does not serve) still takes.

use super::{cast, cast_vec_mut, dual, fast, ConvGrads, ConvShape, KnownGrads};
use crate::engine::scalar::{Dual, Real, Scalar};

/// The padded planes `[C_in, N, H+2, W+2]` by number type: of `f32`, or of a dual input's values.
enum Planes {
    F32(Vec<f32>),
    DualF32(Vec<f32>),
    DualF64(Vec<f64>),
}

/// A convolution input, padded once where the direct kernel serves it (see the module's comment).
pub struct PaddedInput<'a, S> {
    x: &'a [S],
    planes: Option<Planes>,
}

/// `x`'s values padded, when `S` is `Dual<F>` and every tangent is zero.
fn dual_planes<F: Real, S: 'static>(x: &[S], s: &ConvShape) -> Option<Vec<F>> {
    let values = dual::zero_tangent_values(cast::<S, Dual<F>>(x)?)?;
    Some(fast::pad_input(&values, s))
}

impl<'a, S: Scalar> PaddedInput<'a, S> {
    /// `x` `[C_in, N, H, W]` for convolutions of shape `s` (any output channel count).
    pub fn new(x: &'a [S], s: &ConvShape) -> Self {
        let planes = if !fast::is_direct(s) {
            None
        } else if let Some(x) = cast::<S, f32>(x) {
            Some(Planes::F32(fast::pad_input(x, s)))
        } else if let Some(p) = dual_planes::<f32, S>(x, s) {
            Some(Planes::DualF32(p))
        } else {
            dual_planes::<f64, S>(x, s).map(Planes::DualF64)
        };
        PaddedInput { x, planes }
    }

    /// [`super::forward_append`] of this input.
    pub fn forward_append(&self, weight: &[S], bias: &[S], s: &ConvShape, out: &mut Vec<S>) {
        match &self.planes {
            Some(Planes::F32(xp)) => {
                if let (Some(w), Some(b), Some(o)) = (cast(weight), cast(bias), cast_vec_mut(out)) {
                    return fast::forward_padded_append(xp, w, b, s, o);
                }
            }
            Some(Planes::DualF32(xp)) => {
                if let (Some(w), Some(b), Some(o)) = (cast(weight), cast(bias), cast_vec_mut(out)) {
                    return dual::forward_padded_append::<f32>(xp, w, b, s, o);
                }
            }
            Some(Planes::DualF64(xp)) => {
                if let (Some(w), Some(b), Some(o)) = (cast(weight), cast(bias), cast_vec_mut(out)) {
                    return dual::forward_padded_append::<f64>(xp, w, b, s, o);
                }
            }
            None => {}
        }
        super::forward_append(self.x, weight, bias, s, out)
    }

    /// [`super::forward_known_append`] of this input.
    pub fn forward_known_append(
        &self,
        weight: &[S],
        bias: &[S],
        s: &ConvShape,
        y_v: &[S::Value],
        out: &mut Vec<S>,
    ) {
        fn tangent<F: Real, S: 'static, V: 'static>(
            xp: &[F],
            weight: &[S],
            bias: &[S],
            s: &ConvShape,
            y_v: &[V],
            out: &mut Vec<S>,
        ) -> bool {
            if let (Some(w), Some(b), Some(y), Some(o)) =
                (cast(weight), cast(bias), cast(y_v), cast_vec_mut(out))
            {
                dual::forward_tangent_padded_append::<F>(xp, w, b, s, y, o);
                return true;
            }
            false
        }
        let done = match &self.planes {
            Some(Planes::DualF32(xp)) => tangent(xp, weight, bias, s, y_v, out),
            Some(Planes::DualF64(xp)) => tangent(xp, weight, bias, s, y_v, out),
            // Real numbers have no tangent: `forward_known` is `forward`.
            Some(Planes::F32(_)) => {
                self.forward_append(weight, bias, s, out);
                true
            }
            None => false,
        };
        if !done {
            super::forward_known_append(self.x, weight, bias, s, y_v, out)
        }
    }

    /// [`super::backward`] of this input, without the input gradient.
    pub fn backward(&self, dy: &[S], weight: &[S], s: &ConvShape) -> ConvGrads<S> {
        match &self.planes {
            Some(Planes::F32(xp)) => {
                if let (Some(d), Some(w)) = (cast::<S, f32>(dy), cast(weight)) {
                    return super::cast_grads(fast::backward_padded(d, xp, w, s))
                        .expect("S is f32");
                }
            }
            Some(Planes::DualF32(xp)) => {
                if let (Some(d), Some(w)) = (cast::<S, Dual<f32>>(dy), cast(weight)) {
                    return super::cast_grads(dual::backward_padded(d, xp, w, s))
                        .expect("S is Dual<f32>");
                }
            }
            Some(Planes::DualF64(xp)) => {
                if let (Some(d), Some(w)) = (cast::<S, Dual<f64>>(dy), cast(weight)) {
                    return super::cast_grads(dual::backward_padded(d, xp, w, s))
                        .expect("S is Dual<f64>");
                }
            }
            None => {}
        }
        super::backward(dy, self.x, weight, s, false)
    }

    /// [`super::backward_known`] of this input, where the input gradient is not asked for
    /// (`known.input` is `None`).
    pub fn backward_known(
        &self,
        dy: &[S],
        weight: &[S],
        s: &ConvShape,
        known: &KnownGrads<'_, S::Value>,
    ) -> ConvGrads<S> {
        fn tangent<F: Real, S: 'static, V: 'static>(
            dy: &[S],
            xp: &[F],
            weight: &[S],
            s: &ConvShape,
            known: &KnownGrads<'_, V>,
        ) -> Option<ConvGrads<S>> {
            let k = KnownGrads {
                weight: cast(known.weight)?,
                bias: cast(known.bias)?,
                input: None,
            };
            let g = dual::backward_tangent_padded::<F>(cast(dy)?, xp, cast(weight)?, s, &k);
            super::cast_grads(g)
        }
        if known.input.is_none() {
            let g = match &self.planes {
                Some(Planes::DualF32(xp)) => tangent(dy, xp, weight, s, known),
                Some(Planes::DualF64(xp)) => tangent(dy, xp, weight, s, known),
                // Real numbers have no tangent: the same gradients as `backward`.
                Some(Planes::F32(_)) => Some(self.backward(dy, weight, s)),
                None => None,
            };
            if let Some(g) = g {
                return g;
            }
        }
        super::backward_known(dy, self.x, weight, s, known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::test_values;

    /// Numbers made from (value, tangent) and read back as bits, to compare results exactly.
    trait Bits: Scalar {
        fn make(v: f64, t: f64) -> Self;
        fn bits(self) -> (u64, u64);
    }
    impl Bits for f32 {
        fn make(v: f64, _: f64) -> Self {
            v as f32
        }
        fn bits(self) -> (u64, u64) {
            (self.to_bits().into(), 0)
        }
    }
    impl Bits for f64 {
        fn make(v: f64, _: f64) -> Self {
            v
        }
        fn bits(self) -> (u64, u64) {
            (self.to_bits(), 0)
        }
    }
    impl Bits for Dual<f32> {
        fn make(v: f64, t: f64) -> Self {
            Dual::new(v as f32, t as f32)
        }
        fn bits(self) -> (u64, u64) {
            (self.v.to_bits().into(), self.t.to_bits().into())
        }
    }
    impl Bits for Dual<f64> {
        fn make(v: f64, t: f64) -> Self {
            Dual::new(v, t)
        }
        fn bits(self) -> (u64, u64) {
            (self.v.to_bits(), self.t.to_bits())
        }
    }

    fn values<S: Bits>(len: usize, salt: u64, tangent: bool) -> Vec<S> {
        let (v, t) = (test_values(len, salt), test_values(len, salt + 500));
        v.iter()
            .zip(&t)
            .map(|(&v, &t)| S::make(v, if tangent { t } else { 0.0 }))
            .collect()
    }

    fn bits<S: Bits>(v: &[S]) -> Vec<(u64, u64)> {
        v.iter().map(|&x| x.bits()).collect()
    }

    fn same_grads<S: Bits>(what: &str, a: &ConvGrads<S>, b: &ConvGrads<S>) {
        assert_eq!(bits(&a.weight), bits(&b.weight), "{what}: weight gradients");
        assert_eq!(bits(&a.bias), bits(&b.bias), "{what}: bias gradients");
        assert!(
            a.input.is_none() && b.input.is_none(),
            "{what}: no input gradient"
        );
    }

    /// Each call on a [`PaddedInput`] against the same call on the raw input, on direct-kernel
    /// shapes (one-pixel and odd planes, one to four input channels) and a Winograd one (not
    /// padded: the raw calls run), with input tangents zero (padded) and not (not padded).
    fn check<S: Bits>() {
        let shapes = [
            (1, 3, 2, 5, 4),
            (3, 4, 3, 7, 6),
            (4, 2, 1, 1, 1),
            (2, 5, 2, 9, 3),
            (5, 3, 2, 5, 4),
        ];
        for (c_in, c_out, n, h, w) in shapes {
            let s = ConvShape {
                c_in,
                c_out,
                n,
                h,
                w,
                k: 3,
            };
            for tangent in [false, true] {
                let what = format!(
                    "{} {s:?}, input tangent {tangent}",
                    std::any::type_name::<S>()
                );
                let salt = (c_in * 100 + h) as u64;
                let x: Vec<S> = values(c_in * s.positions(), salt, tangent);
                let wt: Vec<S> = values(c_out * s.patch(), salt + 1, true);
                let b: Vec<S> = values(c_out, salt + 2, true);
                let dy: Vec<S> = values(c_out * s.positions(), salt + 3, true);
                let y_v: Vec<S::Value> = values::<S>(c_out * s.positions(), salt + 4, false)
                    .into_iter()
                    .map(|v| v.value())
                    .collect();
                let kw: Vec<S::Value> = values::<S>(wt.len(), salt + 5, false)
                    .into_iter()
                    .map(|v| v.value())
                    .collect();
                let kb: Vec<S::Value> = y_v[..c_out].to_vec();
                let known = KnownGrads {
                    weight: &kw,
                    bias: &kb,
                    input: None,
                };
                let input = PaddedInput::new(&x, &s);
                let real = std::any::type_name::<S>();
                let padded = c_in <= 4 && real != "f64" && (real == "f32" || !tangent);
                assert_eq!(
                    input.planes.is_some(),
                    padded,
                    "{what}: padded where the direct kernel serves it"
                );
                // Appended after what the vector already holds.
                let start: Vec<S> = values(3, 9, true);
                let (mut a, mut r) = (start.clone(), start.clone());
                input.forward_append(&wt, &b, &s, &mut a);
                super::super::forward_append(&x, &wt, &b, &s, &mut r);
                assert_eq!(bits(&a), bits(&r), "{what}: forward");
                let (mut a, mut r) = (start.clone(), start);
                input.forward_known_append(&wt, &b, &s, &y_v, &mut a);
                super::super::forward_known_append(&x, &wt, &b, &s, &y_v, &mut r);
                assert_eq!(bits(&a), bits(&r), "{what}: forward with known values");
                same_grads(
                    &format!("{what}: backward"),
                    &input.backward(&dy, &wt, &s),
                    &super::super::backward(&dy, &x, &wt, &s, false),
                );
                same_grads(
                    &format!("{what}: backward with known values"),
                    &input.backward_known(&dy, &wt, &s, &known),
                    &super::super::backward_known(&dy, &x, &wt, &s, &known),
                );
            }
        }
    }

    #[test]
    fn a_padded_input_gives_the_bits_of_the_raw_input_in_every_call() {
        check::<f32>();
        check::<Dual<f32>>();
        check::<Dual<f64>>();
        check::<f64>();
    }
}

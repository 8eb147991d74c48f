//! What gets differentiated: the inner loss (cross-entropy + lambda * supervised contrastive, on
//! pseudo-labels) and the BMSSL outer loss (KL to a fixed target distribution), each as
//! "value and gradient with respect to the parameters", plus the Hessian-vector product of the
//! inner loss that second-order meta-gradients need.
//!
//! Over 400 lines: the inner loss with its self-supervised variants, the outer losses and the
//! Hessian-vector product share the learner's forward/backward plumbing; about 170 lines are
//! gradient tests.

use crate::engine::{Dual, Real, Scalar};
use crate::losses;
use crate::model::{ConvValues, Learner, Memo};

pub use crate::losses::{ContrastiveLoss, InnerLoss};

/// A batch of images with their (pseudo-)labels.
#[derive(Clone, Debug)]
pub struct Batch<F> {
    /// `[N, C, H, W]`
    pub x: Vec<F>,
    /// `[N]`, values in `0..ways`.
    pub labels: Vec<usize>,
}

/// Rows of the first and second occurrence of each label, in order of first appearance: the two
/// views (a, b) of every image that has at least two.
pub fn view_pairs(labels: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut first: Vec<(usize, usize)> = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (row, &y) in labels.iter().enumerate() {
        match first.iter_mut().find(|(label, _)| *label == y) {
            None => first.push((y, row)),
            Some((_, f)) if *f != usize::MAX => {
                a.push(*f);
                b.push(row);
                *f = usize::MAX;
            }
            Some(_) => {}
        }
    }
    (a, b)
}

/// The self-supervised term on projections `z [B, D]` with pseudo-labels: `(loss, dz, dprototypes)`.
fn contrastive_term<S: Scalar>(
    spec: &InnerLoss,
    z: &[S],
    labels: &[usize],
    dim: usize,
    prototypes: Option<&[S]>,
) -> (S, Vec<S>, Option<Vec<S>>) {
    if spec.contrastive == ContrastiveLoss::Supcon {
        let (l, dz) = losses::supervised_contrastive(z, labels, dim, spec.temperature);
        return (l, dz, None);
    }
    let (a, b) = view_pairs(labels);
    let rows = |idx: &[usize]| -> Vec<S> {
        idx.iter()
            .flat_map(|&r| z[r * dim..(r + 1) * dim].iter().copied())
            .collect()
    };
    let (za, zb) = (rows(&a), rows(&b));
    let mut dz = vec![S::default(); z.len()];
    let mut scatter = |idx: &[usize], g: &[S]| {
        for (k, &r) in idx.iter().enumerate() {
            for (d, &v) in dz[r * dim..(r + 1) * dim]
                .iter_mut()
                .zip(&g[k * dim..(k + 1) * dim])
            {
                *d += v;
            }
        }
    };
    let n = a.len();
    if n == 0 {
        return (S::default(), dz, None);
    }
    let mut dproto = None;
    let loss = match spec.contrastive {
        ContrastiveLoss::Supcon => unreachable!("handled above"),
        ContrastiveLoss::Simclr | ContrastiveLoss::Swav => {
            let pair: Vec<S> = za.iter().chain(&zb).copied().collect();
            let (l, g) = if spec.contrastive == ContrastiveLoss::Simclr {
                losses::ssl::nt_xent(&pair, dim, spec.temperature)
            } else {
                let c = prototypes.expect("the swav inner loss needs prototypes in the learner");
                let (l, g, dc) = losses::ssl::swav(
                    &pair,
                    c,
                    dim,
                    losses::ssl::SwavSpec {
                        tau: spec.temperature,
                        eps: spec.sinkhorn_eps,
                        iters: spec.sinkhorn_iters,
                    },
                );
                dproto = Some(dc);
                (l, g)
            };
            scatter(&a, &g[..n * dim]);
            scatter(&b, &g[n * dim..]);
            l
        }
        ContrastiveLoss::Moco => {
            // No gradient flows into the keys (info_nce returns none for them), but on dual
            // numbers their tangent does: an inner step's Jacobian sees them move with w.
            let keys: Vec<S> = losses::normalize_rows(&zb, dim).0;
            let (l, g) = losses::ssl::info_nce_in_batch(&za, &keys, dim, spec.temperature);
            scatter(&a, &g);
            l
        }
        ContrastiveLoss::Barlowtwins => {
            // Barlow Twins' loss sums D diagonal terms (up to D = 64 at the start, against CE's
            // ln(ways)); divided by D, lambda means the same for it as for the other terms and the
            // inner SGD steps stay in the range alpha was chosen for.
            let (l, ga, gb) = losses::ssl::barlow_twins(&za, &zb, dim, spec.redundancy_weight);
            let inv_d = 1.0 / dim as f64;
            let ga: Vec<S> = ga.into_iter().map(|v| v.scale(inv_d)).collect();
            let gb: Vec<S> = gb.into_iter().map(|v| v.scale(inv_d)).collect();
            scatter(&a, &ga);
            scatter(&b, &gb);
            l.scale(inv_d)
        }
    };
    (loss, dz, dproto)
}

/// A loss on a batch.
#[derive(Clone, Copy, Debug)]
pub enum Objective<'a, S> {
    /// The inner loss on labelled (pseudo-labelled) views.
    Inner(InnerLoss),
    /// `KL(target || softmax(logits))`, target `[N, ways]` constant.
    KlTo(&'a [S]),
    /// Mean `KL(target_i || q_i)` of the projections' similarity distributions
    /// ([`losses::similarity_kl`]), target `[N, N]` constant, temperature tau.
    SimilarityKlTo(&'a [S], f64),
}

/// Value of a loss and its gradient with respect to every parameter.
pub struct LossGrad<S> {
    pub loss: S,
    pub grad: Vec<S>,
}

impl Learner {
    /// Loss and gradient at `params` on `batch`.
    pub fn loss_grad<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        labels: &[usize],
        objective: Objective<'_, S>,
    ) -> LossGrad<S> {
        self.loss_grad_memo(params, x, labels, objective, &mut Memo::Off)
    }

    /// [`Learner::loss_grad`] recording its convolution values, or taking them from a record
    /// of the same weights and batch ([`Memo`]).
    pub fn loss_grad_memo<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        labels: &[usize],
        objective: Objective<'_, S>,
        memo: &mut Memo<'_, S::Value>,
    ) -> LossGrad<S> {
        let ways = self.spec.ways;
        match objective {
            Objective::Inner(spec) => {
                let use_proj = spec.contrastive_weight != 0.0;
                let (out, tape) = self.forward_memo(params, x, use_proj, memo);
                let (ce, dlogits) = losses::cross_entropy(&out.logits, labels, ways);
                let (mut total, mut dproj) = (ce, None);
                let protos = self.layout.get("prototypes.weight").map(|e| e.range());
                let mut dprotos = None;
                if let Some(z) = &out.projection {
                    let (sc, dz, dc) = contrastive_term(
                        &spec,
                        z,
                        labels,
                        self.spec.proj_dim,
                        protos.clone().map(|r| &params[r]),
                    );
                    total += sc.scale(spec.contrastive_weight);
                    dproj = Some(
                        dz.into_iter()
                            .map(|v| v.scale(spec.contrastive_weight))
                            .collect::<Vec<_>>(),
                    );
                    dprotos = dc;
                }
                let mut grad = self.backward_memo(params, &tape, &dlogits, dproj.as_deref(), memo);
                if let (Some(r), Some(dc)) = (protos, dprotos) {
                    for (g, d) in grad[r].iter_mut().zip(dc) {
                        *g += d.scale(spec.contrastive_weight);
                    }
                }
                LossGrad { loss: total, grad }
            }
            Objective::KlTo(target) => {
                let (out, tape) = self.forward_memo(params, x, false, memo);
                let (kl, dlogits) = losses::kl_to_target(target, &out.logits, ways);
                LossGrad {
                    loss: kl,
                    grad: self.backward_memo(params, &tape, &dlogits, None, memo),
                }
            }
            Objective::SimilarityKlTo(target, tau) => {
                let (out, tape) = self.forward_memo(params, x, true, memo);
                let z = out
                    .projection
                    .as_deref()
                    .expect("the forward pass was asked for projections");
                let (kl, dz) = losses::similarity_kl(target, z, self.spec.proj_dim, tau);
                let dlogits = vec![S::default(); out.logits.len()];
                LossGrad {
                    loss: kl,
                    grad: self.backward_memo(params, &tape, &dlogits, Some(&dz), memo),
                }
            }
        }
    }

    /// Class probabilities `[N, ways]` at `params`.
    pub fn predict<S: Scalar>(&self, params: &[S], x: &[S]) -> Vec<S> {
        let (out, _) = self.infer(params, x, false);
        losses::softmax(&out.logits, self.spec.ways)
    }

    /// The projections' similarity distributions `[N, N]` at `params` ([`losses::similarity_distributions`]).
    pub fn similarity_distributions<S: Scalar>(&self, params: &[S], x: &[S], tau: f64) -> Vec<S> {
        let (out, _) = self.infer(params, x, true);
        let z = out
            .projection
            .expect("the forward pass was asked for projections");
        losses::similarity_distributions(&z, self.spec.proj_dim, tau)
    }

    /// `softmax(logits / temperature)` at `params` (temperature < 1 sharpens).
    pub fn predict_at_temperature<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        temperature: f64,
    ) -> Vec<S> {
        let (out, _) = self.infer(params, x, false);
        let inv = 1.0 / temperature;
        let scaled: Vec<S> = out.logits.iter().map(|v| v.scale(inv)).collect();
        losses::softmax(&scaled, self.spec.ways)
    }

    /// Gradient `g` and Hessian-vector product `H v` of the inner loss at `params`, in one
    /// forward + backward pass on dual numbers `params + eps v` (forward-over-reverse).
    pub fn inner_hvp<F: Real>(
        &self,
        params: &[F],
        v: &[F],
        x: &[F],
        labels: &[usize],
        spec: InnerLoss,
    ) -> (Vec<F>, Vec<F>) {
        self.inner_hvp_known(params, v, x, labels, spec, None)
    }

    /// [`Learner::inner_hvp`] with the convolution values of the real pass at the same `params`
    /// on the same `(x, labels)` (recorded by [`Learner::loss_grad_memo`] with
    /// [`Memo::Record`]): the dual convolutions then compute only their tangents, and `g`'s
    /// convolution parts are the recorded ones.
    pub fn inner_hvp_known<F: Real>(
        &self,
        params: &[F],
        v: &[F],
        x: &[F],
        labels: &[usize],
        spec: InnerLoss,
        known: Option<&ConvValues<F>>,
    ) -> (Vec<F>, Vec<F>) {
        let pd: Vec<Dual<F>> = params
            .iter()
            .zip(v)
            .map(|(&p, &t)| Dual::new(p, t))
            .collect();
        let xd: Vec<Dual<F>> = x.iter().map(|&p| Dual::new(p, F::default())).collect();
        let mut memo = match known {
            Some(values) => Memo::Replay(values),
            None => Memo::Off,
        };
        let g = self
            .loss_grad_memo(&pd, &xd, labels, Objective::Inner(spec), &mut memo)
            .grad;
        g.into_iter().map(|d| (d.v, d.t)).unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};
    use crate::model::{ArchSpec, Learner};
    use rand::SeedableRng;

    /// A small learner (8 channels, 12x12 input) keeps the finite differences quick.
    fn small() -> (Learner, Vec<f64>, Vec<f64>, Vec<usize>) {
        let spec = ArchSpec {
            hidden: 4,
            proj_dim: 5,
            ..ArchSpec::conv4(2, 16, 3)
        };
        let l = Learner::new(spec).unwrap();
        let p: Vec<f64> = l
            .init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1))
            .into_iter()
            .map(f64::from)
            .collect();
        let labels = vec![0, 1, 2, 0, 1, 2];
        let x = test_values(labels.len() * l.image_len(), 41);
        (l, p, x, labels)
    }

    const SPEC: InnerLoss = InnerLoss {
        contrastive_weight: 0.7,
        temperature: 0.5,
        ..InnerLoss::PAPER
    };

    #[test]
    fn inner_loss_gradient_matches_finite_differences_for_every_parameter() {
        let (l, p, x, y) = small();
        let g = l.loss_grad(&p, &x, &y, Objective::Inner(SPEC)).grad;
        assert_gradient(
            "inner loss",
            &mut |v| l.loss_grad(v, &x, &y, Objective::Inner(SPEC)).loss,
            &p,
            &g,
            1e-5,
        );
    }

    #[test]
    fn kl_gradient_matches_finite_differences_for_every_parameter() {
        let (l, p, x, y) = small();
        let target = l.predict(&p.iter().map(|v| v * 0.9).collect::<Vec<_>>(), &x);
        let g = l.loss_grad(&p, &x, &y, Objective::KlTo(&target)).grad;
        assert_gradient(
            "kl",
            &mut |v| l.loss_grad(v, &x, &y, Objective::KlTo(&target)).loss,
            &p,
            &g,
            1e-5,
        );
    }

    #[test]
    fn hessian_vector_product_matches_finite_differences_of_the_gradient() {
        let (l, p, x, y) = small();
        let v = test_values(p.len(), 42);
        let (g, hv) = l.inner_hvp(&p, &v, &x, &y, SPEC);
        // A small step: a larger one can move a max-pool winner or a ReLU across its kink, where
        // the gradient jumps and a difference quotient of it is meaningless.
        let h = 1e-7;
        let at = |s: f64| {
            let q: Vec<f64> = p.iter().zip(&v).map(|(a, b)| a + s * b).collect();
            l.loss_grad(&q, &x, &y, Objective::Inner(SPEC)).grad
        };
        let (gp, gm) = (at(h), at(-h));
        let numeric: Vec<f64> = gp
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect();
        let err = crate::engine::gradcheck::max_relative_error(&hv, &numeric, 1e-8);
        assert!(err < 1e-5, "H v differs from finite differences by {err:e}");
        // The value part of the dual pass is the ordinary gradient, to rounding: duals run the
        // fast (Winograd / direct) convolutions, plain f64 the im2col reference path.
        let g0 = l.loss_grad(&p, &x, &y, Objective::Inner(SPEC)).grad;
        let err = crate::engine::gradcheck::max_relative_error(&g, &g0, 1e-8);
        assert!(
            err < 1e-12,
            "the dual pass's value part differs from the gradient by {err:e}"
        );
    }

    /// A learner with prototypes (for SwAV's "-o" term) and two views of each of 3 images.
    fn small_with_prototypes() -> (Learner, Vec<f64>, Vec<f64>, Vec<usize>) {
        let spec = ArchSpec {
            hidden: 4,
            proj_dim: 5,
            prototypes: 4,
            ..ArchSpec::conv4(2, 16, 3)
        };
        let l = Learner::new(spec).unwrap();
        let jitter = test_values(l.num_params(), 43);
        let p: Vec<f64> = l
            .init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1))
            .into_iter()
            .zip(jitter)
            .map(|(v, j)| f64::from(v) + 0.02 * j)
            .collect();
        let labels = vec![0, 1, 2, 0, 1, 2];
        let x = test_values(labels.len() * l.image_len(), 41);
        (l, p, x, labels)
    }

    #[test]
    fn view_pairs_are_the_first_two_occurrences_of_each_label() {
        assert_eq!(
            view_pairs(&[0, 1, 2, 0, 1, 2]),
            (vec![0, 1, 2], vec![3, 4, 5])
        );
        assert_eq!(view_pairs(&[0, 0, 1, 0, 1]), (vec![0, 2], vec![1, 4]));
        assert_eq!(view_pairs(&[0, 1, 2]), (vec![], vec![]));
    }

    #[test]
    fn every_o_variant_has_exact_gradients_and_hessian_vector_products() {
        let (l, p, x, y) = small_with_prototypes();
        for kind in [
            ContrastiveLoss::Simclr,
            ContrastiveLoss::Moco,
            ContrastiveLoss::Barlowtwins,
            ContrastiveLoss::Swav,
        ] {
            let spec = InnerLoss {
                contrastive: kind,
                redundancy_weight: 0.2,
                ..SPEC
            };
            let obj = Objective::Inner(spec);
            let g = l.loss_grad(&p, &x, &y, obj).grad;
            // SimCLR and Barlow Twins have no stop-gradient: their gradient is the loss's.
            // MoCo's keys and SwAV's codes are constants by definition, so only the Hessian-vector
            // product (the derivative of that gradient, what second order needs) is differenced.
            if matches!(kind, ContrastiveLoss::Simclr | ContrastiveLoss::Barlowtwins) {
                assert_gradient(
                    kind.as_str(),
                    &mut |v| l.loss_grad(v, &x, &y, obj).loss,
                    &p,
                    &g,
                    1e-5,
                );
            }
            let v = test_values(p.len(), 44);
            let (g2, hv) = l.inner_hvp(&p, &v, &x, &y, spec);
            let err = crate::engine::gradcheck::max_relative_error(&g2, &g, 1e-8);
            assert!(
                err < 1e-12,
                "{}: value part differs by {err:e}",
                kind.as_str()
            );
            let h = 1e-7;
            let at = |s: f64| {
                let q: Vec<f64> = p.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                l.loss_grad(&q, &x, &y, obj).grad
            };
            let (gp, gm) = (at(h), at(-h));
            let numeric: Vec<f64> = gp
                .iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            let err = crate::engine::gradcheck::max_relative_error(&hv, &numeric, 1e-8);
            assert!(
                err < 1e-5,
                "{}: H v differs from finite differences by {err:e}",
                kind.as_str()
            );
            if kind == ContrastiveLoss::Swav {
                let r = l.layout.get("prototypes.weight").unwrap().range();
                assert!(g[r].iter().any(|v| *v != 0.0), "the prototypes learn");
            }
        }
    }

    #[test]
    fn a_hessian_vector_product_on_recorded_convolution_values_equals_the_full_dual_pass() {
        // f32 on the Omniglot Conv4 (the Winograd blocks record values; the first block, by
        // channel groups, does not), with theta's classifier and with a zero one.
        let l = Learner::new(ArchSpec::conv4(1, 28, 5)).unwrap();
        let mut p = l.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let labels = vec![0, 1, 2, 3, 4, 0];
        let f32s = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
        let x = f32s(test_values(labels.len() * l.image_len(), 41));
        let v = f32s(test_values(p.len(), 42));
        for zero_head in [false, true] {
            if zero_head {
                crate::meta::outer::zero_classifier(&l, &mut p);
            }
            let mut rec = ConvValues::new();
            let real = l.loss_grad_memo(
                &p,
                &x,
                &labels,
                Objective::Inner(InnerLoss::PAPER),
                &mut Memo::Record(&mut rec),
            );
            assert!(!rec.is_empty());
            let (g0, h0) = l.inner_hvp(&p, &v, &x, &labels, InnerLoss::PAPER);
            let (g1, h1) = l.inner_hvp_known(&p, &v, &x, &labels, InnerLoss::PAPER, Some(&rec));
            let rel = |a: &[f32], b: &[f32]| {
                let scale = b.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
                a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
            };
            assert!(rel(&h1, &h0) < 1e-5, "H v differs by {:e}", rel(&h1, &h0));
            assert!(rel(&g1, &g0) < 1e-5, "g differs by {:e}", rel(&g1, &g0));
            // The recorded convolution gradients are the value parts, bit for bit.
            for name in [
                "conv0.weight",
                "conv0.bias",
                "conv1.weight",
                "conv2.bias",
                "conv3.weight",
            ] {
                let r = l.layout.get(name).unwrap().range();
                assert_eq!(g1[r.clone()], real.grad[r], "{name}");
            }
        }
    }
}

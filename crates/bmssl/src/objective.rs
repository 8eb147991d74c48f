//! What gets differentiated: the inner loss (cross-entropy + lambda * supervised contrastive, on
//! pseudo-labels) and the BMSSL outer loss (KL to a fixed target distribution), each as
//! "value and gradient with respect to the parameters", plus the Hessian-vector product of the
//! inner loss that second-order meta-gradients need.

use crate::engine::{Dual, Real, Scalar};
use crate::loss;
use crate::model::Learner;

/// A batch of images with their (pseudo-)labels.
#[derive(Clone, Debug)]
pub struct Batch<F> {
    /// `[N, C, H, W]`
    pub x: Vec<F>,
    /// `[N]`, values in `0..ways`.
    pub labels: Vec<usize>,
}

/// The inner (task) loss of the paper: `CE(logits, y) + lambda * SupCon(z, y; tau)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InnerLoss {
    /// lambda: weight of the contrastive term (0 turns the projection head off).
    pub contrastive_weight: f64,
    /// tau: temperature of the contrastive term.
    pub temperature: f64,
}

/// A loss on a batch.
#[derive(Clone, Copy, Debug)]
pub enum Objective<'a, S> {
    /// The inner loss on labelled (pseudo-labelled) views.
    Inner(InnerLoss),
    /// `KL(target || softmax(logits))`, target `[N, ways]` constant.
    KlTo(&'a [S]),
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
        let ways = self.spec.ways;
        match objective {
            Objective::Inner(spec) => {
                let use_proj = spec.contrastive_weight != 0.0;
                let (out, tape) = self.forward(params, x, use_proj);
                let (ce, dlogits) = loss::cross_entropy(&out.logits, labels, ways);
                let (mut total, mut dproj) = (ce, None);
                if let Some(z) = &out.projection {
                    let (sc, dz) = loss::supervised_contrastive(
                        z,
                        labels,
                        self.spec.proj_dim,
                        spec.temperature,
                    );
                    total += sc.scale(spec.contrastive_weight);
                    dproj = Some(
                        dz.into_iter()
                            .map(|v| v.scale(spec.contrastive_weight))
                            .collect::<Vec<_>>(),
                    );
                }
                let grad = self.backward(params, &tape, &dlogits, dproj.as_deref());
                LossGrad { loss: total, grad }
            }
            Objective::KlTo(target) => {
                let (out, tape) = self.forward(params, x, false);
                let (kl, dlogits) = loss::kl_to_target(target, &out.logits, ways);
                LossGrad {
                    loss: kl,
                    grad: self.backward(params, &tape, &dlogits, None),
                }
            }
        }
    }

    /// Class probabilities `[N, ways]` at `params`.
    pub fn predict<S: Scalar>(&self, params: &[S], x: &[S]) -> Vec<S> {
        let (out, _) = self.infer(params, x, false);
        loss::softmax(&out.logits, self.spec.ways)
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
        let pd: Vec<Dual<F>> = params
            .iter()
            .zip(v)
            .map(|(&p, &t)| Dual::new(p, t))
            .collect();
        let xd: Vec<Dual<F>> = x.iter().map(|&p| Dual::new(p, F::default())).collect();
        let g = self
            .loss_grad(&pd, &xd, labels, Objective::Inner(spec))
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
        let g0 = l.loss_grad(&p, &x, &y, Objective::Inner(SPEC)).grad;
        assert_eq!(
            g, g0,
            "the value part of the dual pass is the ordinary gradient"
        );
    }
}

//! The bootstrapped target of BMSSL (paper section 4.2): from w_L, delta more inner steps on the
//! support views (and, with [`Target::QueryStep`], one more on the query views), then the predictive
//! distribution on the query views. Nothing here is differentiated: the steps run on plain numbers
//! and only the current fast weights are held, so memory does not grow with delta.
//!
//! The study's variants ([`super::BootstrapSpec`]): the target's steps may take their own step
//! size, a `query-step` target may end with several query steps, and the distribution may be
//! sharpened (`softmax(logits / T)`, T < 1).

use super::inner::sgd_step;
use super::{MetaSpec, Target};
use crate::engine::Real;
use crate::model::Learner;
use crate::objective::Objective;

/// The target distribution `pi_target [N_query, ways]` and the support loss at w_L.
pub struct BootstrapTarget<F> {
    pub probs: Vec<F>,
    /// The similarity distributions of the query views' projections at the target weights
    /// `[N_query, N_query]`, when [`super::BootstrapSpec::similarity_weight`] > 0.
    pub similarity: Option<Vec<F>>,
    /// Inner loss at w_L on the support views (after adaptation), when delta >= 1.
    pub support_loss_after: Option<f64>,
}

/// Builds the target from `w_l`.
#[allow(clippy::too_many_arguments)]
pub fn target<F: Real>(
    learner: &Learner,
    w_l: &[F],
    support_x: &[F],
    support_y: &[usize],
    query_x: &[F],
    query_y: &[usize],
    spec: &MetaSpec,
) -> BootstrapTarget<F> {
    let mut w = w_l.to_vec();
    let inner = Objective::Inner(spec.inner.inner_loss);
    let lr = spec.target_lr();
    let mut support_loss_after = None;
    for k in 0..spec.bootstrap_steps {
        let l = sgd_step(learner, &mut w, support_x, support_y, inner, lr);
        if k == 0 {
            support_loss_after = Some(l);
        }
    }
    if spec.target == Target::QueryStep {
        for _ in 0..spec.bootstrap.query_steps {
            sgd_step(learner, &mut w, query_x, query_y, inner, lr);
        }
    }
    let t = spec.bootstrap.temperature;
    BootstrapTarget {
        probs: if t == 1.0 {
            learner.predict(&w, query_x)
        } else {
            learner.predict_at_temperature(&w, query_x, t)
        },
        similarity: (spec.bootstrap.similarity_weight > 0.0).then(|| {
            learner.similarity_distributions(&w, query_x, spec.inner.inner_loss.temperature)
        }),
        support_loss_after,
    }
}

//! The bootstrapped target of BMSSL (paper section 4.2): from w_L, delta more inner steps on the
//! support views (and, with [`Target::QueryStep`], one more on the query views), then the predictive
//! distribution on the query views. Nothing here is differentiated: the steps run on plain numbers
//! and only the current fast weights are held, so memory does not grow with delta.

use super::inner::sgd_step;
use super::{MetaSpec, Target};
use crate::engine::Real;
use crate::model::Learner;
use crate::objective::Objective;

/// The target distribution `pi_target [N_query, ways]` and the support loss at w_L.
pub struct BootstrapTarget<F> {
    pub probs: Vec<F>,
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
    let inner = Objective::Inner(spec.inner_loss);
    let mut support_loss_after = None;
    for k in 0..spec.bootstrap_steps {
        let l = sgd_step(learner, &mut w, support_x, support_y, inner, spec.inner_lr);
        if k == 0 {
            support_loss_after = Some(l);
        }
    }
    if spec.target == Target::QueryStep {
        sgd_step(learner, &mut w, query_x, query_y, inner, spec.inner_lr);
    }
    BootstrapTarget {
        probs: learner.predict(&w, query_x),
        support_loss_after,
    }
}

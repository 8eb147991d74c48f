//! The inner loop: L plain SGD steps on the inner loss of the support views,
//! `w_{k+1} = w_k - alpha * grad l_S(w_k)`, starting from `w_0 = theta`.

use crate::engine::Real;
use crate::model::{ConvValues, Learner, Memo};
use crate::objective::{InnerLoss, Objective};

/// The fast weights visited by the inner loop, kept so that the meta-gradient can take a
/// Hessian-vector product at each of them (memory: L parameter vectors, and where asked the
/// convolution values of each step).
pub struct Trajectory<F> {
    /// `w_0 .. w_{L-1}`: the points where gradients were taken.
    pub visited: Vec<Vec<F>>,
    /// The convolution values of the step at each of `visited` ([`ConvValues`]), when
    /// [`adapt`] was asked to keep them; else empty.
    pub values: Vec<ConvValues<F>>,
    /// `w_L`.
    pub last: Vec<F>,
    /// Inner loss at `w_0` (before adaptation).
    pub loss_before: f64,
}

/// One SGD step in place: `w <- w - lr * g`; returns the loss at the old `w`.
pub fn sgd_step<F: Real>(
    learner: &Learner,
    w: &mut [F],
    x: &[F],
    labels: &[usize],
    objective: Objective<'_, F>,
    lr: f64,
) -> f64 {
    sgd_step_memo(learner, w, x, labels, objective, lr, &mut Memo::Off)
}

/// [`sgd_step`] whose gradient pass records or uses convolution values ([`Memo`]).
pub fn sgd_step_memo<F: Real>(
    learner: &Learner,
    w: &mut [F],
    x: &[F],
    labels: &[usize],
    objective: Objective<'_, F>,
    lr: f64,
    memo: &mut Memo<'_, F>,
) -> f64 {
    let lg = learner.loss_grad_memo(w, x, labels, objective, memo);
    for (p, g) in w.iter_mut().zip(lg.grad) {
        *p -= g.scale(lr);
    }
    lg.loss.re()
}

/// Adapts `theta` for `steps` steps on `(x, labels)`, keeping the trajectory (and, with
/// `keep_values`, each step's convolution values for the Hessian-vector products at the same
/// points: `Learner::inner_hvp_known`).
#[allow(clippy::too_many_arguments)]
pub fn adapt<F: Real>(
    learner: &Learner,
    theta: &[F],
    x: &[F],
    labels: &[usize],
    steps: usize,
    lr: f64,
    spec: InnerLoss,
    keep_values: bool,
) -> Trajectory<F> {
    let mut w = theta.to_vec();
    let mut visited = Vec::with_capacity(steps);
    let mut values = Vec::with_capacity(if keep_values { steps } else { 0 });
    let mut loss_before = f64::NAN;
    for k in 0..steps {
        visited.push(w.clone());
        let objective = Objective::Inner(spec);
        let l = if keep_values {
            let mut v = ConvValues::new();
            let l = sgd_step_memo(
                learner,
                &mut w,
                x,
                labels,
                objective,
                lr,
                &mut Memo::Record(&mut v),
            );
            values.push(v);
            l
        } else {
            sgd_step(learner, &mut w, x, labels, objective, lr)
        };
        if k == 0 {
            loss_before = l;
        }
    }
    Trajectory {
        visited,
        values,
        last: w,
        loss_before,
    }
}

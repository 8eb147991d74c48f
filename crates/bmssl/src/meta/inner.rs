//! The inner loop: L plain SGD steps on the inner loss of the support views,
//! `w_{k+1} = w_k - alpha * grad l_S(w_k)`, starting from `w_0 = theta`.

use crate::engine::Real;
use crate::model::Learner;
use crate::objective::{InnerLoss, Objective};

/// The fast weights visited by the inner loop, kept so that the meta-gradient can take a
/// Hessian-vector product at each of them (memory: L parameter vectors, no activations).
pub struct Trajectory<F> {
    /// `w_0 .. w_{L-1}`: the points where gradients were taken.
    pub visited: Vec<Vec<F>>,
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
    let lg = learner.loss_grad(w, x, labels, objective);
    for (p, g) in w.iter_mut().zip(lg.grad) {
        *p -= g.scale(lr);
    }
    lg.loss.re()
}

/// Adapts `theta` for `steps` steps on `(x, labels)`, keeping the trajectory.
pub fn adapt<F: Real>(
    learner: &Learner,
    theta: &[F],
    x: &[F],
    labels: &[usize],
    steps: usize,
    lr: f64,
    spec: InnerLoss,
) -> Trajectory<F> {
    let mut w = theta.to_vec();
    let mut visited = Vec::with_capacity(steps);
    let mut loss_before = f64::NAN;
    for k in 0..steps {
        visited.push(w.clone());
        let l = sgd_step(learner, &mut w, x, labels, Objective::Inner(spec), lr);
        if k == 0 {
            loss_before = l;
        }
    }
    Trajectory {
        visited,
        last: w,
        loss_before,
    }
}

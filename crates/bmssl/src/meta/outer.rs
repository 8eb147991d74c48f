//! The outer objective and its meta-gradient with respect to the shared initialisation theta.
//!
//! BMSSL (eq. 3): `min_theta KL(pi_target || pi_L)` on the query views, target from
//! [`super::bootstrap`], treated as a constant. MetaSSL (eq. 2): `min_theta l_Q(w_L)`.
//!
//! With `w_{k+1} = w_k - alpha * grad l_S(w_k)`, the chain rule gives
//! `dLoss/dtheta = (I - alpha H_0) ... (I - alpha H_{L-1}) dLoss/dw_L` (each `H_k` symmetric), so the
//! meta-gradient is one gradient at w_L followed by L Hessian-vector products walked backwards:
//! `u <- u - alpha * H_k u` for `k = L-1 .. 0`. This is exactly what reverse-mode autodiff through
//! the inner loop computes, with O(L) parameter vectors of memory and no graph.
//! First order drops the Hessian terms: `dLoss/dtheta ~ dLoss/dw_L`.

use super::bootstrap;
use super::inner::adapt;
use super::{MetaSpec, Method};
use crate::engine::Real;
use crate::model::Learner;
use crate::objective::Objective;
use rayon::prelude::*;

/// One task of a meta-batch, as tensors.
#[derive(Clone, Debug)]
pub struct TaskTensors<F> {
    /// `[N_support, C, H, W]`
    pub support_x: Vec<F>,
    pub support_y: Vec<usize>,
    /// `[N_query, C, H, W]`
    pub query_x: Vec<F>,
    pub query_y: Vec<usize>,
}

/// What one task's meta-gradient reports besides the gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskStats {
    /// The outer loss (KL for BMSSL, query inner loss for MetaSSL).
    pub outer_loss: f64,
    /// Inner loss on the support views at theta.
    pub inner_loss_before: f64,
    /// Inner loss on the support views at w_L (NaN when not computed: MetaSSL or delta = 0).
    pub inner_loss_after: f64,
}

/// Outer loss and meta-gradient of one task.
pub fn task_meta_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    task: &TaskTensors<F>,
    spec: &MetaSpec,
) -> (Vec<F>, TaskStats) {
    let traj = adapt(
        learner,
        theta,
        &task.support_x,
        &task.support_y,
        spec.inner_steps,
        spec.inner_lr,
        spec.inner_loss,
    );
    let mut stats = TaskStats {
        inner_loss_before: traj.loss_before,
        inner_loss_after: f64::NAN,
        ..Default::default()
    };
    // u = dLoss/dw_L
    let outer = match spec.method {
        Method::Metassl => learner.loss_grad(
            &traj.last,
            &task.query_x,
            &task.query_y,
            Objective::Inner(spec.inner_loss),
        ),
        Method::Bmssl => {
            let t = bootstrap::target(
                learner,
                &traj.last,
                &task.support_x,
                &task.support_y,
                &task.query_x,
                &task.query_y,
                spec,
            );
            stats.inner_loss_after = t.support_loss_after.unwrap_or(f64::NAN);
            learner.loss_grad(
                &traj.last,
                &task.query_x,
                &task.query_y,
                Objective::KlTo(&t.probs),
            )
        }
    };
    stats.outer_loss = outer.loss.re();
    let mut u = outer.grad;
    if !spec.first_order {
        for w_k in traj.visited.iter().rev() {
            let (_, hu) =
                learner.inner_hvp(w_k, &u, &task.support_x, &task.support_y, spec.inner_loss);
            for (a, b) in u.iter_mut().zip(hu) {
                *a -= b.scale(spec.inner_lr);
            }
        }
    }
    (u, stats)
}

/// Mean outer loss and mean meta-gradient over the tasks of a meta-batch. Tasks run in parallel
/// (one per core); the sum is taken in task order, so the result does not depend on the number of
/// threads.
pub fn meta_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    tasks: &[TaskTensors<F>],
    spec: &MetaSpec,
) -> (Vec<F>, Vec<TaskStats>) {
    mean_over_tasks(theta.len(), tasks, |t| {
        task_meta_gradient(learner, theta, t, spec)
    })
}

/// Runs `per_task` on every task in parallel and averages the gradients in task order (so the
/// result does not depend on the number of threads). Shared by every method's meta-batch.
pub fn mean_over_tasks<F: Real, T: Sync>(
    num_params: usize,
    tasks: &[T],
    per_task: impl Fn(&T) -> (Vec<F>, TaskStats) + Sync + Send,
) -> (Vec<F>, Vec<TaskStats>) {
    let per_task: Vec<(Vec<F>, TaskStats)> = tasks.par_iter().map(per_task).collect();
    let inv = 1.0 / tasks.len().max(1) as f64;
    let mut total = vec![F::default(); num_params];
    let mut stats = Vec::with_capacity(tasks.len());
    for (g, s) in per_task {
        for (a, b) in total.iter_mut().zip(g) {
            *a += b.scale(inv);
        }
        stats.push(s);
    }
    (total, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{max_relative_error, numeric_gradient, test_values};
    use crate::meta::Target;
    use crate::model::ArchSpec;
    use crate::objective::InnerLoss;
    use rand::SeedableRng;

    fn setup() -> (Learner, Vec<f64>, TaskTensors<f64>) {
        let spec = ArchSpec {
            hidden: 3,
            proj_dim: 4,
            ..ArchSpec::conv4(1, 16, 3)
        };
        let l = Learner::new(spec).unwrap();
        // Jitter the initialisation so no projection starts at exactly zero (its normalisation
        // has a 1e-12 floor there, where the loss is not differentiable).
        let jitter = test_values(l.num_params(), 50);
        let init = l.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let p: Vec<f64> = init
            .into_iter()
            .zip(jitter)
            .map(|(a, b)| f64::from(a) + 0.05 * b)
            .collect();
        let img = l.image_len();
        let task = TaskTensors {
            support_x: test_values(6 * img, 51),
            support_y: vec![0, 0, 1, 1, 2, 2],
            query_x: test_values(6 * img, 52),
            query_y: vec![0, 1, 2, 0, 1, 2],
        };
        (l, p, task)
    }

    fn spec(method: Method, target: Target, first_order: bool) -> MetaSpec {
        MetaSpec {
            method,
            target,
            inner_steps: 3,
            bootstrap_steps: 2,
            inner_lr: 0.1,
            inner_loss: InnerLoss {
                contrastive_weight: 0.5,
                temperature: 0.5,
                ..InnerLoss::PAPER
            },
            first_order,
        }
    }

    /// The outer loss with the bootstrap target computed once at `theta` and then held fixed:
    /// the function whose gradient BMSSL's meta-gradient is (no gradient flows into the target).
    fn outer_loss_with_fixed_target(
        l: &Learner,
        theta: &[f64],
        task: &TaskTensors<f64>,
        s: &MetaSpec,
    ) -> impl Fn(&[f64]) -> f64 {
        let w_l = adapt(
            l,
            theta,
            &task.support_x,
            &task.support_y,
            s.inner_steps,
            s.inner_lr,
            s.inner_loss,
        )
        .last;
        let target = bootstrap::target(
            l,
            &w_l,
            &task.support_x,
            &task.support_y,
            &task.query_x,
            &task.query_y,
            s,
        )
        .probs;
        let (l, task, s) = (l.clone(), task.clone(), *s);
        move |v: &[f64]| {
            let w = adapt(
                &l,
                v,
                &task.support_x,
                &task.support_y,
                s.inner_steps,
                s.inner_lr,
                s.inner_loss,
            )
            .last;
            match s.method {
                Method::Bmssl => {
                    l.loss_grad(&w, &task.query_x, &task.query_y, Objective::KlTo(&target))
                        .loss
                }
                Method::Metassl => {
                    l.loss_grad(
                        &w,
                        &task.query_x,
                        &task.query_y,
                        Objective::Inner(s.inner_loss),
                    )
                    .loss
                }
            }
        }
    }

    fn check_against_finite_differences(s: MetaSpec) {
        let (l, p, task) = setup();
        let (g, stats) = task_meta_gradient(&l, &p, &task, &s);
        let f = outer_loss_with_fixed_target(&l, &p, &task, &s);
        assert!((f(&p) - stats.outer_loss).abs() < 1e-12);
        let numeric = numeric_gradient(&mut |v| f(v), &p, 1e-6);
        let err = max_relative_error(&g, &numeric, 1e-8);
        assert!(
            err < 1e-5,
            "{:?}: meta-gradient differs from finite differences by {err:e}",
            s
        );
    }

    #[test]
    fn bmssl_second_order_meta_gradient_matches_finite_differences() {
        check_against_finite_differences(spec(Method::Bmssl, Target::Paper, false));
    }

    #[test]
    fn bmssl_query_step_target_meta_gradient_matches_finite_differences() {
        check_against_finite_differences(spec(Method::Bmssl, Target::QueryStep, false));
    }

    #[test]
    fn metassl_second_order_meta_gradient_matches_finite_differences() {
        check_against_finite_differences(spec(Method::Metassl, Target::Paper, false));
    }

    #[test]
    fn first_order_meta_gradient_is_the_gradient_at_the_adapted_weights() {
        let (l, p, task) = setup();
        let s = spec(Method::Metassl, Target::Paper, true);
        let (g, _) = task_meta_gradient(&l, &p, &task, &s);
        let w_l = adapt(
            &l,
            &p,
            &task.support_x,
            &task.support_y,
            3,
            0.1,
            s.inner_loss,
        )
        .last;
        let direct = l
            .loss_grad(
                &w_l,
                &task.query_x,
                &task.query_y,
                Objective::Inner(s.inner_loss),
            )
            .grad;
        assert_eq!(g, direct);
    }

    #[test]
    fn meta_batch_gradient_is_the_mean_of_task_gradients_on_any_thread_count() {
        let (l, p, task) = setup();
        let mut other = task.clone();
        other.support_x.reverse();
        let tasks = vec![task, other];
        let s = spec(Method::Bmssl, Target::Paper, false);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| meta_gradient(&l, &p, &tasks, &s).0)
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two);
        let a = task_meta_gradient(&l, &p, &tasks[0], &s).0;
        let b = task_meta_gradient(&l, &p, &tasks[1], &s).0;
        for i in 0..one.len() {
            assert!((one[i] - (a[i] * 0.5 + b[i] * 0.5)).abs() < 1e-15);
        }
    }
}

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
//!
//! Variants ([`MetaSpec::zero_head`], [`super::BootstrapSpec`]): with the zeroing trick the inner
//! loop starts from theta with its classifier set to zero, so the classifier's meta-gradient is
//! exactly zero; the additive outer loss adds the query loss's gradient at w_L to mu times the
//! KL's, and the chain rule above is unchanged (both are functions of w_L).
//!
//! Over 400 lines because of its tests (about 340 lines): the meta-gradient is checked against
//! finite differences for every variant (first and second order, both targets, the zeroing trick);
//! the code is about 200 lines.

use super::bootstrap;
use super::inner::adapt;
use super::{MetaSpec, Method, OuterLoss};
use crate::engine::Real;
use crate::model::Learner;
use crate::objective::{LossGrad, Objective};
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

/// A pseudo-labelled task (section 4.1) as tensors: its views and labels, nothing else.
impl From<crate::tasks::Task> for TaskTensors<f32> {
    fn from(t: crate::tasks::Task) -> Self {
        TaskTensors {
            support_x: t.support.data,
            support_y: t.support_labels,
            query_x: t.query.data,
            query_y: t.query_labels,
        }
    }
}

/// A labelled episode (MAML's and ProtoNet's tasks) as tensors.
impl From<crate::episodes::Episode> for TaskTensors<f32> {
    fn from(e: crate::episodes::Episode) -> Self {
        TaskTensors {
            support_x: e.support.data,
            support_y: e.support_labels,
            query_x: e.query.data,
            query_y: e.query_labels,
        }
    }
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
    /// `KL(pi_target || pi_L)` (NaN without a bootstrap target: MetaSSL and the baselines).
    pub kl: f64,
}

/// Sets the classifier's weights and bias to zero (the zeroing trick's start of an inner loop, and
/// its meta-gradient: theta's classifier does not reach the loss).
pub fn zero_classifier<F: Real>(learner: &Learner, w: &mut [F]) {
    for name in ["classifier.weight", "classifier.bias"] {
        if let Some(e) = learner.layout.get(name) {
            w[e.range()].fill(F::default());
        }
    }
}

/// `a + w b`, loss and gradient.
fn add_scaled<F: Real>(a: LossGrad<F>, b: LossGrad<F>, w: f64) -> LossGrad<F> {
    LossGrad {
        loss: a.loss + b.loss.scale(w),
        grad: a
            .grad
            .into_iter()
            .zip(b.grad)
            .map(|(x, y)| x + y.scale(w))
            .collect(),
    }
}

/// Outer loss and meta-gradient of one task.
pub fn task_meta_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    task: &TaskTensors<F>,
    spec: &MetaSpec,
) -> (Vec<F>, TaskStats) {
    let zeroed;
    let start = if spec.zero_head {
        let mut w = theta.to_vec();
        zero_classifier(learner, &mut w);
        zeroed = w;
        &zeroed[..]
    } else {
        theta
    };
    let traj = adapt(
        learner,
        start,
        &task.support_x,
        &task.support_y,
        spec.inner.inner_steps,
        spec.inner.inner_lr,
        spec.inner.inner_loss,
        !spec.first_order,
    );
    let mut stats = TaskStats {
        inner_loss_before: traj.loss_before,
        inner_loss_after: f64::NAN,
        kl: f64::NAN,
        ..Default::default()
    };
    // u = dLoss/dw_L
    let outer = match spec.method {
        Method::Metassl => learner.loss_grad(
            &traj.last,
            &task.query_x,
            &task.query_y,
            Objective::Inner(spec.inner.inner_loss),
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
            let kl = learner.loss_grad(
                &traj.last,
                &task.query_x,
                &task.query_y,
                Objective::KlTo(&t.probs),
            );
            stats.kl = kl.loss.re();
            let outer = match spec.bootstrap.outer {
                OuterLoss::Kl => kl,
                OuterLoss::Additive => {
                    let mu = spec.bootstrap.mu;
                    let q = learner.loss_grad(
                        &traj.last,
                        &task.query_x,
                        &task.query_y,
                        Objective::Inner(spec.inner.inner_loss),
                    );
                    add_scaled(q, kl, mu)
                }
            };
            match &t.similarity {
                None => outer,
                Some(target) => {
                    let nu = spec.bootstrap.similarity_weight;
                    let sim = learner.loss_grad(
                        &traj.last,
                        &task.query_x,
                        &task.query_y,
                        Objective::SimilarityKlTo(target, spec.inner.inner_loss.temperature),
                    );
                    add_scaled(outer, sim, nu)
                }
            }
        }
    };
    stats.outer_loss = outer.loss.re();
    let mut u = outer.grad;
    if !spec.first_order {
        for (k, w_k) in traj.visited.iter().enumerate().rev() {
            let (_, hu) = learner.inner_hvp_known(
                w_k,
                &u,
                &task.support_x,
                &task.support_y,
                spec.inner.inner_loss,
                traj.values.get(k),
            );
            for (a, b) in u.iter_mut().zip(hu) {
                *a -= b.scale(spec.inner.inner_lr);
            }
        }
    }
    if spec.zero_head {
        zero_classifier(learner, &mut u);
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
    use crate::meta::{InnerLoop, Target};
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
            inner: InnerLoop {
                inner_lr: 0.1,
                inner_steps: 3,
                inner_loss: InnerLoss {
                    contrastive_weight: 0.5,
                    temperature: 0.5,
                    ..InnerLoss::PAPER
                },
            },
            bootstrap_steps: 2,
            first_order,
            zero_head: false,
            bootstrap: crate::meta::BootstrapSpec::PAPER,
        }
    }

    /// theta with its classifier zeroed when the zeroing trick is on (written out here from the
    /// layout, apart from the code under test).
    fn start(l: &Learner, theta: &[f64], s: &MetaSpec) -> Vec<f64> {
        let mut w = theta.to_vec();
        if s.zero_head {
            for name in ["classifier.weight", "classifier.bias"] {
                let r = l.layout.get(name).unwrap().range();
                for v in &mut w[r] {
                    *v = 0.0;
                }
            }
        }
        w
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
            &start(l, theta, s),
            &task.support_x,
            &task.support_y,
            s.inner.inner_steps,
            s.inner.inner_lr,
            s.inner.inner_loss,
            false,
        )
        .last;
        let bootstrapped = bootstrap::target(
            l,
            &w_l,
            &task.support_x,
            &task.support_y,
            &task.query_x,
            &task.query_y,
            s,
        );
        let (target, similarity_target) = (bootstrapped.probs, bootstrapped.similarity);
        let (l, task, s) = (l.clone(), task.clone(), *s);
        move |v: &[f64]| {
            let w = adapt(
                &l,
                &start(&l, v, &s),
                &task.support_x,
                &task.support_y,
                s.inner.inner_steps,
                s.inner.inner_lr,
                s.inner.inner_loss,
                false,
            )
            .last;
            let query_loss = l
                .loss_grad(
                    &w,
                    &task.query_x,
                    &task.query_y,
                    Objective::Inner(s.inner.inner_loss),
                )
                .loss;
            let kl = || {
                l.loss_grad(&w, &task.query_x, &task.query_y, Objective::KlTo(&target))
                    .loss
            };
            let similarity = || match &similarity_target {
                Some(t) => {
                    s.bootstrap.similarity_weight
                        * l.loss_grad(
                            &w,
                            &task.query_x,
                            &task.query_y,
                            Objective::SimilarityKlTo(t, s.inner.inner_loss.temperature),
                        )
                        .loss
                }
                None => 0.0,
            };
            match (s.method, s.bootstrap.outer) {
                (Method::Bmssl, crate::meta::OuterLoss::Kl) => kl() + similarity(),
                (Method::Bmssl, crate::meta::OuterLoss::Additive) => {
                    query_loss + s.bootstrap.mu * kl() + similarity()
                }
                (Method::Metassl, _) => query_loss,
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

    fn with(s: MetaSpec, edit: impl FnOnce(&mut MetaSpec)) -> MetaSpec {
        let mut s = s;
        edit(&mut s);
        s
    }

    #[test]
    fn additive_outer_loss_meta_gradient_matches_finite_differences() {
        for target in [Target::Paper, Target::QueryStep] {
            check_against_finite_differences(with(spec(Method::Bmssl, target, false), |s| {
                s.bootstrap.outer = crate::meta::OuterLoss::Additive;
                s.bootstrap.mu = 0.3;
            }));
        }
    }

    #[test]
    fn zeroing_trick_meta_gradient_matches_finite_differences_for_both_methods() {
        for method in [Method::Bmssl, Method::Metassl] {
            check_against_finite_differences(with(spec(method, Target::QueryStep, false), |s| {
                s.zero_head = true;
            }));
        }
    }

    #[test]
    fn projection_similarity_target_meta_gradient_matches_finite_differences() {
        for outer in [crate::meta::OuterLoss::Kl, crate::meta::OuterLoss::Additive] {
            check_against_finite_differences(with(
                spec(Method::Bmssl, Target::QueryStep, false),
                |s| {
                    s.bootstrap.similarity_weight = 0.7;
                    s.bootstrap.outer = outer;
                    s.zero_head = true;
                },
            ));
        }
    }

    #[test]
    fn the_projection_head_gets_a_meta_gradient_from_the_similarity_target_alone() {
        // M1 = 1: no contrastive positives in the support set, and the KL reads logits only.
        let (l, p, mut task) = setup();
        task.support_y = vec![0, 1, 2];
        task.support_x.truncate(3 * l.image_len());
        let mut s = spec(Method::Bmssl, Target::QueryStep, false);
        s.inner.inner_loss.contrastive_weight = 0.0;
        let proj = l.layout.get("proj.2.weight").unwrap().range();
        let plain = task_meta_gradient(&l, &p, &task, &s).0;
        assert!(plain[proj.clone()].iter().all(|&v| v == 0.0));
        s.bootstrap.similarity_weight = 1.0;
        let with_similarity = task_meta_gradient(&l, &p, &task, &s).0;
        assert!(with_similarity[proj].iter().any(|&v| v != 0.0));
    }

    #[test]
    fn zeroing_trick_sends_no_meta_gradient_to_the_classifier() {
        let (l, p, task) = setup();
        let s = with(spec(Method::Metassl, Target::Paper, false), |s| {
            s.zero_head = true;
        });
        let (g, _) = task_meta_gradient(&l, &p, &task, &s);
        let head = l.layout.get("classifier.weight").unwrap().range();
        assert!(g[head].iter().all(|&v| v == 0.0));
        let conv = l.layout.get("conv0.weight").unwrap().range();
        assert!(g[conv].iter().any(|&v| v != 0.0));
    }

    #[test]
    fn sharpened_multi_step_target_with_its_own_step_size_matches_finite_differences() {
        check_against_finite_differences(with(
            spec(Method::Bmssl, Target::QueryStep, false),
            |s| {
                s.bootstrap.temperature = 0.5;
                s.bootstrap.query_steps = 2;
                s.bootstrap.lr = Some(0.05);
                s.bootstrap.outer = crate::meta::OuterLoss::Additive;
                s.bootstrap.mu = 2.0;
                s.zero_head = true;
            },
        ));
    }

    #[test]
    fn a_sharpened_target_is_the_softmax_of_the_scaled_logits_and_more_confident() {
        let (l, p, task) = setup();
        let base = spec(Method::Bmssl, Target::Paper, false);
        let sharp = with(base, |s| s.bootstrap.temperature = 0.5);
        let args = (
            &task.support_x,
            &task.support_y,
            &task.query_x,
            &task.query_y,
        );
        let t1 = bootstrap::target(&l, &p, args.0, args.1, args.2, args.3, &base).probs;
        let t2 = bootstrap::target(&l, &p, args.0, args.1, args.2, args.3, &sharp).probs;
        // softmax(z / 0.5) = p^2 / sum(p^2) row by row.
        for (r1, r2) in t1.chunks(3).zip(t2.chunks(3)) {
            let norm: f64 = r1.iter().map(|v| v * v).sum();
            for (a, b) in r1.iter().zip(r2) {
                assert!((a * a / norm - b).abs() < 1e-12);
            }
            let max = |r: &[f64]| r.iter().cloned().fold(0.0, f64::max);
            assert!(max(r2) >= max(r1));
        }
    }

    #[test]
    fn the_target_step_size_changes_the_target_and_defaults_to_alpha() {
        let (l, p, task) = setup();
        let base = spec(Method::Bmssl, Target::QueryStep, false);
        let args = (
            &task.support_x,
            &task.support_y,
            &task.query_x,
            &task.query_y,
        );
        let t = |s: &MetaSpec| bootstrap::target(&l, &p, args.0, args.1, args.2, args.3, s).probs;
        let alpha = with(base, |s| s.bootstrap.lr = Some(s.inner.inner_lr));
        assert_eq!(t(&base), t(&alpha));
        assert_ne!(t(&base), t(&with(base, |s| s.bootstrap.lr = Some(0.01))));
        assert_ne!(t(&base), t(&with(base, |s| s.bootstrap.query_steps = 3)));
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
            s.inner.inner_loss,
            false,
        )
        .last;
        let direct = l
            .loss_grad(
                &w_l,
                &task.query_x,
                &task.query_y,
                Objective::Inner(s.inner.inner_loss),
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

//! One-level optimisation, structure M2 of the paper's Table 6: the same pseudo-labelled tasks as
//! BMSSL (section 4.1), but no inner loop and no bootstrap. theta itself minimises the inner loss
//! (cross-entropy + lambda * supervised contrastive) on *all* the views of each task (support and
//! query together), averaged over the meta-batch's tasks, with the outer optimiser:
//!
//! `min_theta  mean_tasks  l_inner(theta; support ∪ query views)`
//!
//! So theta only learns the metric (which views belong together); it is then used as experience
//! exactly as BMSSL's theta is: at test time each episode adapts it with L inner steps from a fresh
//! classifier ([`crate::eval`], adapt mode). The difference to M3 (BMSSL) is only the missing
//! second level: nothing ever asks how well theta *adapts*.

use crate::engine::Real;
use crate::meta::outer::{mean_over_tasks, TaskStats, TaskTensors};
use crate::model::Learner;
use crate::objective::{InnerLoss, Objective};

/// Loss and gradient of one task: the inner loss on its support and query views at theta.
pub fn task_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    task: &TaskTensors<F>,
    inner_loss: InnerLoss,
) -> (Vec<F>, TaskStats) {
    let x: Vec<F> = task
        .support_x
        .iter()
        .chain(&task.query_x)
        .copied()
        .collect();
    let y: Vec<usize> = task
        .support_y
        .iter()
        .chain(&task.query_y)
        .copied()
        .collect();
    let out = learner.loss_grad(theta, &x, &y, Objective::Inner(inner_loss));
    let stats = TaskStats {
        outer_loss: out.loss.re(),
        inner_loss_before: out.loss.re(),
        inner_loss_after: f64::NAN,
        kl: f64::NAN,
    };
    (out.grad, stats)
}

/// Mean loss gradient over a meta-batch of tasks.
pub fn meta_batch_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    tasks: &[TaskTensors<F>],
    inner_loss: InnerLoss,
) -> (Vec<F>, Vec<TaskStats>) {
    mean_over_tasks(theta.len(), tasks, |t| {
        task_gradient(learner, theta, t, inner_loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};
    use crate::model::ArchSpec;
    use rand::SeedableRng;

    #[test]
    fn the_one_level_gradient_is_the_inner_loss_gradient_on_all_views() {
        let spec = ArchSpec {
            hidden: 4,
            proj_dim: 5,
            ..ArchSpec::conv4(1, 16, 2)
        };
        let l = Learner::new(spec).unwrap();
        let p: Vec<f64> = l
            .init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3))
            .into_iter()
            .map(f64::from)
            .collect();
        let n = l.image_len();
        let task = TaskTensors {
            support_x: test_values(2 * n, 71),
            support_y: vec![0, 1],
            query_x: test_values(4 * n, 72),
            query_y: vec![0, 1, 1, 0],
        };
        let spec = InnerLoss {
            contrastive_weight: 1.0,
            temperature: 0.5,
            ..InnerLoss::PAPER
        };
        let (g, stats) = task_gradient(&l, &p, &task, spec);
        assert!(stats.outer_loss.is_finite());
        let all_x: Vec<f64> = task
            .support_x
            .iter()
            .chain(&task.query_x)
            .copied()
            .collect();
        let all_y = [0, 1, 0, 1, 1, 0];
        assert_gradient(
            "one-level loss",
            &mut |v| l.loss_grad(v, &all_x, &all_y, Objective::Inner(spec)).loss,
            &p,
            &g,
            1e-5,
        );
    }
}

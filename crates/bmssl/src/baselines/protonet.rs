//! Prototypical networks (Snell et al. 2017): class prototypes are the mean backbone features of
//! the support images, and queries are classified by a softmax over negative squared Euclidean
//! distances to the prototypes. Training is episodic and plain first-order (no inner loop).
//!
//! As in the authors' code, support and query images go through the backbone in one batch (one set
//! of batch-norm statistics).

use crate::engine::Real;
use crate::losses::cross_entropy;
use crate::meta::outer::{mean_over_tasks, TaskStats, TaskTensors};
use crate::model::Learner;

/// The loss on features: `support [Ns, F]` with labels in `0..ways`, `query [Nq, F]`.
/// Returns `(loss, dsupport, dquery)`.
pub fn prototype_loss<F: Real>(
    support: &[F],
    support_y: &[usize],
    query: &[F],
    query_y: &[usize],
    ways: usize,
    dim: usize,
) -> (F, Vec<F>, Vec<F>) {
    let mut protos = vec![F::default(); ways * dim];
    let mut counts = vec![0usize; ways];
    for (row, &y) in support.chunks(dim).zip(support_y) {
        counts[y] += 1;
        for (p, &v) in protos[y * dim..(y + 1) * dim].iter_mut().zip(row) {
            *p += v;
        }
    }
    for (k, c) in counts.iter().enumerate() {
        for p in &mut protos[k * dim..(k + 1) * dim] {
            *p = p.scale(1.0 / (*c).max(1) as f64);
        }
    }
    // logits[q, k] = -|f_q - c_k|^2
    let nq = query_y.len();
    let mut logits = vec![F::default(); nq * ways];
    for q in 0..nq {
        for k in 0..ways {
            let d: F = (0..dim)
                .map(|i| {
                    (query[q * dim + i] - protos[k * dim + i])
                        * (query[q * dim + i] - protos[k * dim + i])
                })
                .sum();
            logits[q * ways + k] = -d;
        }
    }
    let (loss, dlogits) = cross_entropy(&logits, query_y, ways);
    // d logits / d f_q = -2 (f_q - c_k);  d logits / d c_k = 2 (f_q - c_k).
    let mut dquery = vec![F::default(); query.len()];
    let mut dprotos = vec![F::default(); protos.len()];
    for q in 0..nq {
        for k in 0..ways {
            let g = dlogits[q * ways + k];
            for i in 0..dim {
                let diff = (query[q * dim + i] - protos[k * dim + i]).scale(2.0);
                dquery[q * dim + i] -= g * diff;
                dprotos[k * dim + i] += g * diff;
            }
        }
    }
    let mut dsupport = vec![F::default(); support.len()];
    for (s, &y) in support_y.iter().enumerate() {
        for i in 0..dim {
            dsupport[s * dim + i] = dprotos[y * dim + i].scale(1.0 / counts[y].max(1) as f64);
        }
    }
    (loss, dsupport, dquery)
}

/// Loss and gradient of one episode.
pub fn task_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    task: &TaskTensors<F>,
) -> (Vec<F>, TaskStats) {
    let ns = task.support_y.len();
    let x: Vec<F> = task
        .support_x
        .iter()
        .chain(&task.query_x)
        .copied()
        .collect();
    let (_, tape) = learner.forward(theta, &x, false);
    let feats = learner.features(&tape);
    let dim = learner.spec.feature_dim();
    let ways = task.support_y.iter().max().map_or(0, |m| m + 1);
    let (loss, ds, dq) = prototype_loss(
        &feats[..ns * dim],
        &task.support_y,
        &feats[ns * dim..],
        &task.query_y,
        ways,
        dim,
    );
    let dfeat: Vec<F> = ds.into_iter().chain(dq).collect();
    let grad = learner.backward_from_features(theta, &tape, &dfeat);
    let stats = TaskStats {
        outer_loss: loss.re(),
        inner_loss_before: f64::NAN,
        inner_loss_after: f64::NAN,
        kl: f64::NAN,
    };
    (grad, stats)
}

/// Mean loss gradient over a meta-batch of episodes.
pub fn meta_batch_gradient<F: Real>(
    learner: &Learner,
    theta: &[F],
    tasks: &[TaskTensors<F>],
) -> (Vec<F>, Vec<TaskStats>) {
    mean_over_tasks(theta.len(), tasks, |t| task_gradient(learner, theta, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::{assert_gradient, test_values};
    use crate::model::ArchSpec;

    #[test]
    fn prototype_loss_matches_a_hand_computation() {
        // Two classes on a line: prototypes at 0 and 2; the query at 0.5 is 0.25 and 2.25 away.
        let support = [0.0f64, 0.0, 1.0, 3.0];
        let (loss, _, _) = prototype_loss(&support, &[0, 0, 1, 1], &[0.5], &[0], 2, 1);
        let want = -((-0.25f64).exp() / ((-0.25f64).exp() + (-2.25f64).exp())).ln();
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    }

    #[test]
    fn prototype_loss_gradients_match_finite_differences() {
        let (s, q) = (test_values(6 * 4, 61), test_values(4 * 4, 62));
        let (sy, qy) = ([0, 1, 2, 0, 1, 2], [2, 0, 1, 1]);
        let (_, ds, dq) = prototype_loss(&s, &sy, &q, &qy, 3, 4);
        assert_gradient(
            "support",
            &mut |v| prototype_loss(v, &sy, &q, &qy, 3, 4).0,
            &s,
            &ds,
            1e-7,
        );
        assert_gradient(
            "query",
            &mut |v| prototype_loss(&s, &sy, v, &qy, 3, 4).0,
            &q,
            &dq,
            1e-7,
        );
    }

    #[test]
    fn protonet_parameter_gradient_matches_finite_differences() {
        let l = Learner::new(ArchSpec {
            hidden: 3,
            proj_dim: 2,
            ..ArchSpec::conv4(1, 16, 3)
        })
        .unwrap();
        let p: Vec<f64> = l
            .init(&mut crate::rng::derive(4, &[1]))
            .into_iter()
            .map(f64::from)
            .collect();
        let img = l.image_len();
        let task = TaskTensors {
            support_x: test_values(6 * img, 63),
            support_y: vec![0, 0, 1, 1, 2, 2],
            query_x: test_values(3 * img, 64),
            query_y: vec![2, 1, 0],
        };
        let (g, _) = task_gradient(&l, &p, &task);
        assert_gradient(
            "protonet",
            &mut |v| task_gradient(&l, v, &task).1.outer_loss,
            &p,
            &g,
            1e-5,
        );
    }
}

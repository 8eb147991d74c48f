//! One training step of a self-supervised baseline: a batch of B unlabelled images in two
//! augmented views, both through the learner's backbone and projection head (and, for MoCo/PsCo,
//! the second view through the momentum encoder instead), the method's loss on the embeddings
//! ([`crate::losses::ssl`]), and the gradient with respect to every parameter.
//!
//! ```text
//! x1, x2 [B, C, H, W] -> f -> proj -> z1, z2 [B, 64]            SimCLR, SwAV, Barlow Twins
//! x1 -> f -> proj (-> pred) -> q [B, 64];  x2 -> f_ema -> proj_ema -> k [B, 64] (no gradient)   MoCo, PsCo
//! ```
//! Each view goes through the backbone on its own, so batch-norm statistics are per view, as in the
//! official code. The momentum encoder is an exponential moving average of theta (backbone and
//! projection; the predictor has no twin), updated before each step as PsCo's code does; the queue
//! holds the last `queue_size` keys, oldest overwritten first.
//!
//! Over 400 lines: one step for five methods (two forward paths, the momentum encoder, the queue,
//! the predictor) plus a finite-difference test of every method's step gradient (about 170 lines).

use crate::engine::{activation, linear, Real};
use crate::losses::normalize_rows;
use crate::losses::ssl::{self as losses, PscoSpec, SwavSpec};
use crate::model::Learner;
use crate::rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;

/// Which self-supervised baseline a step trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMethod {
    /// SimCLR: NT-Xent between the two views of each image of a batch.
    Simclr,
    /// MoCo v2: InfoNCE against a momentum encoder's keys and a queue.
    Moco,
    /// SwAV: swapped prediction of Sinkhorn codes over prototypes.
    Swav,
    /// Barlow Twins: cross-correlation of the two views towards the identity.
    Barlowtwins,
    /// PsCo: MoCo plus a pseudo-labelled few-shot task drawn from the queue.
    Psco,
}

impl SslMethod {
    /// Whether the method keeps a momentum encoder and a queue of keys.
    pub fn uses_queue(self) -> bool {
        matches!(self, SslMethod::Moco | SslMethod::Psco)
    }
}

/// What a self-supervised step reads from the run configuration (`TrainConfig::ssl_spec` builds
/// it), so that the step depends on these settings alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SslSpec {
    pub method: SslMethod,
    /// tau of every method's softmax.
    pub temperature: f64,
    /// PsCo's second temperature.
    pub temperature2: f64,
    /// Barlow Twins' off-diagonal weight.
    pub redundancy_weight: f64,
    /// Sinkhorn's entropy weight and iterations (SwAV, PsCo).
    pub sinkhorn_eps: f64,
    pub sinkhorn_iters: usize,
    /// The momentum encoder's m (MoCo, PsCo).
    pub momentum: f64,
    /// PsCo's shots per pseudo-class.
    pub shots: usize,
    /// Rows of the queue of keys (MoCo, PsCo).
    pub queue_size: usize,
}

/// State a self-supervised method carries between steps besides theta and the optimiser.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SslState {
    /// Momentum encoder: the learner's parameters averaged over steps (MoCo, PsCo), else empty.
    pub ema: Vec<f32>,
    /// Queue of keys `[Q, D]`, unit rows (MoCo, PsCo), else empty.
    pub queue: Vec<f32>,
    /// Next queue row to overwrite.
    pub queue_ptr: usize,
}

impl SslState {
    /// Fresh state: the momentum encoder starts as theta; the queue as random unit vectors, as
    /// MoCo's `F.normalize(torch.randn(queue_size, dim))`, drawn from the run's seed.
    pub fn new(spec: &SslSpec, seed: u64, learner: &Learner, theta: &[f32]) -> Self {
        if !spec.method.uses_queue() {
            return SslState::default();
        }
        let dim = learner.spec.proj_dim;
        let mut r = rng::derive(seed, &[rng::STREAM_INIT, 1]);
        let raw: Vec<f64> = (0..spec.queue_size * dim)
            .map(|_| StandardNormal.sample(&mut r))
            .collect();
        let queue = normalize_rows(&raw, dim)
            .0
            .into_iter()
            .map(|v| v as f32)
            .collect();
        SslState {
            ema: theta.to_vec(),
            queue,
            queue_ptr: 0,
        }
    }

    /// As checkpoint tensors (`state/ema`, `state/queue`, `state/queue_ptr`).
    pub fn to_tensors(&self) -> BTreeMap<String, Vec<f32>> {
        let mut t = BTreeMap::new();
        if !self.queue.is_empty() {
            t.insert("ema".into(), self.ema.clone());
            t.insert("queue".into(), self.queue.clone());
            // Exact in f32 up to 2^24 rows.
            t.insert("queue_ptr".into(), vec![self.queue_ptr as f32]);
        }
        t
    }

    /// From checkpoint tensors; `None` when they do not fit the configuration.
    pub fn from_tensors(
        t: &BTreeMap<String, Vec<f32>>,
        spec: &SslSpec,
        learner: &Learner,
    ) -> Option<Self> {
        if !spec.method.uses_queue() {
            return Some(SslState::default());
        }
        let ema = t.get("ema")?.clone();
        let queue = t.get("queue")?.clone();
        let ptr = *t.get("queue_ptr")?.first()? as usize;
        (ema.len() == learner.num_params()
            && queue.len() == spec.queue_size * learner.spec.proj_dim
            && ptr < spec.queue_size)
            .then_some(SslState {
                ema,
                queue,
                queue_ptr: ptr,
            })
    }
}

/// What one step reports.
pub struct StepResult<F> {
    pub grad: Vec<F>,
    pub loss: f64,
}

/// Where the predictor tensor `name` lies in the flat parameters (the learner was built with one).
fn predictor_range(learner: &Learner, name: &str) -> std::ops::Range<usize> {
    learner
        .layout
        .get(name)
        .expect("predictor in the layout")
        .range()
}

/// The predictor MLP on `z [B, P]`: `pred.2(relu(pred.0(z)))`; returns the output and the hidden layer.
fn predictor_forward<F: Real>(
    learner: &Learner,
    theta: &[F],
    z: &[F],
    b: usize,
) -> (Vec<F>, Vec<F>) {
    let p = learner.spec.proj_dim;
    let r = |n: &str| predictor_range(learner, n);
    let h = activation::relu(&linear::forward(
        z,
        &theta[r("pred.0.weight")],
        &theta[r("pred.0.bias")],
        b,
        p,
        p,
    ));
    let out = linear::forward(
        &h,
        &theta[r("pred.2.weight")],
        &theta[r("pred.2.bias")],
        b,
        p,
        p,
    );
    (out, h)
}

/// Backward of [`predictor_forward`]: adds the predictor's parameter gradient into `grad` and
/// returns the gradient with respect to its input.
fn predictor_backward<F: Real>(
    learner: &Learner,
    theta: &[F],
    z: &[F],
    h: &[F],
    dout: &[F],
    b: usize,
    grad: &mut [F],
) -> Vec<F> {
    let p = learner.spec.proj_dim;
    let r = |n: &str| predictor_range(learner, n);
    let l2 = linear::backward(dout, h, &theta[r("pred.2.weight")], b, p, p);
    grad[r("pred.2.weight")].copy_from_slice(&l2.weight);
    grad[r("pred.2.bias")].copy_from_slice(&l2.bias);
    let dh = activation::relu_backward(&l2.input, h);
    let l0 = linear::backward(&dh, z, &theta[r("pred.0.weight")], b, p, p);
    grad[r("pred.0.weight")].copy_from_slice(&l0.weight);
    grad[r("pred.0.bias")].copy_from_slice(&l0.bias);
    l0.input
}

fn add<F: Real>(dst: &mut [F], src: &[F]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// Moves the momentum encoder towards theta: `ema <- m * ema + (1 - m) * theta`.
pub fn update_ema<F: Real>(state: &mut SslState, theta: &[F], momentum: f64) {
    for (e, &t) in state.ema.iter_mut().zip(theta) {
        *e = (momentum * *e as f64 + (1.0 - momentum) * t.re()) as f32;
    }
}

fn to_real<F: Real>(v: &[f32]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x as f64)).collect()
}

/// Loss and gradient of one step on the two views `x1, x2 [B, C, H, W]`; for MoCo and PsCo the
/// momentum encoder is updated first and the new keys enter the queue after the loss, as in
/// PsCo's code. `state` is changed only by those two updates.
/// Generic over the float type so that the f64 finite-difference test checks the very code that
/// trains in f32 (the state is kept in f32, as it is stored).
pub fn step<F: Real>(
    spec: &SslSpec,
    learner: &Learner,
    theta: &[F],
    state: &mut SslState,
    x1: &[F],
    x2: &[F],
) -> StepResult<F> {
    let b = x1.len() / learner.image_len();
    let dim = learner.spec.proj_dim;
    let no_logits = vec![F::default(); b * learner.spec.ways];
    let tau = spec.temperature;
    match spec.method {
        SslMethod::Simclr | SslMethod::Swav | SslMethod::Barlowtwins => {
            let ((o1, t1), (o2, t2)) = rayon::join(
                || learner.forward(theta, x1, true),
                || learner.forward(theta, x2, true),
            );
            let z1 = o1.projection.expect("projection requested");
            let z2 = o2.projection.expect("projection requested");
            let mut extra = None;
            let (loss, dz1, dz2) = match spec.method {
                SslMethod::Barlowtwins => {
                    losses::barlow_twins(&z1, &z2, dim, spec.redundancy_weight)
                }
                m => {
                    let z: Vec<F> = z1.iter().chain(&z2).copied().collect();
                    let (l, dz) = if m == SslMethod::Simclr {
                        losses::nt_xent(&z, dim, tau)
                    } else {
                        let r = learner
                            .layout
                            .get("prototypes.weight")
                            .expect("swav learner has prototypes")
                            .range();
                        let (l, dz, dc) = losses::swav(
                            &z,
                            &theta[r.clone()],
                            dim,
                            SwavSpec {
                                tau,
                                eps: spec.sinkhorn_eps,
                                iters: spec.sinkhorn_iters,
                            },
                        );
                        extra = Some((r, dc));
                        (l, dz)
                    };
                    let (a, bb) = dz.split_at(b * dim);
                    (l, a.to_vec(), bb.to_vec())
                }
            };
            let (mut g1, g2) = rayon::join(
                || learner.backward(theta, &t1, &no_logits, Some(&dz1)),
                || learner.backward(theta, &t2, &no_logits, Some(&dz2)),
            );
            add(&mut g1, &g2);
            if let Some((r, dc)) = extra {
                add(&mut g1[r], &dc);
            }
            StepResult {
                grad: g1,
                loss: loss.re(),
            }
        }
        SslMethod::Moco | SslMethod::Psco => {
            update_ema(state, theta, spec.momentum);
            let ema: Vec<F> = to_real(&state.ema);
            let queue: Vec<F> = to_real(&state.queue);
            let ema = &ema;
            let ((o1, t1), (ok, _)) = rayon::join(
                || learner.forward(theta, x1, true),
                || learner.infer(ema, x2, true),
            );
            let z1 = o1.projection.expect("projection requested");
            let (keys, _) = normalize_rows(&ok.projection.expect("projection requested"), dim);
            let (q, hidden) = if learner.spec.predictor {
                let (q, h) = predictor_forward(learner, theta, &z1, b);
                (q, Some(h))
            } else {
                (z1.clone(), None)
            };
            let (loss, dq) = if spec.method == SslMethod::Moco {
                losses::info_nce(&q, &keys, &queue, dim, tau)
            } else {
                let spec = PscoSpec {
                    shots: spec.shots,
                    tau,
                    tau2: spec.temperature2,
                    eps: spec.sinkhorn_eps,
                    iters: spec.sinkhorn_iters,
                };
                let k64: Vec<f64> = keys.iter().map(|v| v.re()).collect();
                let q64: Vec<f64> = state.queue.iter().map(|&v| v as f64).collect();
                let support = losses::psco_support(&k64, &q64, dim, &spec);
                losses::psco(&q, &keys, &queue, &support, dim, &spec)
            };
            let mut grad = vec![F::default(); learner.num_params()];
            let dz1 = match &hidden {
                Some(h) => predictor_backward(learner, theta, &z1, h, &dq, b, &mut grad),
                None => dq,
            };
            add(
                &mut grad,
                &learner.backward(theta, &t1, &no_logits, Some(&dz1)),
            );
            let keys32: Vec<f32> = keys.iter().map(|v| v.re() as f32).collect();
            enqueue(state, &keys32, dim);
            StepResult {
                grad,
                loss: loss.re(),
            }
        }
    }
}

/// Writes `keys [B, D]` into the queue at its pointer (wrapping), oldest first out.
fn enqueue(state: &mut SslState, keys: &[f32], dim: usize) {
    let q = state.queue.len() / dim;
    for row in keys.chunks(dim) {
        state.queue[state.queue_ptr * dim..(state.queue_ptr + 1) * dim].copy_from_slice(row);
        state.queue_ptr = (state.queue_ptr + 1) % q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrainConfig, TrainMethod};
    use crate::engine::gradcheck::test_values;
    use crate::model::ArchSpec;

    fn setup(method: TrainMethod) -> (SslSpec, u64, Learner, Vec<f64>, Vec<f64>, Vec<f64>) {
        let cfg = {
            let mut edited = TrainConfig::for_method(method);
            edited.task.images_per_batch = 4;
            edited.ssl.queue_size = 6;
            edited.ssl.prototypes = 5;
            edited.ssl.shots = 2;
            edited.inner.temperature = 0.5;
            edited
        };
        let l = Learner::new(ArchSpec {
            hidden: 3,
            proj_dim: 4,
            prototypes: if method == TrainMethod::Swav { 5 } else { 0 },
            predictor: method.uses_queue(),
            ..ArchSpec::conv4(1, 16, 4)
        })
        .unwrap();
        let jitter = test_values(l.num_params(), 60);
        let p: Vec<f64> = l
            .init(&mut rng::derive(2, &[1]))
            .into_iter()
            .zip(jitter)
            .map(|(v, j)| v as f64 + 0.05 * j)
            .collect();
        let x1 = test_values(4 * l.image_len(), 61);
        let x2 = test_values(4 * l.image_len(), 62);
        (cfg.ssl_spec().unwrap(), cfg.run.seed, l, p, x1, x2)
    }

    /// The step's loss in f64 with the momentum encoder, queue and SwAV codes held fixed.
    #[allow(clippy::too_many_arguments)]
    fn loss_at(
        cfg: &SslSpec,
        l: &Learner,
        p: &[f64],
        x1: &[f64],
        x2: &[f64],
        ema: &[f64],
        queue: &[f64],
        codes: &[f64],
    ) -> f64 {
        let dim = l.spec.proj_dim;
        let (o1, _) = l.forward(p, x1, true);
        let (o2, _) = l.forward(p, x2, true);
        let (z1, z2) = (o1.projection.unwrap(), o2.projection.unwrap());
        match cfg.method {
            SslMethod::Simclr => losses::nt_xent(&[z1, z2].concat(), dim, cfg.temperature).0,
            SslMethod::Barlowtwins => losses::barlow_twins(&z1, &z2, dim, cfg.redundancy_weight).0,
            SslMethod::Swav => {
                let r = l.layout.get("prototypes.weight").unwrap().range();
                losses::swav_given_codes(&[z1, z2].concat(), &p[r], codes, dim, cfg.temperature).0
            }
            _ => {
                let (ok, _) = l.infer(ema, x2, true);
                let keys = normalize_rows(&ok.projection.unwrap(), dim).0;
                let q = if l.spec.predictor {
                    let r = |n: &str| l.layout.get(n).unwrap().range();
                    let h = activation::relu(&linear::forward(
                        &z1,
                        &p[r("pred.0.weight")],
                        &p[r("pred.0.bias")],
                        4,
                        dim,
                        dim,
                    ));
                    linear::forward(
                        &h,
                        &p[r("pred.2.weight")],
                        &p[r("pred.2.bias")],
                        4,
                        dim,
                        dim,
                    )
                } else {
                    z1
                };
                if cfg.method == SslMethod::Moco {
                    losses::info_nce(&q, &keys, queue, dim, cfg.temperature).0
                } else {
                    let spec = PscoSpec {
                        shots: cfg.shots,
                        tau: cfg.temperature,
                        tau2: cfg.temperature2,
                        eps: cfg.sinkhorn_eps,
                        iters: cfg.sinkhorn_iters,
                    };
                    let support = losses::psco_support(&keys, queue, dim, &spec);
                    losses::psco(&q, &keys, queue, &support, dim, &spec).0
                }
            }
        }
    }

    #[test]
    fn every_baselines_step_gradient_matches_finite_differences_of_its_loss() {
        for method in [
            TrainMethod::Simclr,
            TrainMethod::Swav,
            TrainMethod::Barlowtwins,
            TrainMethod::Moco,
            TrainMethod::Psco,
        ] {
            let (cfg, seed, l, p, x1, x2) = setup(method);
            let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            let mut state = SslState::new(&cfg, seed, &l, &p32);
            let before = state.clone();
            let got = step(&cfg, &l, &p, &mut state, &x1, &x2);
            // The loss is differenced with the momentum encoder and queue the step saw.
            let mut seen = before.clone();
            update_ema(&mut seen, &p, cfg.momentum);
            let ema: Vec<f64> = seen.ema.iter().map(|&v| v as f64).collect();
            let queue: Vec<f64> = before.queue.iter().map(|&v| v as f64).collect();
            let codes = if method == TrainMethod::Swav {
                let (o1, _) = l.forward(&p, &x1, true);
                let (o2, _) = l.forward(&p, &x2, true);
                let r = l.layout.get("prototypes.weight").unwrap().range();
                losses::swav_codes(
                    &[o1.projection.unwrap(), o2.projection.unwrap()].concat(),
                    &p[r],
                    l.spec.proj_dim,
                    SwavSpec {
                        tau: cfg.temperature,
                        eps: cfg.sinkhorn_eps,
                        iters: cfg.sinkhorn_iters,
                    },
                )
            } else {
                Vec::new()
            };
            let numeric = crate::engine::gradcheck::numeric_gradient(
                &mut |v| loss_at(&cfg, &l, v, &x1, &x2, &ema, &queue, &codes),
                &p,
                1e-6,
            );
            let err = crate::engine::gradcheck::max_relative_error(&got.grad, &numeric, 1e-8);
            assert!(
                err < 1e-6,
                "{}: step gradient differs from finite differences by {err:e}",
                method.as_str()
            );
        }
    }

    #[test]
    fn the_queue_takes_the_new_keys_oldest_first_and_wraps() {
        let (cfg, seed, l, p, x1, x2) = setup(TrainMethod::Moco);
        let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        let mut state = SslState::new(&cfg, seed, &l, &p32);
        let x1: Vec<f32> = x1.iter().map(|&v| v as f32).collect();
        let x2: Vec<f32> = x2.iter().map(|&v| v as f32).collect();
        step(&cfg, &l, &p32, &mut state, &x1, &x2);
        assert_eq!(state.queue_ptr, 4);
        step(&cfg, &l, &p32, &mut state, &x1, &x2);
        assert_eq!(
            state.queue_ptr, 2,
            "6 rows, 8 keys written: wrapped to row 2"
        );
        let restored = SslState::from_tensors(&state.to_tensors(), &cfg, &l).unwrap();
        assert_eq!(restored, state);
    }
}

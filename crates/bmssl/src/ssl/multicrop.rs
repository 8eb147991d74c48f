//! SwAV's multi-crop (Caron et al. 2020, section 3.2; issue 21), an option of `--method swav`:
//! besides the two full-size views of each image, `crops` small, low-resolution crops. Only the two
//! full views are assigned codes; every view (small ones included) predicts the code of each full
//! view other than itself ([`crate::losses::ssl::swav_multicrop_given_codes`]).
//!
//! ```text
//! x1, x2 [B, C, H, W] -> f -> proj -> z1, z2          codes q1, q2 (Sinkhorn, no gradient)
//! s_1 .. s_V [B, C, h, h] -> f -> proj -> zs_1 .. zs_V  (h < H: the `[multicrop]` size)
//! loss = -1/B 1/(V+1) sum_{i in 1,2} sum_{v != i} q_i . log softmax(z_v c^T / tau)
//! ```
//!
//! The small crops go through the same parameters: the backbone's last feature map must have the
//! same side at both sizes (Conv4 floors 28 -> 14 -> 7 -> 3 -> 1 and 16 -> 8 -> 4 -> 2 -> 1), so
//! the default small side is the smallest one that gives the full size's map (16 for 28-pixel
//! Omniglot, 64 for Conv5 at 84, but 80 for Conv4 at 84, whose 5x5 map leaves little room). Where
//! no smaller side does (Conv4 at 32 pixels: its 2x2 map needs 32 to 47) the option is refused;
//! SwAV's ResNet pools globally and has no such limit. Each view is its own batch-norm batch, as in the two-view step
//! ([`crate::ssl::step`]). The small crops are drawn from their own generators (path
//! `[STREAM_TASKS, step, 2, image]`), so the full views are the draws of a run without the option.
//!
//! The `[multicrop]` keys and their validation are a section of the run configuration
//! ([`crate::config::MultiCropConfig`], re-exported here); here are the small side, the small
//! crops' learner, augmenter and draws, and the step.

use crate::augment::{AugmentConfig, Augmenter, RandomResizedCrop};
use crate::data::UnlabelledPool;
use crate::engine::Real;
use crate::losses::ssl::{self as losses, SwavSpec};
use crate::model::{ArchSpec, Learner};
use crate::ssl::step::{SslSpec, StepResult};
use crate::{Error, Result};
use rayon::prelude::*;

pub use crate::config::{MultiCropConfig, MAX_CROPS};

/// The side of the small crops for this architecture, or why there is none.
pub fn small_size(cfg: &MultiCropConfig, arch: &ArchSpec) -> Result<usize> {
    let same_map = |s: usize| {
        ArchSpec {
            image_size: s,
            ..arch.clone()
        }
        .feature_side()
            == arch.feature_side()
    };
    match cfg.size {
        Some(s) if s >= arch.image_size || !same_map(s) => Err(Error::config(
            "multicrop.size",
            format!(
                "{s} pixels: small crops must be smaller than the {} -pixel views and give the same {}x{} last feature map (the parameters are shared)",
                arch.image_size,
                arch.feature_side(),
                arch.feature_side()
            ),
        )),
        Some(s) => Ok(s),
        None => (1..arch.image_size).find(|&s| same_map(s)).ok_or_else(|| {
            Error::config(
                "multicrop.crops",
                format!(
                    "no side below {} pixels gives {:?}'s {}x{} last feature map, so small crops cannot share its parameters",
                    arch.image_size,
                    arch.backbone,
                    arch.feature_side(),
                    arch.feature_side()
                ),
            )
        }),
    }
}

/// The learner that runs the small crops: the same parameter layout at the small side.
pub fn small_learner(learner: &Learner, size: usize) -> Result<Learner> {
    let small = Learner::new(ArchSpec {
        image_size: size,
        ..learner.spec.clone()
    })?;
    if small.num_params() != learner.num_params() {
        return Err(Error::config(
            "multicrop.size",
            format!("{size} pixels changes the parameter count"),
        ));
    }
    Ok(small)
}

/// The small crops' augmenter: the run's augmentation with its crop replaced by the small range.
pub fn augmenter(full: &AugmentConfig, cfg: &MultiCropConfig, size: usize) -> Augmenter {
    let ratio = full.crop.map_or((3.0 / 4.0, 4.0 / 3.0), |c| c.ratio);
    Augmenter::new(
        AugmentConfig {
            crop: Some(RandomResizedCrop {
                scale: (cfg.scale_min, cfg.scale_max),
                ratio,
            }),
            ..*full
        },
        size,
        size,
    )
}

/// The small crops of meta-step `step`'s batch (`n` images, the sources of its full views):
/// `[crops, n, C, size, size]`, crop-major (all images' first crop, then the second, ...).
pub fn crops(
    pool: &UnlabelledPool,
    n: usize,
    aug: &Augmenter,
    crops: usize,
    seed: u64,
    step: u64,
) -> Vec<f32> {
    let batch_index = step - 1;
    let chosen = crate::tasks::batch_images(pool.len(), n, seed, batch_index);
    let per_image = crate::tasks::batch_views(pool, &chosen, aug, crops, seed, batch_index, 2);
    (0..crops)
        .flat_map(|v| {
            per_image
                .iter()
                .flat_map(move |c| c[v].data.iter().copied())
        })
        .collect()
}

/// Loss and gradient of one multi-crop SwAV step: the full views `x1, x2 [B, C, H, W]` through
/// `learner`, the small crops `small [V, B, C, h, h]` through `small_learner` (same parameters).
pub fn step<F: Real>(
    spec: &SslSpec,
    learner: &Learner,
    small_learner: &Learner,
    theta: &[F],
    x1: &[F],
    x2: &[F],
    small: &[F],
) -> StepResult<F> {
    let b = x1.len() / learner.image_len();
    let v = small.len() / (b * small_learner.image_len()).max(1);
    let dim = learner.spec.proj_dim;
    let mut inputs: Vec<(&Learner, &[F])> = vec![(learner, x1), (learner, x2)];
    inputs.extend(
        small
            .chunks_exact(b * small_learner.image_len())
            .map(|x| (small_learner, x)),
    );
    let passes: Vec<_> = inputs
        .par_iter()
        .map(|(l, x)| l.forward(theta, x, true))
        .collect();
    let z: Vec<F> = passes
        .iter()
        .flat_map(|(o, _)| o.projection.as_ref().expect("projection requested").clone())
        .collect();
    let r = learner
        .layout
        .get("prototypes.weight")
        .expect("swav learner has prototypes")
        .range();
    let swav = SwavSpec {
        tau: spec.temperature,
        eps: spec.sinkhorn_eps,
        iters: spec.sinkhorn_iters,
    };
    let views = 2 + v;
    let codes = losses::swav_multicrop_codes(&z, &theta[r.clone()], dim, views, swav);
    let (loss, dz, dc) =
        losses::swav_multicrop_given_codes(&z, &theta[r.clone()], &codes, dim, views, swav.tau);
    let no_logits = vec![F::default(); b * learner.spec.ways];
    let grads: Vec<Vec<F>> = inputs
        .par_iter()
        .zip(&passes)
        .zip(dz.par_chunks(b * dim))
        .map(|(((l, _), (_, tape)), dzv)| l.backward(theta, tape, &no_logits, Some(dzv)))
        .collect();
    // Summed in view order, whatever the thread count.
    let mut grad = grads[0].clone();
    for g in &grads[1..] {
        for (a, &x) in grad.iter_mut().zip(g) {
            *a += x;
        }
    }
    for (a, &x) in grad[r].iter_mut().zip(&dc) {
        *a += x;
    }
    StepResult {
        grad,
        loss: loss.re(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrainConfig, TrainMethod};
    use crate::engine::gradcheck::{max_relative_error, numeric_gradient, test_values};
    use crate::rng;

    fn swav_cfg(m: MultiCropConfig) -> TrainConfig {
        TrainConfig {
            multicrop: m,
            ..TrainConfig::for_method(TrainMethod::Swav)
        }
    }

    fn on(crops: usize) -> MultiCropConfig {
        MultiCropConfig {
            crops,
            ..MultiCropConfig::default()
        }
    }

    #[test]
    fn the_small_side_is_the_smallest_with_the_same_last_feature_map() {
        assert_eq!(small_size(&on(6), &ArchSpec::conv4(1, 28, 5)).unwrap(), 16);
        let conv5 = ArchSpec {
            backbone: crate::model::Backbone::Conv5,
            ..ArchSpec::conv4(3, 84, 5)
        };
        assert_eq!(small_size(&on(6), &conv5).unwrap(), 64);
        // Conv4 floors 80 -> 40 -> 20 -> 10 -> 5 as 84 does; at 32 (a 2x2 map) nothing smaller fits.
        assert_eq!(small_size(&on(6), &ArchSpec::conv4(3, 84, 5)).unwrap(), 80);
        let err = small_size(&on(6), &ArchSpec::conv4(3, 32, 5)).unwrap_err();
        assert!(err.to_string().contains("multicrop.crops"), "{err}");
        let mut m = on(6);
        m.size = Some(12);
        let err = small_size(&m, &ArchSpec::conv4(1, 28, 5)).unwrap_err();
        assert!(err.to_string().contains("multicrop.size"), "{err}");
        m.size = Some(20);
        assert_eq!(small_size(&m, &ArchSpec::conv4(1, 28, 5)).unwrap(), 20);
    }

    #[test]
    fn the_section_is_refused_for_other_methods_and_out_of_bounds() {
        assert!(swav_cfg(on(6)).validate().is_ok());
        assert!(swav_cfg(MultiCropConfig::default()).validate().is_ok());
        let simclr = TrainConfig {
            multicrop: on(6),
            ..TrainConfig::for_method(TrainMethod::Simclr)
        };
        let err = simclr.validate().unwrap_err().to_string();
        assert!(err.contains("--method swav"), "{err}");
        assert!(swav_cfg(on(MAX_CROPS + 1)).validate().is_err());
        let mut m = on(6);
        m.crops = 0;
        m.size = Some(16);
        assert!(swav_cfg(m).validate().is_err(), "keys without crops");
        let mut m = on(6);
        m.scale_min = 0.5;
        m.scale_max = 0.1;
        let err = swav_cfg(m).validate().unwrap_err().to_string();
        assert!(err.contains("scale_min"), "{err}");
    }

    fn learners() -> (Learner, Learner) {
        let spec = ArchSpec {
            hidden: 3,
            proj_dim: 4,
            prototypes: 5,
            ..ArchSpec::conv4(1, 20, 4)
        };
        let full = Learner::new(spec).unwrap();
        let small = small_learner(&full, 16).unwrap();
        (full, small)
    }

    #[test]
    fn the_step_gradient_matches_finite_differences_of_the_multicrop_loss() {
        let (l, s) = learners();
        let (b, v) = (4, 2);
        let spec = swav_cfg(on(v)).ssl_spec().unwrap();
        let jitter = test_values(l.num_params(), 60);
        let p: Vec<f64> = l
            .init(&mut rng::derive(2, &[1]))
            .into_iter()
            .zip(jitter)
            .map(|(x, j)| x as f64 + 0.05 * j)
            .collect();
        let x1 = test_values(b * l.image_len(), 61);
        let x2 = test_values(b * l.image_len(), 62);
        let xs = test_values(v * b * s.image_len(), 63);
        let got = step(&spec, &l, &s, &p, &x1, &x2, &xs);
        let r = l.layout.get("prototypes.weight").unwrap().range();
        let z_at = |p: &[f64]| -> Vec<f64> {
            let mut z = Vec::new();
            for x in [&x1, &x2] {
                z.extend(l.forward(p, x, true).0.projection.unwrap());
            }
            for x in xs.chunks(b * s.image_len()) {
                z.extend(s.forward(p, x, true).0.projection.unwrap());
            }
            z
        };
        let swav = SwavSpec {
            tau: spec.temperature,
            eps: spec.sinkhorn_eps,
            iters: spec.sinkhorn_iters,
        };
        // The codes are targets: held at the unperturbed point.
        let codes = losses::swav_multicrop_codes(&z_at(&p), &p[r.clone()], 4, 2 + v, swav);
        let numeric = numeric_gradient(
            &mut |q| {
                losses::swav_multicrop_given_codes(
                    &z_at(q),
                    &q[r.clone()],
                    &codes,
                    4,
                    2 + v,
                    swav.tau,
                )
                .0
            },
            &p,
            1e-6,
        );
        let err = max_relative_error(&got.grad, &numeric, 1e-8);
        assert!(err < 1e-6, "multi-crop step gradient off by {err:e}");
    }

    #[test]
    fn the_step_gives_the_same_bits_on_one_and_two_threads() {
        let (l, s) = learners();
        let spec = swav_cfg(on(3)).ssl_spec().unwrap();
        let p = l.init(&mut rng::derive(3, &[1]));
        let f = |seed: u64, len: usize| -> Vec<f32> {
            test_values(len, seed)
                .into_iter()
                .map(|x| x as f32)
                .collect()
        };
        let (x1, x2, xs) = (
            f(1, 4 * l.image_len()),
            f(2, 4 * l.image_len()),
            f(3, 12 * s.image_len()),
        );
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| step(&spec, &l, &s, &p, &x1, &x2, &xs))
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.loss.to_bits(), two.loss.to_bits());
        assert_eq!(one.grad, two.grad);
    }
}

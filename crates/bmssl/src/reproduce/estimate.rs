//! How long a plan takes on the reference machine (the project's 2-core AVX2 EPYC at 2.45 GHz,
//! both cores for one process): a cost model in *image passes* (a forward + backward pass of one
//! 28x28 image through Conv4), calibrated on measured speeds.
//!
//! | work | image passes |
//! |---|---|
//! | inner step on S support views | S (plus 3 S for its Hessian-vector product in a second-order meta-gradient) |
//! | BMSSL target: delta steps on S, then the prediction on Q query views | delta S + Q / 2 (+ Q for the query-step target) |
//! | outer gradient at w_L on Q query views | Q (+ Q for the additive loss's query loss; + Q / 2 + Q for a similarity target) |
//! | ProtoNet / one-level (M2) task | S + Q (one pass, no inner loop) |
//! | adapt-mode test episode (w ways, k shots, q queries) | L w k + w q / 2 |
//! | proto-mode test episode | (w k + w q) / 2 |
//!
//! Calibration: BMSSL at its defaults (4 tasks of 5 support and 15 query views, L = delta = 5) is
//! 590 passes per meta-step and ran at 3.04 meta-steps/s on the reference machine with the f32 fast
//! convolutions (part 1 of `docs/results/reproduce-small-2026-12-04`, nothing else running), so one
//! pass costs about 0.56 ms. (The first calibration, 1.2 ms from 1.42 meta-steps/s before the fast
//! convolutions, predicted 118 minutes for `small`; it took 66.5.) With this constant the model
//! predicts the parts of that run that ran alone (parts 1-7 and 18-21) to within a minute each;
//! the SSL baselines and the augmentation levels, which ran beside another process, took up to
//! 2.3x their prediction (PsCo: 3 min predicted, 7 min). It over-predicts evaluations (5w1s
//! adapt, 2000 episodes: 70 s predicted, 38 s measured), a small share of every part.
//! Costs scale with the image area; another machine scales everything by one factor.
//!
//! CACTUs parts add their embedding (a SimCLR run of `embedding_steps` steps in the same passes, then
//! one forward pass over the pool) and their clustering, which is not image passes: P partitions of
//! k-means++ seeding plus `iterations` Lloyd iterations over the pool's 64-feature rows, timed by
//! `cargo run --release -p bmssl --example kmeans_bench` (82,240 x 64, k = 500, one thread on the
//! project's 2-core Xeon: seeding 2.97 s, 0.11 s per Lloyd iteration). At `small` the clustering of
//! each CACTUs part (P = 100, k = 500, 30 iterations) is about 10 minutes of the estimate.
//!
//! Beside the passes, every part has a fixed cost ([`PART_OVERHEAD_SECONDS`]: its run directory,
//! checkpoints, plots, result files and thread pool): the `tiny` budget (22 parts of 2 meta-steps
//! and 10 episodes) took 58 s on the reference machine where the passes alone predicted 24 s, so
//! about 1.5 s per part. It is noise for `small` and `full` and most of `tiny`.

use super::plan::{Part, Plan};
use crate::config::{TrainConfig, TrainMethod};
use crate::eval::{Mode, Setting};
use crate::meta::{OuterLoss, Target};

/// Seconds per image pass on the reference machine.
pub const SECONDS_PER_IMAGE_PASS: f64 = 0.56e-3;

/// Fixed seconds of every part beside its image passes (see the module's comment).
pub const PART_OVERHEAD_SECONDS: f64 = 1.5;

/// Omniglot's unlabelled training pool (1028 characters x 4 rotations x 20 drawers): what a plan's
/// CACTUs parts embed and cluster.
const CACTUS_POOL: f64 = 82_240.0;
/// k-means seeding, seconds per (point, centre) pair at 64 features (see the module's comment).
const SEEDING_SECONDS_PER_POINT_CENTRE: f64 = 7.2e-8;
/// A Lloyd iteration, seconds per multiply-add of its point-centre distances.
const LLOYD_SECONDS_PER_MULTIPLY_ADD: f64 = 4.2e-11;

/// Seconds of a CACTUs part's embedding and clustering (0 for every other method).
pub fn cactus_seconds(cfg: &TrainConfig) -> f64 {
    if !crate::cactus::is_cactus(cfg.method) {
        return 0.0;
    }
    let c = &cfg.cactus;
    let simclr = match c.embedding {
        Some(_) => 0.0,
        None => {
            let e = crate::cactus::embedding_config(cfg, CACTUS_POOL as usize);
            e.outer.meta_steps as f64 * meta_step_passes(&e)
        }
    };
    let embed_pass = CACTUS_POOL / 2.0 * area(cfg);
    let (n, k, d) = (CACTUS_POOL, c.clusters as f64, 64.0);
    let partition = SEEDING_SECONDS_PER_POINT_CENTRE * n * k
        + LLOYD_SECONDS_PER_MULTIPLY_ADD * c.iterations as f64 * n * k * d;
    (simclr + embed_pass) * SECONDS_PER_IMAGE_PASS + c.partitions as f64 * partition
}

/// Image passes of one meta-step of `cfg`.
pub fn meta_step_passes(cfg: &TrainConfig) -> f64 {
    let ways = cfg.ways() as f64;
    let s = ways * cfg.task.support_views as f64;
    let q = ways * cfg.task.query_views as f64;
    let l = cfg.inner.inner_steps as f64;
    let hvp = if cfg.outer.first_order { 0.0 } else { 3.0 };
    let inner = l * s * (1.0 + hvp);
    let per_task = match cfg.method {
        TrainMethod::Bmssl => {
            let extra = if cfg.bootstrap.target == Target::QueryStep {
                cfg.bootstrap.target_query_steps as f64 * q
            } else {
                0.0
            };
            // The additive loss's query-loss pass; the similarity target's prediction and its KL's pass.
            let additive = if cfg.bootstrap.outer_loss == OuterLoss::Additive {
                q
            } else {
                0.0
            };
            let similarity = if cfg.bootstrap.similarity_weight > 0.0 {
                q / 2.0 + q
            } else {
                0.0
            };
            inner
                + cfg.bootstrap.bootstrap_steps as f64 * s
                + q / 2.0
                + extra
                + q
                + additive
                + similarity
        }
        TrainMethod::Metassl | TrainMethod::Maml | TrainMethod::Umtra | TrainMethod::CactusMaml => {
            inner + q
        }
        TrainMethod::Scratch => 0.0,
        // ProtoNet, one-level (M2), and any method added later that takes one pass over its views.
        _ => s + q,
    };
    per_task * cfg.task.tasks_per_batch as f64 * area(cfg)
}

fn area(cfg: &TrainConfig) -> f64 {
    (cfg.data.image_size * cfg.data.image_size) as f64 / (28.0 * 28.0)
}

/// Image passes of one test episode.
pub fn episode_passes(mode: Mode, setting: Setting, queries: usize, inner_steps: usize) -> f64 {
    let support = (setting.ways * setting.shots) as f64;
    let query = (setting.ways * queries) as f64;
    match mode {
        Mode::Adapt => inner_steps as f64 * support + query / 2.0,
        Mode::Proto => (support + query) / 2.0,
    }
}

/// Predicted seconds of one part on the reference machine: training, validation and test.
pub fn part_seconds(plan: &Plan, part: &Part) -> f64 {
    let cfg = &part.config;
    let b = &plan.budget;
    let steps = if cfg.method == TrainMethod::Scratch {
        0
    } else {
        cfg.outer.meta_steps
    };
    let train = steps as f64 * meta_step_passes(cfg);
    let validations = if steps == 0 || cfg.run.validation_episodes < 2 {
        0
    } else {
        // Every `validate_every` meta-steps and at the end (only at the end when 0).
        match cfg.run.validate_every {
            0 => 1,
            every => steps.div_ceil(every),
        }
    };
    let five_one = Setting { ways: 5, shots: 1 };
    let validate = validations as f64
        * cfg.run.validation_episodes as f64
        * episode_passes(
            cfg.run.validation_mode,
            five_one,
            b.queries,
            cfg.inner.inner_steps,
        );
    let test: f64 = part
        .settings
        .iter()
        .map(|&s| {
            b.eval_episodes as f64
                * episode_passes(part.eval_mode, s, b.queries, cfg.inner.inner_steps)
        })
        .sum();
    (train + validate + test * area(cfg)) * SECONDS_PER_IMAGE_PASS
        + cactus_seconds(cfg)
        + PART_OVERHEAD_SECONDS
}

/// Predicted seconds of every part, and their sum.
pub fn plan_seconds(plan: &Plan) -> (Vec<(String, f64)>, f64) {
    let per: Vec<(String, f64)> = plan
        .parts
        .iter()
        .map(|p| (p.id.clone(), part_seconds(plan, p)))
        .collect();
    let total = per.iter().map(|(_, s)| s).sum();
    (per, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::{Budget, PlanOptions};

    #[test]
    fn the_model_matches_its_calibration_and_the_small_budget_fits_in_two_and_a_half_hours() {
        let bmssl = TrainConfig::default().with_paper_bootstrap();
        let per_step = meta_step_passes(&bmssl) * SECONDS_PER_IMAGE_PASS;
        assert!((per_step - 1.0 / 3.04).abs() < 0.01, "{per_step}");
        let plan = Plan::new(Budget::small(), PlanOptions::default()).unwrap();
        let (_, total) = plan_seconds(&plan);
        assert!(total < 2.5 * 3600.0 * 0.8, "small: {total} s predicted");
        let full = Plan::new(Budget::full(), PlanOptions::default()).unwrap();
        assert!(plan_seconds(&full).1 > total);
        // The tiny budget is mostly the parts' fixed costs: 58 s measured before the CACTUs parts
        // joined it (each of those embeds the whole pool, ~25 s, whatever the budget).
        let tiny = Plan::new(Budget::tiny(), PlanOptions::default()).unwrap();
        let cactus: f64 = tiny.parts.iter().map(|p| cactus_seconds(&p.config)).sum();
        let tiny_s = plan_seconds(&tiny).1 - cactus;
        assert!((45.0..75.0).contains(&tiny_s), "tiny: {tiny_s} s predicted");
        assert!(
            (30.0..80.0).contains(&cactus),
            "tiny's CACTUs parts: {cactus} s"
        );
    }

    #[test]
    fn a_cactus_part_counts_its_embedding_and_its_clustering() {
        let plan = Plan::new(Budget::small(), PlanOptions::default()).unwrap();
        let part = plan
            .parts
            .iter()
            .find(|p| p.id == "cactus-protonet")
            .expect("small plans CACTUs-ProtoNet");
        let cactus = cactus_seconds(&part.config);
        // 100 partitions of k = 500 at 30 iterations: ~10 minutes; a 300-step SimCLR on top.
        assert!((500.0..900.0).contains(&cactus), "{cactus} s");
        assert!(part_seconds(&plan, part) > cactus);
        let given = TrainConfig {
            cactus: crate::cactus::CactusConfig {
                embedding: Some("e.safetensors".into()),
                ..part.config.cactus.clone()
            },
            ..part.config.clone()
        };
        assert!(
            cactus_seconds(&given) < cactus,
            "a given embedding is not trained"
        );
        assert_eq!(cactus_seconds(&TrainConfig::default()), 0.0);
    }
}

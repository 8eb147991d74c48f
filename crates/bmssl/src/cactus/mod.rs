//! CACTUs (Hsu, Levine & Finn, ICLR 2019, "Unsupervised Learning via Meta-Learning"): tasks made
//! by clustering an unsupervised embedding of the pool, meta-trained with ProtoNet
//! (`cactus-protonet`) or MAML (`cactus-maml`).
//!
//! 1. Embed the unlabelled pool with an encoder: the backbone features of `cactus.embedding` (a
//!    checkpoint), or, when none is given, of a SimCLR trained first in `RUN_DIR/embedding/` for
//!    `cactus.embedding_steps` steps with SimCLR's own settings (the original used ACAI, BiGAN or
//!    DeepCluster embeddings; `docs/training.md` says why SimCLR here).
//! 2. Run k-means P times (`cactus.partitions`) with k clusters (`cactus.clusters`), partition `p`
//!    on the embedding with each dimension scaled by its own random factor (`cactus.scaling`), so
//!    that the partitions differ ([`partitions`]).
//! 3. Each task: one partition, N of its clusters with at least K + Q members, K + Q images of each
//!    (no augmentation); the clusters are the classes.
//! 4. Meta-train on these tasks exactly as the supervised ProtoNet or MAML baseline trains on
//!    labelled episodes ([`crate::baselines`]).
//!
//! The partitions are part of the run: computed once, saved with a checksum in
//! `RUN_DIR/cactus-partitions.bin` and reused on resume, so a resumed run computes the same bits as
//! an uninterrupted one (and needs neither the embedding nor the clustering again).
//!
//! The `[cactus]` keys and their validation are a section of the run configuration
//! ([`crate::config::CactusConfig`]); here are the embedding (given or trained) and the partition
//! file's life cycle (load or compute, check, save); the clustering itself is [`crate::kmeans`],
//! the tasks [`partitions`], the tests `tests.rs`.

pub mod partitions;

use crate::config::{TrainConfig, TrainMethod};
use crate::data::UnlabelledPool;
use crate::eval::Model;
use crate::train::{Observer, RunDir, StepRecord, TrainingData};
use crate::{Error, Result};
use partitions::{Header, Partitions, TaskSampler};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

pub use crate::config::{CactusConfig, Scaling, MAX_CLUSTERS, MAX_ITERATIONS, MAX_PARTITIONS};

/// Whether a method trains on CACTUs' tasks.
pub fn is_cactus(method: TrainMethod) -> bool {
    method.is_cactus()
}

/// `cfg` (any method) under a `bmssl reproduce` budget of `meta_steps` steps: a CACTUs method's
/// embedding gets the budget's steps (so it is that budget's SimCLR row); below 100 steps (the
/// `tiny` budget, a check of the machinery) a token clustering (P = 2, k = 20, 3 iterations) and
/// 10-way tasks, which a small synthetic pool can serve. Other methods are returned unchanged.
pub fn for_budget(cfg: TrainConfig, meta_steps: u64) -> TrainConfig {
    if !is_cactus(cfg.method) {
        return cfg;
    }
    let mut cfg = TrainConfig {
        cactus: CactusConfig {
            embedding_steps: meta_steps,
            ..cfg.cactus.clone()
        },
        ..cfg
    };
    if meta_steps < 100 {
        cfg.cactus.partitions = 2;
        cfg.cactus.clusters = 20;
        cfg.cactus.iterations = 3;
        if cfg.ways() > 10 {
            cfg.task.images_per_batch = 10 * cfg.task.tasks_per_batch;
        }
    }
    cfg
}

/// The partition file of a run.
pub fn partitions_path(run: &RunDir) -> PathBuf {
    run.root.join("cactus-partitions.bin")
}

/// The configuration of the SimCLR embedding a CACTUs run trains when given none: SimCLR's own
/// settings on the same data and seed, `embedding_steps` steps, batches of 256 (or the whole pool
/// when smaller).
pub fn embedding_config(cfg: &TrainConfig, pool_len: usize) -> TrainConfig {
    let mut e = TrainConfig::for_method(TrainMethod::Simclr);
    e.data.dataset = cfg.data.dataset.clone();
    e.data.split = cfg.data.split.clone();
    e.data.rotations = cfg.data.rotations;
    e.data.image_size = cfg.data.image_size;
    e.data.channels = cfg.data.channels;
    e.outer.backbone = cfg.outer.backbone;
    e.run.seed = cfg.run.seed;
    e.outer.meta_steps = cfg.cactus.embedding_steps;
    e.run.checkpoint_every = cfg.cactus.embedding_steps.min(e.run.checkpoint_every);
    e.run.keep_checkpoints = 1;
    e.run.validate_every = 0;
    e.task.images_per_batch = e.task.images_per_batch.min(pool_len).max(2);
    e
}

/// Forwards the embedding run's progress to the CACTUs run's observer.
struct Nested<'a> {
    outer: &'a mut dyn Observer,
    total: u64,
}

impl Observer for Nested<'_> {
    fn step(&mut self, r: &StepRecord) {
        let every = (self.total / 10).max(1);
        if r.step.is_multiple_of(every) || r.step == self.total {
            self.outer.progress(&format!(
                "CACTUs embedding: SimCLR step {}/{} (loss {:.4})",
                r.step, self.total, r.outer_loss
            ));
        }
    }
    fn warning(&mut self, message: &str) {
        self.outer.warning(&format!("CACTUs embedding: {message}"));
    }
}

/// The embedding model: the given checkpoint, or the SimCLR the run trains (or resumes) in
/// `RUN_DIR/embedding/`. Returns the model and how the partition header names it.
fn embedding_model(
    run: &RunDir,
    cfg: &TrainConfig,
    pool: &UnlabelledPool,
    observer: &mut dyn Observer,
) -> Result<(Model, String)> {
    let (path, name) = match &cfg.cactus.embedding {
        Some(p) => (PathBuf::from(p), p.clone()),
        None => {
            let ecfg = embedding_config(cfg, pool.len());
            observer.progress(&format!(
                "CACTUs embedding: training SimCLR for {} steps in {}",
                ecfg.outer.meta_steps,
                run.root.join("embedding").display()
            ));
            let erun = RunDir::create(&run.root.join("embedding"))?;
            let mut nested = Nested {
                outer: observer,
                total: ecfg.outer.meta_steps,
            };
            let out = crate::train::train(
                &erun,
                &ecfg,
                &TrainingData::Unlabelled(pool.clone()),
                None,
                &mut nested,
            )?;
            (
                out.final_checkpoint,
                format!("simclr:{}", cfg.cactus.embedding_steps),
            )
        }
    };
    let model = Model::from_checkpoint(&crate::checkpoint::load(&path)?)?;
    if model.image_shape() != pool.shape() {
        return Err(Error::config(
            "cactus.embedding",
            format!(
                "{} takes {} images, the pool's are {}",
                path.display(),
                model.image_shape(),
                pool.shape()
            ),
        ));
    }
    Ok((model, name))
}

/// The backbone features of every pool image, `[n, dim]` (batch-norm statistics per batch of 256,
/// as in training).
fn embed_pool(model: &Model, pool: &UnlabelledPool) -> Result<(Vec<f32>, usize)> {
    let opts = crate::embed::EmbedOptions {
        batch_norm: crate::embed::BatchNormStats::Batch,
        ..Default::default()
    };
    let e = crate::embed::embed_with(
        model,
        pool.len(),
        &|i| Cow::Owned(crate::data::image::to_unit_f32(&pool.image(i))),
        &opts,
        &|_| {},
    )?;
    Ok((e.data, e.dim))
}

/// The header a run's configuration asks of its partition file (`embedding` names the embedding).
fn header(cfg: &TrainConfig, images: usize, embedding: String) -> Header {
    Header {
        partitions: cfg.cactus.partitions,
        clusters: cfg.cactus.clusters,
        scaling: cfg.cactus.scaling,
        iterations: cfg.cactus.iterations,
        seed: cfg.run.seed,
        images,
        embedding,
    }
}

/// The run's partitions, ready to draw tasks: loaded from `RUN_DIR/cactus-partitions.bin` when it
/// is there (its checksum verified, its header that of this configuration), otherwise computed
/// (embedding, then P k-means, with progress) and saved there atomically. `None` for a method that
/// is not CACTUs.
pub fn prepare(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &TrainingData,
    observer: &mut dyn Observer,
) -> Result<Option<CactusTasks>> {
    if !is_cactus(cfg.method) {
        return Ok(None);
    }
    let TrainingData::Unlabelled(pool) = data else {
        return Err(Error::config(
            "method",
            format!("{} needs unlabelled data", cfg.method.as_str()),
        ));
    };
    let c = &cfg.cactus;
    if c.clusters > pool.len() {
        return Err(Error::config(
            "cactus.clusters",
            format!(
                "k = {} clusters of a pool of {} images: k must be at most the pool's size",
                c.clusters,
                pool.len()
            ),
        ));
    }
    // The labels (u16) and the cluster member lists (u32) of every partition.
    let need = (c.partitions as u64).saturating_mul(pool.len() as u64 * 6);
    if need > crate::limits::physical_memory() / 2 {
        return Err(Error::config(
            "cactus.partitions",
            format!(
                "{} partitions of {} images need about {} MiB, more than half this machine's memory",
                c.partitions,
                pool.len(),
                need >> 20
            ),
        ));
    }
    let path = partitions_path(run);
    let embedding_name = c
        .embedding
        .clone()
        .unwrap_or_else(|| format!("simclr:{}", c.embedding_steps));
    let want = header(cfg, pool.len(), embedding_name);
    let partitions = if path.exists() {
        let p = Partitions::load(&path)?;
        if p.header != want {
            return Err(Error::config(
                "cactus",
                format!(
                    "{} holds partitions of another configuration ({}); delete it or use another run directory",
                    path.display(),
                    serde_json::to_string(&p.header).unwrap_or_default()
                ),
            ));
        }
        observer.progress(&format!(
            "CACTUs: reusing the {} saved partitions of {}",
            p.header.partitions,
            path.display()
        ));
        p
    } else {
        let (model, name) = embedding_model(run, cfg, pool, observer)?;
        let t0 = Instant::now();
        observer.progress(&format!("CACTUs: embedding {} images", pool.len()));
        let (embedding, dim) = embed_pool(&model, pool)?;
        observer.progress(&format!(
            "CACTUs: embedded {} images ({dim} features) in {:.1}s; clustering {} partitions into k = {} clusters",
            pool.len(),
            t0.elapsed().as_secs_f64(),
            c.partitions,
            c.clusters
        ));
        let t0 = Instant::now();
        let p = Partitions::compute(
            header(cfg, pool.len(), name),
            &embedding,
            dim,
            &mut |p, k| {
                observer.progress(&format!(
                    "CACTUs: partition {}/{} ({} Lloyd iterations, inertia {:.4e}) · {:.0}s",
                    p + 1,
                    c.partitions,
                    k.iterations,
                    k.inertia,
                    t0.elapsed().as_secs_f64()
                ))
            },
        )?;
        p.save(&path)?;
        p
    };
    let sampler = TaskSampler::new(
        partitions,
        cfg.ways(),
        cfg.task.support_views,
        cfg.task.query_views,
    )?;
    Ok(Some(CactusTasks {
        sampler,
        pool: pool.clone(),
    }))
}

/// A run's CACTUs tasks: its partitions and the pool.
pub struct CactusTasks {
    pub sampler: TaskSampler,
    pool: UnlabelledPool,
}

impl CactusTasks {
    /// The tasks of meta-step `step` (1-based).
    pub fn tasks(&self, cfg: &TrainConfig, step: u64) -> Vec<crate::meta::outer::TaskTensors<f32>> {
        self.sampler
            .tasks(cfg.run.seed, step, cfg.task.tasks_per_batch, &|i| {
                crate::data::image::to_unit_f32(&self.pool.image(i))
            })
    }
}

#[cfg(test)]
mod tests;

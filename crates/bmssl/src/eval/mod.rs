//! Few-shot evaluation: mean accuracy over a fixed set of N-way K-shot test episodes, with a 95%
//! confidence interval, as the paper reports it (2000 episodes per setting, following PsCo).
//!
//! Two ways to score an episode ([`Mode`]):
//!
//! * **adapt** (MAML-style, what BMSSL meta-trains for): start from the model's backbone and
//!   projection head with a *fresh* classifier over the episode's ways, take `inner_steps` SGD
//!   steps of the inner loss (cross-entropy + lambda * supervised contrastive) on the support set,
//!   then classify the queries with the adapted weights. The fresh head is zero by default
//!   ([`HeadInit::Zero`]: every class starts equal, as it must, since the trained head's outputs
//!   are permutation-arbitrary pseudo-labels), or Proto-MAML's prototype initialisation
//!   ([`HeadInit::Proto`]: `W_c = 2 mu_c`, `b_c = -|mu_c|^2`, Triantafillou et al. 2020).
//! * **proto** (PsCo's evaluation): frozen features (flattened backbone, or the projection head's
//!   output), L2-normalised; a prototype per class is the mean of its normalised support features;
//!   each query goes to the prototype with the highest cosine similarity.
//!
//! **Batch-norm statistics.** The learner has no running statistics: batch norm always
//! normalises with the statistics of the batch it is given. In both modes the support set is one
//! batch and the query set is another (MAML's, learn2learn's and torchmeta's practice, which the
//! paper's MAML-family baselines follow): query predictions use the statistics of the episode's
//! query batch (transductive within the episode). Each episode is computed on its own, so no
//! statistic ever crosses from one episode to another, and the result does not depend on how
//! episodes are scheduled.
//!
//! **Reproducibility.** Episode `i` is `episodes::sample_episode(.., seed, i)`; every method
//! evaluated with the same seed sees the same episodes (a paired comparison). Episodes run in
//! parallel (rayon, each episode single-threaded) and are combined in episode order, so the
//! result is bit-identical on any number of threads.
//!
//! **Interval.** `mean +- 1.96 * s / sqrt(n)`, `s` the *sample* standard deviation (divides by
//! `n - 1`) of the per-episode accuracies.
//!
//! Over 400 lines: episodes, both scorers (adapt and proto), the interval and about 300 lines of
//! tests; issue 16 plans to split it into `eval/` (episodes, scorer, summary).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::episodes::{sample_episode, Episode};
use crate::meta::inner::sgd_step;
use crate::meta::InnerLoop;
use crate::model::{ArchSpec, Learner};
use crate::objective::{InnerLoss, Objective};
use crate::{Error, Result};

pub use crate::settings::{Features, HeadInit, Mode, Setting};

pub mod record;
pub use record::{EvalRecord, EvalReport};

/// Inner loop of the paper's reference configuration, used for a randomly initialised model (no
/// checkpoint to read it from): alpha = 0.4, L = 5, lambda = 1, tau = 0.5.
pub const DEFAULT_INNER_LOOP: InnerLoop = InnerLoop {
    inner_lr: 0.4,
    inner_steps: 5,
    inner_loss: InnerLoss {
        contrastive_weight: 1.0,
        temperature: 0.5,
        ..InnerLoss::PAPER
    },
};

/// A model to evaluate: an architecture, its weights and how it adapts to a task.
///
/// Built from a checkpoint (its `arch`, `params` and `adapt` settings) or from a random
/// initialisation ([`Model::random`]).
#[derive(Clone, Debug)]
pub struct Model {
    /// Architecture; `arch.ways` is the classifier width used in training (ignored here: every
    /// episode gets a fresh head of its own width).
    pub arch: ArchSpec,
    /// Flat parameters in `Learner::new(arch).layout` order.
    pub params: Vec<f32>,
    /// How it adapts to a task: alpha, L and the inner loss it was meta-trained with (the
    /// checkpoint's `adapt`), the default of [`EvalOptions::adapt`].
    pub inner: InnerLoop,
}

impl Model {
    /// A freshly initialised learner (`Learner::init` with `rng::derive(seed, [STREAM_INIT])`,
    /// as training starts) with the reference inner-loop settings: the "no meta-training"
    /// baseline.
    pub fn random(arch: ArchSpec, seed: u64) -> Result<Self> {
        let learner = Learner::new(arch.clone())?;
        let params = learner.init(&mut crate::rng::derive(seed, &[crate::rng::STREAM_INIT]));
        Ok(Model {
            arch,
            params,
            inner: DEFAULT_INNER_LOOP,
        })
    }

    /// The model a checkpoint holds, adapting as it was meta-trained to.
    pub fn from_checkpoint(ckpt: &crate::checkpoint::Checkpoint) -> Result<Self> {
        let m = Model {
            arch: ckpt.arch.clone(),
            params: ckpt.params.clone(),
            inner: ckpt.adapt,
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks that the parameter vector fits the architecture.
    pub fn validate(&self) -> Result<()> {
        let learner = Learner::new(self.arch.clone())?;
        if self.params.len() != learner.num_params() {
            return Err(Error::shape(
                "model parameters",
                format!(
                    "{} values, but the architecture has {}",
                    self.params.len(),
                    learner.num_params()
                ),
            ));
        }
        Ok(())
    }

    /// The image shape the model takes: `in_channels x image_size x image_size`.
    pub fn image_shape(&self) -> crate::data::ImageShape {
        crate::data::ImageShape::new(
            self.arch.in_channels,
            self.arch.image_size,
            self.arch.image_size,
        )
    }
}

/// How to evaluate (everything but the (ways, shots) pair).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    pub mode: Mode,
    /// Query images per class.
    pub queries: usize,
    /// Episodes per setting (at least 2, for the interval).
    pub episodes: u64,
    /// Episode seed: episode i is `sample_episode(.., seed, i)`.
    pub seed: u64,
    /// Adapt mode: head initialisation.
    pub head: HeadInit,
    /// Adapt mode: the inner loop each episode adapts with (the model's own, [`Model::inner`], by
    /// default; `--adapt-lr`, `--adapt-steps` and `--tune-adapt` change its alpha and L).
    pub adapt: InnerLoop,
    /// Proto mode: which features.
    pub features: Features,
}

impl EvalOptions {
    /// Query images per class in the paper's episodes.
    pub const DEFAULT_QUERIES: usize = 15;

    /// The paper's protocol for `model`: 15 queries per class, 2000 episodes, seed 0, zero head,
    /// the model's own inner steps and learning rate, backbone features.
    pub fn new(mode: Mode, model: &Model) -> Self {
        EvalOptions {
            mode,
            queries: Self::DEFAULT_QUERIES,
            episodes: 2000,
            seed: 0,
            head: HeadInit::Zero,
            adapt: model.inner,
            features: Features::Backbone,
        }
    }

    /// Every option within its bound: episodes (at least 2, for the interval), queries, and in
    /// adapt mode a positive finite learning rate and a bounded number of steps.
    pub fn validate(&self) -> Result<()> {
        crate::limits::count("episodes", self.episodes, 2, crate::limits::MAX_EPISODES)?;
        crate::limits::size("queries", self.queries, 1, crate::limits::MAX_QUERIES)?;
        if self.mode == Mode::Adapt {
            crate::limits::check_adapt(
                "adapt_lr",
                self.adapt.inner_lr,
                "adapt_steps",
                self.adapt.inner_steps,
            )?;
        }
        Ok(())
    }
}

/// Mean, sample standard deviation and 95% half-width of per-episode accuracies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean accuracy in [0, 1].
    pub mean: f64,
    /// Sample standard deviation (divides by n - 1).
    pub std: f64,
    /// `1.96 * std / sqrt(n)`: the interval is `mean +- ci95`.
    pub ci95: f64,
    /// n.
    pub episodes: u64,
}

/// Summarises per-episode accuracies (in order: the sum runs left to right, so the same list
/// gives the same bits). Errors with fewer than 2 values (no sample standard deviation).
pub fn summarize(accuracies: &[f64]) -> Result<Summary> {
    let n = accuracies.len();
    if n < 2 {
        return Err(Error::config(
            "episodes",
            format!("{n} is too few for a confidence interval (need at least 2)"),
        ));
    }
    let mean = accuracies.iter().sum::<f64>() / n as f64;
    let ss: f64 = accuracies.iter().map(|a| (a - mean) * (a - mean)).sum();
    let std = (ss / (n - 1) as f64).sqrt();
    Ok(Summary {
        mean,
        std,
        ci95: 1.96 * std / (n as f64).sqrt(),
        episodes: n as u64,
    })
}

/// The result of one setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingResult {
    pub setting: Setting,
    pub summary: Summary,
    /// Accuracy of each episode, in episode order (for paired comparisons).
    pub accuracies: Vec<f64>,
}

/// Evaluates `model` on `episodes` episodes of `setting` drawn from `data`. `on_episode` is
/// called once per finished episode (from worker threads; for a progress bar).
///
/// Errors before any work if the data's image shape is not the model's, or if the setting cannot
/// be drawn from `data` (too few classes, too few images per class).
pub fn evaluate(
    model: &Model,
    data: &dyn Dataset,
    setting: Setting,
    opts: &EvalOptions,
    on_episode: &(dyn Fn() + Sync),
) -> Result<SettingResult> {
    let scorer = prepare(model, data, setting, opts)?;
    let accuracies = crate::error::collect_in_order((0..opts.episodes).into_par_iter().map(|i| {
        let ep = episode(data, setting, opts, i)?;
        let acc = scorer.episode_accuracy(&ep, opts);
        on_episode();
        Ok(acc)
    }))?;
    Ok(SettingResult {
        setting,
        summary: summarize(&accuracies)?,
        accuracies,
    })
}

/// Fraction of `predicted` equal to `labels` (position by position).
fn fraction_correct(predicted: &[usize], labels: &[usize]) -> f64 {
    let correct = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
    correct as f64 / labels.len() as f64
}

/// Everything [`evaluate`] checks before any episode is scored: the model, the data's image
/// shape, `opts`, the setting's width, and that `data` can give the setting's first episode (failing
/// with the sampler's message); returns the scorer of the setting's width. `tuning::tune_adapt`
/// starts the same way.
pub fn prepare<'a>(
    model: &'a Model,
    data: &dyn Dataset,
    setting: Setting,
    opts: &EvalOptions,
) -> Result<Scorer<'a>> {
    model.validate()?;
    check_shape(model, data)?;
    opts.validate()?;
    if opts.episodes < 2 {
        return Err(Error::config(
            "episodes",
            format!(
                "{} is too few for a confidence interval (need at least 2)",
                opts.episodes
            ),
        ));
    }
    if setting.ways < 2 {
        return Err(Error::config(
            "ways",
            format!("{} is too few: an episode needs at least 2", setting.ways),
        ));
    }
    episode(data, setting, opts, 0)?;
    Scorer::new(model, setting.ways)
}

/// Episode `i` of `setting` with `opts`' queries and episode seed: the same `i` is the same
/// episode for every model.
pub fn episode(
    data: &dyn Dataset,
    setting: Setting,
    opts: &EvalOptions,
    i: u64,
) -> Result<Episode> {
    sample_episode(
        data,
        setting.ways,
        setting.shots,
        opts.queries,
        opts.seed,
        i,
    )
}

/// Errors unless `data` holds images of the model's input shape.
pub fn check_shape(model: &Model, data: &dyn Dataset) -> Result<()> {
    let want = model.image_shape();
    let got = data.shape();
    if got.channels != want.channels {
        return Err(Error::shape(
            format!("dataset {}", data.name()),
            format!(
                "its images have {} channel(s), the model takes {}",
                got.channels, want.channels
            ),
        ));
    }
    if got != want {
        return Err(Error::shape(
            format!("dataset {}", data.name()),
            format!("its images are {got}, the model takes {want}"),
        ));
    }
    Ok(())
}

/// Scores episodes of one width: the episode learner (fresh head of `ways` outputs) and where the
/// model's backbone and projection parameters go in it.
pub struct Scorer<'a> {
    model: &'a Model,
    /// The model's own learner (its layout), for proto mode.
    base: Learner,
    /// The learner with a `ways`-wide classifier, for adapt mode.
    episode: Learner,
    /// The episode learner's parameters with the model's backbone and projection copied in by
    /// name and a zero classifier.
    theta0: Vec<f32>,
}

impl<'a> Scorer<'a> {
    /// Prepares scoring of `ways`-way episodes.
    pub fn new(model: &'a Model, ways: usize) -> Result<Self> {
        model.validate()?;
        let base = Learner::new(model.arch.clone())?;
        let episode = Learner::new(ArchSpec {
            ways,
            ..model.arch.clone()
        })?;
        let mut theta0 = vec![0.0f32; episode.num_params()];
        for e in &episode.layout.entries {
            if e.name.starts_with("classifier.") {
                continue;
            }
            let src = base.layout.get(&e.name).ok_or_else(|| {
                Error::shape("model parameters", format!("no tensor named {}", e.name))
            })?;
            if src.shape != e.shape {
                return Err(Error::shape(
                    format!("model parameter {}", e.name),
                    format!("shape {:?}, expected {:?}", src.shape, e.shape),
                ));
            }
            theta0[e.range()].copy_from_slice(&model.params[src.range()]);
        }
        Ok(Scorer {
            model,
            base,
            episode,
            theta0,
        })
    }

    /// The learner episodes of this width are adapted with.
    pub fn episode_learner(&self) -> &Learner {
        &self.episode
    }

    /// Fraction of the episode's queries classified correctly.
    pub fn episode_accuracy(&self, ep: &Episode, opts: &EvalOptions) -> f64 {
        match opts.mode {
            Mode::Adapt => {
                let w = self.adapt(&ep.support.data, &ep.support_labels, opts.head, opts.adapt);
                self.adapted_accuracy(&w, ep)
            }
            Mode::Proto => fraction_correct(
                &self.proto_predict(
                    &ep.support.data,
                    &ep.support_labels,
                    &ep.query.data,
                    opts.features,
                ),
                &ep.query_labels,
            ),
        }
    }

    /// Fraction of the episode's queries that the episode learner at weights `w` (from
    /// [`Scorer::adapt`]) classifies correctly.
    pub fn adapted_accuracy(&self, w: &[f32], ep: &Episode) -> f64 {
        let (out, _) = self.episode.infer(w, &ep.query.data, false);
        fraction_correct(
            &argmax_rows(&out.logits, self.episode.spec.ways),
            &ep.query_labels,
        )
    }

    /// Adapted weights of the episode learner: fresh head (`head`), then `inner.inner_steps` SGD
    /// steps of `inner.inner_loss` at step size `inner.inner_lr` on `(x, labels)` (one batch: batch
    /// norm uses its statistics).
    pub fn adapt(&self, x: &[f32], labels: &[usize], head: HeadInit, inner: InnerLoop) -> Vec<f32> {
        let mut w = self.theta0.clone();
        if head == HeadInit::Proto {
            let (_, tape) = self.episode.infer(&w, x, false);
            let f = self.episode.spec.feature_dim();
            let mu = class_means(
                self.episode.features(&tape),
                labels,
                self.episode.spec.ways,
                f,
            );
            let wr = self
                .episode
                .layout
                .get("classifier.weight")
                .map(|e| e.range());
            let br = self
                .episode
                .layout
                .get("classifier.bias")
                .map(|e| e.range());
            if let (Some(wr), Some(br)) = (wr, br) {
                for (c, m) in mu.chunks(f).enumerate() {
                    for (dst, &v) in w[wr.start + c * f..wr.start + (c + 1) * f]
                        .iter_mut()
                        .zip(m)
                    {
                        *dst = 2.0 * v;
                    }
                    w[br.start + c] = -m.iter().map(|v| v * v).sum::<f32>();
                }
            }
        }
        self.adapt_more(&mut w, x, labels, inner);
        w
    }

    /// `inner.inner_steps` more SGD steps on `(x, labels)` from `w`: the loop of [`Scorer::adapt`],
    /// on its own so that one adaptation can be scored after several step counts (`adapt` with
    /// s1 + s2 steps is `adapt` with s1 then `adapt_more` with s2, bit for bit).
    pub fn adapt_more(&self, w: &mut [f32], x: &[f32], labels: &[usize], inner: InnerLoop) {
        for _ in 0..inner.inner_steps {
            sgd_step(
                &self.episode,
                w,
                x,
                labels,
                Objective::Inner(inner.inner_loss),
                inner.inner_lr,
            );
        }
    }

    /// Proto mode: predicted class (0..ways) of each query image.
    pub fn proto_predict(
        &self,
        support: &[f32],
        labels: &[usize],
        query: &[f32],
        features: Features,
    ) -> Vec<usize> {
        let ways = labels.iter().max().map_or(0, |m| m + 1);
        let (s, dim) = self.embed(support, features);
        let (q, _) = self.embed(query, features);
        let protos = class_means(&s, labels, ways, dim);
        let protos = l2_normalize_rows(protos, dim);
        q.chunks(dim)
            .map(|qv| {
                let sims: Vec<f32> = protos
                    .chunks(dim)
                    .map(|p| p.iter().zip(qv).map(|(a, b)| a * b).sum())
                    .collect();
                argmax(&sims)
            })
            .collect()
    }

    /// L2-normalised features of a batch (one forward pass: its own batch-norm statistics).
    fn embed(&self, x: &[f32], features: Features) -> (Vec<f32>, usize) {
        let want_proj = features == Features::Projection;
        let (out, tape) = self.base.infer(&self.model.params, x, want_proj);
        let (v, dim) = match out.projection {
            Some(z) => (z, self.base.spec.proj_dim),
            None => (
                self.base.features(&tape).to_vec(),
                self.base.spec.feature_dim(),
            ),
        };
        (l2_normalize_rows(v, dim), dim)
    }
}

/// Mean row of each class: `[ways, dim]` from rows `x [N, dim]` with `labels [N]`.
fn class_means(x: &[f32], labels: &[usize], ways: usize, dim: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; ways * dim];
    let mut count = vec![0usize; ways];
    for (row, &y) in x.chunks(dim).zip(labels) {
        count[y] += 1;
        for (s, v) in sum[y * dim..(y + 1) * dim].iter_mut().zip(row) {
            *s += v;
        }
    }
    for (c, n) in count.iter().enumerate() {
        if *n > 0 {
            for s in &mut sum[c * dim..(c + 1) * dim] {
                *s /= *n as f32;
            }
        }
    }
    sum
}

/// Each row divided by its L2 norm (an all-zero row stays zero).
fn l2_normalize_rows(mut x: Vec<f32>, dim: usize) -> Vec<f32> {
    for row in x.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for v in row {
                *v /= norm;
            }
        }
    }
    x
}

/// Index of the largest value; the first on ties (so all-equal scores predict class 0).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// [`argmax`] of each row of `[N, cols]`.
pub fn argmax_rows(v: &[f32], cols: usize) -> Vec<usize> {
    v.chunks(cols).map(argmax).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{ImageShape, InMemoryDataset};

    /// A small learner (8 channels, 16x16 grey input) keeps tests quick (`tuning`'s tests too).
    pub(crate) fn small_model(seed: u64) -> Model {
        let arch = ArchSpec {
            hidden: 8,
            proj_dim: 8,
            ..ArchSpec::conv4(1, 16, 5)
        };
        Model::random(arch, seed).unwrap()
    }

    /// `classes` classes of `per_class` 16x16 images: class c is a set of horizontal stripes
    /// (period 2, 4, 6 or 8 rows, inverted for c >= 4), every image of a class the same:
    /// trivially separable.
    fn stripes(classes: usize, per_class: usize) -> InMemoryDataset {
        let bufs = (0..classes)
            .map(|c| {
                let mut b = Vec::new();
                for _ in 0..per_class {
                    for y in 0..16 {
                        for _x in 0..16 {
                            let on = (y / (c % 4 + 1)) % 2 == 0;
                            let base: u8 = if on { 255 } else { 0 };
                            b.push(if c >= 4 { 255 - base } else { base });
                        }
                    }
                }
                b
            })
            .collect();
        InMemoryDataset::from_classes("stripes", ImageShape::new(1, 16, 16), bufs).unwrap()
    }

    fn opts(mode: Mode, model: &Model, episodes: u64) -> EvalOptions {
        EvalOptions {
            queries: 3,
            episodes,
            ..EvalOptions::new(mode, model)
        }
    }

    fn s(ways: usize, shots: usize) -> Setting {
        Setting { ways, shots }
    }

    #[test]
    fn the_interval_is_1_96_sample_standard_deviations_over_root_n() {
        // Hand computation: mean 0.5; squared deviations 0.04 + 0.01 + 0 + 0.01 + 0.04 = 0.1;
        // sample variance 0.1 / 4 = 0.025; std 0.158113883; ci 1.96 * 0.158113883 / sqrt(5).
        let s = summarize(&[0.3, 0.4, 0.5, 0.6, 0.7]).unwrap();
        assert!((s.mean - 0.5).abs() < 1e-12);
        assert!(
            (s.std - 0.158_113_883_008_418_97).abs() < 1e-12,
            "{}",
            s.std
        );
        assert!(
            (s.ci95 - 0.138_592_929_112_027_57).abs() < 1e-12,
            "{}",
            s.ci95
        );
        assert_eq!(s.episodes, 5);
        assert!(summarize(&[1.0]).is_err());
    }

    #[test]
    fn settings_parse_as_ways_w_shots_s() {
        assert_eq!("5w1s".parse::<Setting>().unwrap(), s(5, 1));
        assert_eq!("20W5S".parse::<Setting>().unwrap(), s(20, 5));
        for bad in ["5w", "w1s", "5x1s", "1w1s", "5w0s", ""] {
            let err = bad.parse::<Setting>().unwrap_err().to_string();
            assert!(err.contains("setting"), "{bad}: {err}");
        }
        assert_eq!(s(20, 1).to_string(), "20w1s");
    }

    #[test]
    fn proto_mode_is_perfect_on_trivially_separable_classes() {
        let m = small_model(3);
        let r = evaluate(
            &m,
            &stripes(8, 6),
            s(5, 1),
            &opts(Mode::Proto, &m, 20),
            &|| {},
        )
        .unwrap();
        assert_eq!(r.summary.mean, 1.0);
        assert_eq!(r.summary.ci95, 0.0);
        let m2 = Model::random(
            ArchSpec {
                ways: 3,
                ..m.arch.clone()
            },
            4,
        )
        .unwrap();
        let o = EvalOptions {
            features: Features::Projection,
            ..opts(Mode::Proto, &m2, 20)
        };
        let r = evaluate(&m2, &stripes(8, 6), s(4, 2), &o, &|| {}).unwrap();
        assert_eq!(r.summary.mean, 1.0, "projection features");
    }

    #[test]
    fn adapt_mode_learns_trivially_separable_classes_and_zero_steps_is_exact_chance() {
        let m = small_model(5);
        let data = stripes(8, 6);
        let o = EvalOptions {
            adapt: InnerLoop {
                inner_lr: 0.1,
                inner_steps: 50,
                ..m.inner
            },
            ..opts(Mode::Adapt, &m, 20)
        };
        let r = evaluate(&m, &data, s(5, 2), &o, &|| {}).unwrap();
        assert!(r.summary.mean > 0.95, "{:?}", r.summary);
        // No step: the zero head scores every class equally, argmax takes class 0, exactly one
        // query class in five is right.
        let zero = EvalOptions {
            adapt: InnerLoop {
                inner_steps: 0,
                ..o.adapt
            },
            ..o.clone()
        };
        let r = evaluate(&m, &data, s(5, 2), &zero, &|| {}).unwrap();
        assert!(r.accuracies.iter().all(|&a| a == 3.0 / 15.0), "{r:?}");
        assert!((r.summary.mean - 0.2).abs() < 1e-12);
        // Proto-MAML initialisation alone already separates the classes.
        let proto_head = EvalOptions {
            head: HeadInit::Proto,
            ..zero
        };
        let r = evaluate(&m, &data, s(5, 2), &proto_head, &|| {}).unwrap();
        assert!(r.summary.mean > 0.95, "{:?}", r.summary);
    }

    #[test]
    fn the_same_seed_gives_the_same_accuracies_on_one_and_two_threads() {
        let m = small_model(7);
        // Noisy images so that accuracies vary between episodes.
        let mut r = crate::rng::derive(1, &[99]);
        let bufs = (0..10)
            .map(|_| (0..8 * 256).map(|_| rand::Rng::gen::<u8>(&mut r)).collect())
            .collect();
        let data =
            InMemoryDataset::from_classes("noise", ImageShape::new(1, 16, 16), bufs).unwrap();
        let run = |threads: usize, mode: Mode, seed: u64| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let o = EvalOptions {
                        seed,
                        adapt: InnerLoop {
                            inner_steps: 2,
                            ..m.inner
                        },
                        ..opts(mode, &m, 12)
                    };
                    evaluate(&m, &data, s(5, 1), &o, &|| {}).unwrap()
                })
        };
        for mode in [Mode::Adapt, Mode::Proto] {
            let one = run(1, mode, 3);
            let two = run(2, mode, 3);
            assert_eq!(one, two, "{mode:?}");
            assert_eq!(one.summary.mean.to_bits(), two.summary.mean.to_bits());
            assert!(one.summary.std > 0.0, "{mode:?}: episodes should differ");
            assert_ne!(one.accuracies, run(1, mode, 4).accuracies, "{mode:?}");
        }
    }

    #[test]
    fn every_episode_is_counted_by_the_progress_callback() {
        let m = small_model(1);
        let n = std::sync::atomic::AtomicU64::new(0);
        evaluate(
            &m,
            &stripes(6, 4),
            s(3, 1),
            &opts(Mode::Proto, &m, 7),
            &|| {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .unwrap();
        assert_eq!(n.into_inner(), 7);
    }

    #[test]
    fn more_ways_than_classes_is_an_error_naming_the_value() {
        let m = small_model(1);
        let err = evaluate(
            &m,
            &stripes(4, 6),
            s(5, 1),
            &opts(Mode::Proto, &m, 5),
            &|| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ways") && err.contains("5") && err.contains("4"),
            "{err}"
        );
    }

    #[test]
    fn more_shots_and_queries_than_images_per_class_is_an_error() {
        let m = small_model(1);
        let err = evaluate(
            &m,
            &stripes(8, 3),
            s(5, 1),
            &opts(Mode::Adapt, &m, 5),
            &|| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 + 3 = 4 images per class"), "{err}");
    }

    #[test]
    fn a_dataset_with_other_channels_or_size_than_the_model_is_an_error() {
        let m = Model::random(
            ArchSpec {
                hidden: 8,
                proj_dim: 8,
                ..ArchSpec::conv4(3, 16, 5)
            },
            0,
        )
        .unwrap();
        let err = evaluate(
            &m,
            &stripes(8, 6),
            s(5, 1),
            &opts(Mode::Proto, &m, 5),
            &|| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 channel(s), the model takes 3"), "{err}");
        let grey = small_model(0);
        let big = InMemoryDataset::from_classes(
            "big",
            ImageShape::new(1, 20, 20),
            vec![vec![0; 400 * 4]; 6],
        )
        .unwrap();
        let err = evaluate(&grey, &big, s(5, 1), &opts(Mode::Proto, &grey, 5), &|| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("1x20x20") && err.contains("1x16x16"), "{err}");
    }

    #[test]
    fn a_parameter_vector_of_the_wrong_length_is_an_error() {
        let mut m = small_model(0);
        m.params.pop();
        assert!(Scorer::new(&m, 5).is_err());
    }

    #[test]
    fn fewer_than_two_episodes_is_an_error() {
        let m = small_model(0);
        let err = evaluate(
            &m,
            &stripes(8, 6),
            s(5, 1),
            &opts(Mode::Proto, &m, 1),
            &|| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("episodes"), "{err}");
    }

    /// Measured (100 episodes, 15 queries, random-init seeds 0-2, episode seed 0): proto
    /// 0.547 / 0.550 / 0.561, adapt (5 steps, zero head) 0.337 / 0.365 / 0.358, each +- 0.02.
    /// Random convolutional features are informative on Omniglot, so random-init proto accuracy is
    /// well above chance (0.2) yet far below a meta-trained model's (PsCo reports ~0.97); random
    /// adaptation is barely above chance.
    #[test]
    fn a_random_init_conv4_on_omniglot_is_far_from_a_trained_model_and_adapt_from_it_is_near_chance(
    ) {
        use crate::data::omniglot::{Omniglot, OmniglotOptions, Split};
        let omni = Omniglot::load(
            &crate::data::repo_data_dir().join("omniglot"),
            &OmniglotOptions::default(),
        )
        .unwrap();
        let test = omni.split(Split::Test);
        let m = Model::random(ArchSpec::conv4(1, 28, 5), 0).unwrap();
        let run = |mode: Mode| {
            let o = EvalOptions {
                queries: 5,
                episodes: 60,
                ..EvalOptions::new(mode, &m)
            };
            evaluate(&m, &test, s(5, 1), &o, &|| {}).unwrap().summary
        };
        let proto = run(Mode::Proto);
        assert!((0.40..0.70).contains(&proto.mean), "{proto:?}");
        let adapt = run(Mode::Adapt);
        assert!((0.22..0.50).contains(&adapt.mean), "{adapt:?}");
        assert!(adapt.mean < proto.mean);
    }
}

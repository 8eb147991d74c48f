//! Train, then test: the one path from a run configuration and a dataset's splits to a trained run
//! and its scored test settings, behind `bmssl train` (its `eval.json`), `bmssl reproduce` and
//! `bmssl sweep` (their part records), so that all three train and score alike.
//!
//! 1. Train (or resume) the run in its directory ([`crate::train::train`]) on the training split
//!    (labelled only for the supervised baselines), validated on the validation split when the
//!    configuration asks for it.
//! 2. Load the final checkpoint and score each [`Test`] with [`EvalRecord::measure`] (and, where
//!    asked, the untrained network on the same episodes), unless the caller already holds its
//!    record (a cache).
//!
//! What a caller does around these (progress, plots, printing, caching, annotating each record)
//! it does through a [`TrainTestObserver`].

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::data::{Dataset, UnlabelledPool};
use crate::eval::{EvalOptions, EvalRecord, HeadInit, Mode, Model, Setting};
use crate::train::{self, Observer, Outcome, RunDir, TrainingData, Validator};
use crate::Result;
use std::sync::Arc;

/// One scored setting: which episodes and how they are scored.
#[derive(Clone)]
pub struct Test<'a> {
    /// The split the episodes come from (`test`, `val`), as the record names it.
    pub split: String,
    pub data: &'a dyn Dataset,
    pub setting: Setting,
    pub mode: Mode,
    pub head: HeadInit,
    pub episodes: u64,
    pub queries: usize,
    pub seed: u64,
    /// Also score the untrained network (the run's own initialisation: same seed, same stream as
    /// training's step 0) on the same episodes with the same options: the record's `untrained`.
    pub untrained: bool,
}

impl Test<'_> {
    /// The evaluation options of this test for `model` (its inner loop is the checkpoint's).
    pub fn options(&self, model: &Model) -> EvalOptions {
        EvalOptions {
            episodes: self.episodes,
            queries: self.queries,
            seed: self.seed,
            head: self.head,
            ..EvalOptions::new(self.mode, model)
        }
    }
}

/// A run to train and test.
pub struct Job<'a> {
    pub run: &'a RunDir,
    pub config: &'a TrainConfig,
    /// The training split: the supervised baselines read its labels, every other method gets an
    /// unlabelled pool over it.
    pub train: Arc<dyn Dataset>,
    /// The validation split (used when `validation_episodes >= 2`).
    pub val: &'a dyn Dataset,
    /// Query images per class of the validation episodes.
    pub validation_queries: usize,
    pub tests: &'a [Test<'a>],
}

/// What [`train_then_test`] reports: training through the [`Observer`] methods, then the tests.
pub trait TrainTestObserver: Observer + Sync {
    /// Training ended (also when it failed: the error is then returned after this call).
    fn trained(&mut self, _outcome: &Result<Outcome>) {}
    /// A record of test `test` of the checkpoint at `step` already made (a cache): it is used
    /// instead of scoring the test again.
    fn cached(&mut self, _test: usize, _step: u64) -> Option<EvalRecord> {
        None
    }
    /// Scoring of test `test` is starting (`untrained`: the untrained network's).
    fn scoring(&mut self, _test: usize, _untrained: bool) {}
    /// One episode finished (called from worker threads).
    fn episode(&self) {}
    /// Scoring of test `test` finished.
    fn scored(&mut self, _test: usize, _untrained: bool) {}
    /// Test `test` of the checkpoint at `step` is scored: the caller may annotate its record
    /// (it is returned as it stands after this call), write it, print it.
    fn tested(&mut self, _test: usize, _step: u64, _record: &mut EvalRecord) -> Result<()> {
        Ok(())
    }
}

/// A run trained and tested.
pub struct Tested {
    pub outcome: Outcome,
    /// The final checkpoint's model and step (None when there was nothing to test).
    pub model: Option<(Model, u64)>,
    /// One record per test, in order.
    pub records: Vec<EvalRecord>,
}

/// The data `cfg` trains on: the labelled split for the supervised baselines (the only methods
/// that read labels), an unlabelled pool over it for every other.
pub fn training_data(cfg: &TrainConfig, split: Arc<dyn Dataset>) -> TrainingData {
    if cfg.method.uses_labels() {
        TrainingData::Labelled(split)
    } else {
        TrainingData::Unlabelled(UnlabelledPool::new(split))
    }
}

/// Trains (or resumes) `job`'s run, then scores its final checkpoint on each test (see the module
/// documentation).
pub fn train_then_test(job: &Job<'_>, observer: &mut dyn TrainTestObserver) -> Result<Tested> {
    let cfg = job.config;
    let data = training_data(cfg, job.train.clone());
    let mut validator = train::validator(cfg, job.val, job.validation_queries);
    let outcome = train::train(
        job.run,
        cfg,
        &data,
        (cfg.run.validation_episodes >= 2).then_some(&mut validator as &mut Validator<'_>),
        observer,
    );
    observer.trained(&outcome);
    let outcome = outcome?;
    if job.tests.is_empty() {
        return Ok(Tested {
            outcome,
            model: None,
            records: Vec::new(),
        });
    }
    let checkpoint = checkpoint::load(&outcome.final_checkpoint)?;
    let step = checkpoint.step;
    let model = Model::from_checkpoint(&checkpoint)?;
    let untrained = job
        .tests
        .iter()
        .any(|t| t.untrained)
        .then(|| Model::random(model.arch.clone(), cfg.run.seed))
        .transpose()?;
    let mut records = Vec::with_capacity(job.tests.len());
    for (i, test) in job.tests.iter().enumerate() {
        if let Some(r) = observer.cached(i, step) {
            records.push(r);
            continue;
        }
        let opts = test.options(&model);
        let mut score = |model: &Model, is_untrained: bool| {
            observer.scoring(i, is_untrained);
            let tick = &*observer;
            let r =
                EvalRecord::measure(model, test.data, &test.split, test.setting, &opts, &|| {
                    tick.episode()
                });
            observer.scored(i, is_untrained);
            r
        };
        let mut record = score(&model, false)?;
        if let (true, Some(u)) = (test.untrained, &untrained) {
            record.untrained = Some(score(u, true)?.summary());
        }
        observer.tested(i, step, &mut record)?;
        records.push(record);
    }
    Ok(Tested {
        outcome,
        model: Some((model, step)),
        records,
    })
}

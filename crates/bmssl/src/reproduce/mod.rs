//! `bmssl reproduce`: the paper's claims, re-measured in one resumable command.
//!
//! A [`Plan`] lists named parts (a training run and its test evaluations) for Table 3 (every
//! method), Table 5 (augmentation levels), Table 6 (structures M1-M3) and Table 7 (delta), under a
//! [`Budget`]. [`run`] executes them in an output directory:
//!
//! ```text
//! OUT/plan.json                    the plan (budget, options, parts, tables)
//! OUT/parts/<id>/                  the part's run directory (config.toml, metrics.jsonl, checkpoints/)
//! OUT/parts/<id>/eval-5w1s.json    one finished test evaluation (per-episode accuracies included)
//! OUT/parts/<id>/result.json       the part is finished: its numbers ([`PartResult`])
//! OUT/report.md, claims.json, results.json   written by [`report::write`] from the JSON above only
//! ```
//!
//! A re-run skips every part whose `result.json` matches its configuration and budget, resumes a
//! killed training run from its newest checkpoint ([`crate::train`]) and keeps finished
//! evaluations. See `docs/reproduce.md`.
//!
//! Over 400 lines: the part runner that both `reproduce` and `sweep` use (training and testing are
//! [`crate::pipeline::train_then_test`]; here are the part's evaluation cache and its result), and
//! the records they write; its tests are in `reproduce/tests.rs`.

pub mod estimate;
pub mod paper;
pub mod plan;
pub mod report;
pub mod sweep;

pub use plan::{Budget, Part, Plan, PlanOptions, Row, TableSpec};

use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::eval::{self, HeadInit, Mode, Setting};
use crate::pipeline::{self, Job, Test, TrainTestObserver};
use crate::train::{Observer, RunDir, StepRecord, ValidationRecord};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A mean with the half-width of its 95% interval (`1.96 s / sqrt(n)`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub ci95: f64,
    pub n: u64,
}

impl Interval {
    /// Mean and 95% half-width of `values` (None for fewer than 2).
    pub fn of(values: &[f64]) -> Option<Self> {
        let s = eval::summarize(values).ok()?;
        Some(Interval {
            mean: s.mean,
            ci95: s.ci95,
            n: s.episodes,
        })
    }
}

/// One finished evaluation of a part: the record every evaluation writes
/// ([`crate::eval::EvalRecord`]).
pub use crate::eval::EvalRecord;

/// Paired difference `a - b` of two evaluations over the same episodes (same split, setting,
/// episode seed and queries): the mean of the per-episode differences and its 95% half-width
/// `1.96 sd / sqrt(n)`. None when the episodes are not the same.
pub fn paired_difference(a: &EvalRecord, b: &EvalRecord) -> Option<Interval> {
    if a.accuracies.len() != b.accuracies.len()
        || a.setting != b.setting
        || a.episode_seed != b.episode_seed
        || a.queries != b.queries
        || a.split != b.split
    {
        return None;
    }
    let d: Vec<f64> = a
        .accuracies
        .iter()
        .zip(&b.accuracies)
        .map(|(x, y)| x - y)
        .collect();
    Interval::of(&d)
}

/// One evaluation a part asks for: which episodes, how they are scored, and its cache file in
/// the part's directory.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalSpec {
    /// File name of the cached [`EvalRecord`] (`eval-5w1s.json` in `reproduce`).
    pub file: String,
    /// `val` or `test`.
    pub split: String,
    pub setting: Setting,
    pub mode: Mode,
    pub head: HeadInit,
    pub episodes: u64,
    pub queries: usize,
    pub seed: u64,
    /// Write the split, head and checkpoint step into the record (the sweep's records);
    /// `reproduce`'s records stay as they always were.
    pub extended: bool,
}

impl EvalSpec {
    /// Whether `e` is this evaluation (of the checkpoint at `step`, when the record says which).
    pub fn matches(&self, e: &EvalRecord, step: Option<u64>) -> bool {
        e.setting == self.setting
            && e.mode == self.mode
            && e.head.unwrap_or(HeadInit::Zero) == self.head
            && e.split.as_deref().unwrap_or("test") == self.split
            && e.episodes == self.episodes
            && e.queries == self.queries
            && e.episode_seed == self.seed
            && match (e.checkpoint_step, step) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// One training run and the evaluations of its final checkpoint: what `reproduce` and `sweep`
/// both run through [`run_part`].
pub(crate) struct PartJob<'a> {
    pub id: &'a str,
    pub config: &'a TrainConfig,
    /// Written into the result (`reproduce`'s budget name, `sweep` for a sweep).
    pub budget: &'a str,
    /// Query images per class of the training-time validation episodes.
    pub curve_queries: usize,
    pub evals: &'a [EvalSpec],
}

/// What [`run_part`] reports: training through the [`Observer`] methods, then each evaluation.
pub trait PartProgress: Observer + Sync {
    /// An evaluation is starting.
    fn eval(&mut self, _spec: &EvalSpec) {}
    /// One episode finished (called from worker threads).
    fn episode(&self) {}
}

/// What a finished part measured: written to `OUT/parts/<id>/result.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartResult {
    pub id: String,
    pub method: String,
    /// Budget name it ran under.
    pub budget: String,
    /// The run's configuration, as its `config.toml`.
    pub config_toml: String,
    /// Meta-steps trained (0 for scratch).
    pub meta_steps: u64,
    /// Training wall time (seconds, summed over resumed sessions).
    pub train_seconds: f64,
    /// Meta-steps per second over the run's steps (None when nothing was trained).
    pub speed: Option<Interval>,
    /// Validation curve (5-way 1-shot, proto mode, validation split).
    pub validation: Vec<ValidationRecord>,
    /// Outer loss against meta-step, averaged over windows (at most 200 points).
    pub loss_curve: Vec<[f64; 2]>,
    pub evals: Vec<EvalRecord>,
}

impl PartResult {
    /// The evaluation of `setting`, if made.
    pub fn eval(&self, setting: Setting) -> Option<&EvalRecord> {
        self.evals.iter().find(|e| e.setting == setting)
    }
    /// The evaluation that is `spec`, if made.
    pub fn find(&self, spec: &EvalSpec) -> Option<&EvalRecord> {
        self.evals.iter().find(|e| spec.matches(e, None))
    }
}

/// The three splits of the dataset: meta-training pool (labels used only by the supervised
/// baselines), validation (learning curves) and test (the tables).
#[derive(Clone)]
pub struct Splits {
    pub train: Arc<dyn Dataset>,
    pub val: Arc<dyn Dataset>,
    pub test: Arc<dyn Dataset>,
}

/// What [`run`] reports as it goes (the CLI's progress display). Training progress arrives through
/// the [`Observer`] methods.
pub trait Progress: Observer + Sync {
    /// Part `index` of `total` is starting (`skipped`: its result is already there).
    fn part(&mut self, _index: usize, _total: usize, _part: &Part, _skipped: bool) {}
    /// A test evaluation is starting.
    fn eval(&mut self, _part: &Part, _setting: Setting, _episodes: u64) {}
    /// One test episode finished (called from worker threads).
    fn episode(&self) {}
    /// The part finished with this result.
    fn finished(&mut self, _part: &Part, _result: &PartResult) {}
}

/// A progress display that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}
impl Progress for Quiet {}

/// Which parts ran and which were skipped as already finished.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
}

/// `OUT/plan.json`.
pub fn plan_path(out: &Path) -> PathBuf {
    out.join("plan.json")
}

/// `OUT/parts/<id>`.
pub fn part_dir(out: &Path, id: &str) -> PathBuf {
    out.join("parts").join(id)
}

/// `OUT/parts/<id>/result.json`.
pub fn result_path(out: &Path, id: &str) -> PathBuf {
    part_dir(out, id).join("result.json")
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::corrupt(path, e.to_string()))
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::corrupt(path, e.to_string()))?;
    crate::io::write_atomic(path, text.as_bytes())
}

/// Whether a stored result is the finished work of `part` under `plan`.
/// Configurations are compared parsed, so a configuration key added to the toolkit later (read
/// with its default) does not make finished parts look unfinished.
fn is_done(result: &PartResult, part: &Part, plan: &Plan) -> bool {
    config_matches(result, &part.config)
        && result.budget == plan.budget.name
        && eval_specs(part, plan)
            .iter()
            .all(|s| result.find(s).is_some())
}

/// Whether a result was made with this configuration (compared parsed).
pub(crate) fn config_matches(result: &PartResult, config: &TrainConfig) -> bool {
    TrainConfig::from_toml(&result.config_toml, &result.id).is_ok_and(|c| &c == config)
}

/// The test evaluations of a `reproduce` part: `eval-<setting>.json`, the method's mode.
fn eval_specs(part: &Part, plan: &Plan) -> Vec<EvalSpec> {
    part.settings
        .iter()
        .map(|&s| EvalSpec {
            file: format!("eval-{s}.json"),
            split: "test".into(),
            setting: s,
            mode: part.eval_mode,
            head: HeadInit::Zero,
            episodes: plan.budget.eval_episodes,
            queries: plan.budget.queries,
            seed: plan.options.episode_seed,
            extended: false,
        })
        .collect()
}

/// Writes `OUT/plan.json`, refusing a directory made under another budget or options (its
/// finished parts would not be comparable).
fn check_and_write_plan(out: &Path, plan: &Plan) -> Result<()> {
    std::fs::create_dir_all(out.join("parts")).map_err(|e| Error::io(out, e))?;
    let path = plan_path(out);
    if path.exists() {
        let old: Plan = read_json(&path)?;
        if old.budget != plan.budget || old.options != plan.options {
            return Err(Error::config(
                "budget",
                format!(
                    "{} holds a reproduction with budget `{}` and options {:?}; this one asks for budget `{}` and {:?}: use another --out",
                    out.display(),
                    old.budget.name,
                    old.options,
                    plan.budget.name,
                    plan.options
                ),
            ));
        }
    }
    write_json(&path, plan)
}

/// Runs every unfinished part of `plan` in `out` (see the module documentation).
pub fn run(
    out: &Path,
    plan: &Plan,
    splits: &Splits,
    progress: &mut dyn Progress,
) -> Result<RunSummary> {
    check_and_write_plan(out, plan)?;
    let mut summary = RunSummary::default();
    let total = plan.parts.len();
    for (i, part) in plan.parts.iter().enumerate() {
        let done = read_json::<PartResult>(&result_path(out, &part.id))
            .ok()
            .filter(|r| is_done(r, part, plan));
        progress.part(i, total, part, done.is_some());
        if done.is_some() {
            summary.skipped.push(part.id.clone());
            continue;
        }
        let result = run_plan_part(out, plan, part, splits, progress)?;
        write_json(&result_path(out, &part.id), &result)?;
        progress.finished(part, &result);
        summary.ran.push(part.id.clone());
    }
    Ok(summary)
}

/// `reproduce`'s view of a part's progress as a [`PartProgress`].
struct PlanPartProgress<'a> {
    inner: &'a mut dyn Progress,
    part: &'a Part,
}

impl Observer for PlanPartProgress<'_> {
    fn step(&mut self, r: &StepRecord) {
        self.inner.step(r)
    }
    fn validation(&mut self, r: &ValidationRecord) {
        self.inner.validation(r)
    }
    fn warning(&mut self, m: &str) {
        self.inner.warning(m)
    }
    fn checkpoint(&mut self, p: &Path) {
        self.inner.checkpoint(p)
    }
}

impl PartProgress for PlanPartProgress<'_> {
    fn eval(&mut self, spec: &EvalSpec) {
        self.inner.eval(self.part, spec.setting, spec.episodes)
    }
    fn episode(&self) {
        self.inner.episode()
    }
}

/// Trains (or resumes) one `reproduce` part, evaluates it on the test split, and collects its numbers.
fn run_plan_part(
    out: &Path,
    plan: &Plan,
    part: &Part,
    splits: &Splits,
    progress: &mut dyn Progress,
) -> Result<PartResult> {
    let evals = eval_specs(part, plan);
    let job = PartJob {
        id: &part.id,
        config: &part.config,
        budget: &plan.budget.name,
        curve_queries: plan.budget.queries,
        evals: &evals,
    };
    run_part(
        &part_dir(out, &part.id),
        &job,
        splits,
        &mut PlanPartProgress {
            inner: progress,
            part,
        },
    )
}

/// A part's tests as [`pipeline::train_then_test`] runs them: each evaluation cached in the part's
/// directory (`spec.file`), reused when it is of the same checkpoint and episodes.
struct PartTests<'a, 'p> {
    dir: &'a Path,
    specs: &'a [EvalSpec],
    progress: &'a mut (dyn PartProgress + 'p),
}

impl Observer for PartTests<'_, '_> {
    fn step(&mut self, r: &StepRecord) {
        self.progress.step(r)
    }
    fn validation(&mut self, r: &ValidationRecord) {
        self.progress.validation(r)
    }
    fn warning(&mut self, m: &str) {
        self.progress.warning(m)
    }
    fn checkpoint(&mut self, p: &Path) {
        self.progress.checkpoint(p)
    }
    fn progress(&mut self, m: &str) {
        self.progress.progress(m)
    }
}

impl TrainTestObserver for PartTests<'_, '_> {
    fn cached(&mut self, test: usize, step: u64) -> Option<EvalRecord> {
        let spec = &self.specs[test];
        read_json::<EvalRecord>(&self.dir.join(&spec.file))
            .ok()
            .filter(|e| spec.matches(e, Some(step)))
    }
    fn scoring(&mut self, test: usize, _untrained: bool) {
        self.progress.eval(&self.specs[test])
    }
    fn episode(&self) {
        self.progress.episode()
    }
    fn tested(&mut self, test: usize, step: u64, record: &mut EvalRecord) -> Result<()> {
        let spec = &self.specs[test];
        // `reproduce`'s records stay as they always were: no split, head or step.
        record.split = spec.extended.then(|| spec.split.clone());
        record.head = spec.extended.then_some(spec.head);
        record.checkpoint_step = spec.extended.then_some(step);
        write_json(&self.dir.join(&spec.file), record)
    }
}

/// Trains (or resumes) a part's run in `dir` (a run that already reached its meta-steps trains
/// nothing), makes each evaluation of its final checkpoint that is not cached in `dir` yet (and
/// caches it), and collects its numbers. The one mechanism behind `reproduce` and `sweep`.
pub(crate) fn run_part(
    dir: &Path,
    job: &PartJob<'_>,
    splits: &Splits,
    progress: &mut dyn PartProgress,
) -> Result<PartResult> {
    let cfg = job.config;
    let run_dir = RunDir::create(dir)?;
    let tests: Vec<Test<'_>> = job
        .evals
        .iter()
        .map(|spec| Test {
            split: spec.split.clone(),
            data: if spec.split == "val" {
                splits.val.as_ref()
            } else {
                splits.test.as_ref()
            },
            setting: spec.setting,
            mode: spec.mode,
            head: spec.head,
            episodes: spec.episodes,
            queries: spec.queries,
            seed: spec.seed,
            untrained: false,
        })
        .collect();
    let evals = pipeline::train_then_test(
        &Job {
            run: &run_dir,
            config: cfg,
            train: splits.train.clone(),
            val: splits.val.as_ref(),
            validation_queries: job.curve_queries,
            tests: &tests,
        },
        &mut PartTests {
            dir,
            specs: job.evals,
            progress,
        },
    )?
    .records;
    let (steps, validation) = read_metrics(&run_dir.metrics_path())?;
    let trained = steps.last().map_or(0, |s| s.step);
    let speeds: Vec<f64> = steps
        .iter()
        .filter(|s| !s.skipped)
        .map(|s| s.meta_steps_per_s)
        .collect();
    Ok(PartResult {
        id: job.id.to_string(),
        method: cfg.method.as_str().to_string(),
        budget: job.budget.to_string(),
        config_toml: cfg.to_toml(),
        meta_steps: trained,
        train_seconds: steps.iter().map(|s| s.wall_s).fold(0.0, f64::max),
        speed: Interval::of(&speeds),
        validation,
        loss_curve: downsample(&steps, 200),
        evals,
    })
}

/// The step and validation records of a run's `metrics.jsonl` (none for a run that trained nothing).
pub(crate) fn read_metrics(path: &Path) -> Result<(Vec<StepRecord>, Vec<ValidationRecord>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let (mut steps, mut vals) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.contains("\"val_accuracy\"") {
            vals.push(serde_json::from_str(line).map_err(|e| Error::corrupt(path, e.to_string()))?);
        } else {
            // NaN losses are written as null by serde_json: read them leniently.
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::corrupt(path, e.to_string()))?;
            let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
            steps.push(StepRecord {
                step: v.get("step").and_then(|x| x.as_u64()).unwrap_or(0),
                outer_loss: f("outer_loss"),
                inner_loss_before: f("inner_loss_before"),
                inner_loss_after: f("inner_loss_after"),
                kl: f("kl"),
                meta_steps_per_s: f("meta_steps_per_s"),
                wall_s: f("wall_s"),
                skipped: v.get("skipped").and_then(|x| x.as_bool()).unwrap_or(false),
            });
        }
    }
    Ok((steps, vals))
}

/// The outer loss averaged over consecutive windows, at most `points` of them: `[last step, mean]`.
fn downsample(steps: &[StepRecord], points: usize) -> Vec<[f64; 2]> {
    let finite: Vec<&StepRecord> = steps.iter().filter(|s| s.outer_loss.is_finite()).collect();
    let window = finite.len().div_ceil(points.max(1)).max(1);
    finite
        .chunks(window)
        .map(|c| {
            let mean = c.iter().map(|s| s.outer_loss).sum::<f64>() / c.len() as f64;
            [c[c.len() - 1].step as f64, mean]
        })
        .collect()
}

#[cfg(test)]
mod tests;

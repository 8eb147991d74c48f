//! The meta-training loop: sample a meta-batch (section 4.1), take the meta-gradient (section 4.2),
//! update theta with the outer optimiser; log, validate, checkpoint, resume, and guard against
//! non-finite numbers.
//!
//! A run lives in a directory ([`crate::run_dir`]). Every random draw is derived from
//! `(seed, step)` ([`crate::rng`]), and the meta-gradient sums tasks in a fixed order, so a run
//! resumed from a checkpoint produces the same bits as one that was never interrupted.
//!
//! What a method computes (its tasks, its gradient, its state) is its file under
//! [`crate::methods`]; this loop knows only the [`Method`] trait.
//!
//! Over 400 lines: the observer, the validator and resume sit around the loop, and about 290 lines
//! are tests.

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::data::UnlabelledPool;
use crate::meta::outer::TaskStats;
pub use crate::methods::learner_for;
use crate::methods::Method;
use crate::model::Learner;
use crate::optim::Optimizer;
pub use crate::run_dir::RunDir;
use crate::{rng, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// One line of `metrics.jsonl` for a meta-step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Meta-steps completed, this one included.
    pub step: u64,
    /// Mean outer loss over the meta-batch's tasks (KL for BMSSL, query loss for MetaSSL).
    pub outer_loss: f64,
    /// Mean inner loss on the support views before adaptation (at theta).
    pub inner_loss_before: f64,
    /// Mean inner loss on the support views after L steps (BMSSL only; NaN otherwise).
    pub inner_loss_after: f64,
    /// KL(pi_target || pi_L) (BMSSL only; NaN otherwise).
    pub kl: f64,
    /// This meta-step's speed.
    pub meta_steps_per_s: f64,
    /// Seconds of training so far (summed over resumed sessions).
    pub wall_s: f64,
    /// The update was skipped because a loss or gradient was not finite.
    pub skipped: bool,
}

/// One line of `metrics.jsonl` for a validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub step: u64,
    /// Mean validation accuracy (fraction).
    pub val_accuracy: f64,
    /// Half-width of its 95% interval.
    pub val_ci95: f64,
}

/// What a run reports as it goes (progress bars, logs).
pub trait Observer {
    fn step(&mut self, _record: &StepRecord) {}
    fn validation(&mut self, _record: &ValidationRecord) {}
    fn warning(&mut self, _message: &str) {}
    fn checkpoint(&mut self, _path: &Path) {}
    /// A line about work before the first meta-step (CACTUs' embedding and clustering).
    fn progress(&mut self, _message: &str) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

/// Validation: (mean accuracy, 95% half-width) of the learner with these parameters.
pub type Validator<'a> = dyn FnMut(&Learner, &[f32]) -> Result<(f64, f64)> + 'a;

/// The validation every run reports: `cfg.validation_episodes` 5-way 1-shot episodes of `val`
/// in `cfg.validation_mode`, with `queries` query images per class and the fixed validation
/// seed (so every step and every method is scored on the same episodes). The learner is scored
/// as the checkpoint written at that step would be: its inner loop is the config's.
pub fn validator<'a>(
    cfg: &'a TrainConfig,
    val: &'a dyn Dataset,
    queries: usize,
) -> impl FnMut(&Learner, &[f32]) -> Result<(f64, f64)> + 'a {
    move |learner: &Learner, params: &[f32]| {
        let model = crate::eval::Model {
            arch: learner.spec.clone(),
            params: params.to_vec(),
            inner: cfg.inner_loop(),
        };
        let opts = crate::eval::EvalOptions {
            episodes: cfg.run.validation_episodes.max(2) as u64,
            queries,
            seed: rng::STREAM_VALIDATION,
            ..crate::eval::EvalOptions::new(cfg.run.validation_mode, &model)
        };
        let r = crate::eval::evaluate(
            &model,
            val,
            crate::eval::Setting { ways: 5, shots: 1 },
            &opts,
            &|| {},
        )?;
        Ok((r.summary.mean, r.summary.ci95))
    }
}

/// Fault injection for this module's tests (private: [`train`] runs with none).
#[derive(Clone, Debug, Default)]
struct Faults {
    /// Meta-steps (1-based) whose loss is replaced by NaN.
    nonfinite_at: Vec<u64>,
}

/// The images a run learns from. Self-supervised methods get a pool without labels; only the
/// supervised baselines (MAML, ProtoNet) get the labelled split.
pub enum TrainingData {
    Unlabelled(UnlabelledPool),
    Labelled(Arc<dyn Dataset>),
}

impl TrainingData {
    fn image_shape(&self) -> crate::data::ImageShape {
        match self {
            TrainingData::Unlabelled(p) => p.shape(),
            TrainingData::Labelled(d) => d.shape(),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub learner: Learner,
    pub params: Vec<f32>,
    pub final_checkpoint: PathBuf,
    pub best: Option<(u64, f64)>,
    /// Step the run started from (0 when fresh).
    pub resumed_from: u64,
}

/// The part of a configuration that determines the trained bits (budget and logging excluded):
/// a run may be resumed with a larger `meta_steps`, but not with another learning rate.
fn identity(cfg: &TrainConfig) -> String {
    let d = TrainConfig::default();
    let mut identity = cfg.clone();
    // A cosine schedule anneals to zero at meta_steps: another budget is another run.
    if cfg.outer.lr_schedule != crate::config::LrSchedule::Cosine {
        identity.outer.meta_steps = d.outer.meta_steps;
    }
    identity.run = crate::config::RunConfig {
        seed: cfg.run.seed,
        validation_mode: cfg.run.validation_mode,
        ..d.run
    };
    identity.to_toml()
}

fn mean(stats: &[TaskStats], f: impl Fn(&TaskStats) -> f64) -> f64 {
    stats.iter().map(f).sum::<f64>() / stats.len().max(1) as f64
}

/// Meta-trains (or resumes, when the run directory holds a checkpoint) up to `cfg.meta_steps`.
pub fn train(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &TrainingData,
    validator: Option<&mut Validator<'_>>,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    train_with_faults(run, cfg, data, validator, observer, &Faults::default())
}

/// [`train`], with the faults a test injects.
fn train_with_faults(
    run: &RunDir,
    cfg: &TrainConfig,
    data: &TrainingData,
    mut validator: Option<&mut Validator<'_>>,
    observer: &mut dyn Observer,
    faults: &Faults,
) -> Result<Outcome> {
    cfg.validate()?;
    if let TrainingData::Unlabelled(pool) = data {
        cfg.task_shape().validate(pool.len())?;
    }
    if data.image_shape().channels != cfg.data.channels
        || data.image_shape().height != cfg.data.image_size
    {
        return Err(Error::config(
            "image_size",
            format!(
                "the data's images are {}, the configuration asks for {}x{}x{}",
                data.image_shape(),
                cfg.data.channels,
                cfg.data.image_size,
                cfg.data.image_size
            ),
        ));
    }
    let learner = learner_for(cfg)?;
    let mut method = crate::methods::for_config(cfg);

    // Fresh start or resume.
    let mut warn = |m: &str| observer.warning(m);
    let resumed = run.latest_good(&mut warn);
    run.remove_stale_temp_files();
    let (mut theta, mut opt, start, wall_before) = match resumed {
        Some((c, path)) => {
            let saved = TrainConfig::from_toml(&c.config_toml, &path.display().to_string())?;
            if identity(&saved) != identity(cfg) {
                return Err(Error::config(
                    "config",
                    format!("{} holds a run with another configuration; resume with the run's own config.toml (only meta_steps and logging options may change)", run.root.display()),
                ));
            }
            if c.params.len() != learner.num_params() {
                return Err(Error::corrupt(
                    &path,
                    "parameter count does not match the configuration",
                ));
            }
            let opt = c
                .optimizer
                .clone()
                .ok_or_else(|| Error::corrupt(&path, "checkpoint has no optimiser state"))?;
            if !method.restore_state(&c.state, &learner) {
                return Err(Error::corrupt(
                    &path,
                    "the method's state (MoCo's and PsCo's momentum encoder and queue) is missing or does not fit the configuration",
                ));
            }
            let wall = run.truncate_metrics(c.step)?;
            (c.params, opt, c.step, wall)
        }
        None => {
            let theta = learner.init(&mut rng::derive(cfg.run.seed, &[rng::STREAM_INIT]));
            let opt = Optimizer::new(cfg.outer.optimizer, cfg.outer.outer_lr, theta.len())
                .with_options(cfg.outer.sgd_momentum, cfg.outer.weight_decay);
            let _ = std::fs::remove_file(run.metrics_path());
            method.init_state(&learner, &theta);
            (theta, opt, 0, 0.0)
        }
    };
    crate::io::write_atomic(&run.config_path(), cfg.to_toml().as_bytes())?;
    let mut best: Option<(u64, f64)> = run.read_best(start);

    let to_checkpoint =
        |theta: &[f32], opt: &Optimizer, step: u64, method: &dyn Method| Checkpoint {
            arch: learner.spec.clone(),
            params: theta.to_vec(),
            adapt: cfg.inner_loop(),
            method: cfg.method.as_str().to_string(),
            step,
            seed: cfg.run.seed,
            optimizer: Some(opt.clone()),
            config_toml: cfg.to_toml(),
            state: method.state(),
        };
    let mut last_checkpoint = run.step_checkpoints().first().map(|(_, p)| p.clone());
    let mut consecutive_bad = 0u32;
    let session_start = Instant::now();
    // Training from scratch means no meta-training: the random initialisation is the model.
    let last_step = method.meta_steps(cfg.outer.meta_steps);
    if last_step == 0 && start == 0 {
        let path = run.step_checkpoint(0);
        checkpoint::save(&path, &to_checkpoint(&theta, &opt, 0, method.as_ref()))?;
        observer.checkpoint(&path);
        last_checkpoint = Some(path);
    }
    // Work before the first meta-step (CACTUs' partitions, SwAV's small crops).
    method.prepare(run, data, &learner, observer)?;
    for step in start + 1..=last_step {
        let t0 = Instant::now();
        let tasks = method.tasks(data, step)?;
        let (grad, stats) = method.gradient(&learner, &theta, &tasks, step);
        let mut outer_loss = mean(&stats, |s| s.outer_loss);
        if faults.nonfinite_at.contains(&step) {
            outer_loss = f64::NAN;
        }
        let mut finite = outer_loss.is_finite() && grad.iter().all(|g| g.is_finite());
        if finite {
            // A finite gradient can still overflow the parameters (`outer_lr = 1e39`): such an
            // update is undone and counted as non-finite, so that a checkpoint only ever holds
            // finite parameters.
            let before = (theta.clone(), opt.clone());
            opt.step_at(
                &mut theta,
                &grad,
                cfg.outer
                    .lr_schedule
                    .at(cfg.outer.outer_lr, step, cfg.outer.meta_steps),
            );
            if theta.iter().all(|p| p.is_finite()) {
                consecutive_bad = 0;
            } else {
                (theta, opt) = before;
                finite = false;
            }
        }
        if !finite {
            consecutive_bad += 1;
            observer.warning(&format!(
                "meta-step {step}: non-finite outer loss, meta-gradient or updated parameters, update skipped ({consecutive_bad} in a row)"
            ));
            if consecutive_bad > cfg.run.max_nonfinite_steps {
                return Err(Error::NonFinite {
                    what: format!(
                        "meta-training: {consecutive_bad} consecutive meta-steps (up to step {step}); stopped, the last good checkpoint is {}",
                        last_checkpoint.as_ref().map_or("none (no checkpoint written yet)".into(), |p| p.display().to_string())
                    ),
                });
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        let record = StepRecord {
            step,
            outer_loss,
            inner_loss_before: mean(&stats, |s| s.inner_loss_before),
            inner_loss_after: mean(&stats, |s| s.inner_loss_after),
            kl: mean(&stats, |s| s.kl),
            meta_steps_per_s: 1.0 / dt.max(1e-9),
            wall_s: wall_before + session_start.elapsed().as_secs_f64(),
            skipped: !finite,
        };
        run.append_metrics(
            &serde_json::to_string(&record).map_err(|e| Error::shape("metrics", e.to_string()))?,
        )?;
        observer.step(&record);

        let last = step == last_step;
        if let Some(v) = validator.as_deref_mut() {
            if (cfg.run.validate_every > 0 && step % cfg.run.validate_every == 0) || last {
                let (acc, ci) = v(&learner, &theta)?;
                let rec = ValidationRecord {
                    step,
                    val_accuracy: acc,
                    val_ci95: ci,
                };
                run.append_metrics(
                    &serde_json::to_string(&rec)
                        .map_err(|e| Error::shape("metrics", e.to_string()))?,
                )?;
                observer.validation(&rec);
                if best.is_none_or(|(_, b)| acc > b) {
                    best = Some((step, acc));
                    checkpoint::save(
                        &run.best_checkpoint(),
                        &to_checkpoint(&theta, &opt, step, method.as_ref()),
                    )?;
                    run.write_best(step, acc)?;
                }
            }
        }
        if step % cfg.run.checkpoint_every == 0 || last {
            let path = run.step_checkpoint(step);
            checkpoint::save(&path, &to_checkpoint(&theta, &opt, step, method.as_ref()))?;
            observer.checkpoint(&path);
            last_checkpoint = Some(path);
            for (_, old) in run
                .step_checkpoints()
                .into_iter()
                .skip(cfg.run.keep_checkpoints)
            {
                let _ = std::fs::remove_file(old);
            }
        }
    }
    // A run resumed at or past its budget trains nothing and reports its newest checkpoint.
    let final_checkpoint = last_checkpoint.ok_or_else(|| {
        Error::dataset(run.root.display().to_string(), "no checkpoint was written")
    })?;
    Ok(Outcome {
        learner,
        params: theta,
        final_checkpoint,
        best,
        resumed_from: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::Augmenter;
    use crate::config::TrainMethod;
    use crate::data::{ImageShape, InMemoryDataset};
    use crate::meta::outer::{meta_gradient, TaskTensors};
    use crate::tasks::build_meta_batch;
    use std::sync::Arc;

    /// 12 random 28x28 "drawings" (sparse strokes), one per class.
    fn pool() -> UnlabelledPool {
        let classes = (0..12u64)
            .map(|c| {
                let v = crate::engine::gradcheck::test_values(784, 100 + c);
                v.iter().map(|x| if *x > 0.6 { 255u8 } else { 0 }).collect()
            })
            .collect();
        UnlabelledPool::new(Arc::new(
            InMemoryDataset::from_classes("synthetic", ImageShape::new(1, 28, 28), classes)
                .unwrap(),
        ))
    }

    fn small_config(method: TrainMethod) -> TrainConfig {
        let mut edited = TrainConfig {
            method,
            ..TrainConfig::default()
        };
        edited.task.images_per_batch = 6;
        edited.task.tasks_per_batch = 2;
        edited.task.views = 3;
        edited.task.support_views = 1;
        edited.task.query_views = 2;
        edited.inner.inner_steps = 2;
        edited.bootstrap.bootstrap_steps = 2;
        edited.outer.meta_steps = 6;
        edited.run.checkpoint_every = 2;
        edited.run.validate_every = 0;
        edited
    }

    fn temp_run(name: &str) -> RunDir {
        let d =
            std::env::temp_dir().join(format!("bmssl-train-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        RunDir::create(&d).unwrap()
    }

    fn outer_loss_falls_on_a_fixed_meta_batch(method: TrainMethod) {
        let cfg = small_config(method);
        let learner = learner_for(&cfg).unwrap();
        let aug = Augmenter::from_level(cfg.task.augment, 28, 28);
        let batch = build_meta_batch(&pool(), &cfg.task_shape(), &aug, 5, 0).unwrap();
        let tasks: Vec<TaskTensors<f32>> = batch.tasks.into_iter().map(TaskTensors::from).collect();
        let mut theta = learner.init(&mut rng::derive(0, &[rng::STREAM_INIT]));
        let mut opt = Optimizer::new(cfg.outer.optimizer, 1e-3, theta.len());
        let spec = cfg.meta_spec();
        let loss = |theta: &[f32]| {
            mean(&meta_gradient(&learner, theta, &tasks, &spec).1, |s| {
                s.outer_loss
            })
        };
        let before = loss(&theta);
        for _ in 0..10 {
            let (g, _) = meta_gradient(&learner, &theta, &tasks, &spec);
            opt.step(&mut theta, &g);
        }
        let after = loss(&theta);
        assert!(
            after < 0.8 * before,
            "{method:?}: outer loss {before} -> {after}"
        );
    }

    #[test]
    fn bmssl_meta_steps_on_a_fixed_meta_batch_lower_the_outer_loss() {
        outer_loss_falls_on_a_fixed_meta_batch(TrainMethod::Bmssl);
    }

    #[test]
    fn metassl_meta_steps_on_a_fixed_meta_batch_lower_the_outer_loss() {
        outer_loss_falls_on_a_fixed_meta_batch(TrainMethod::Metassl);
    }

    #[test]
    fn a_resumed_run_ends_with_the_same_checkpoint_bytes_as_an_uninterrupted_one() {
        resume_is_bit_identical(small_config(TrainMethod::Bmssl), "bmssl");
    }

    /// MoCo carries a momentum encoder, a queue and SGD's momentum buffer across steps: all three
    /// must survive a resume bit for bit.
    #[test]
    fn a_resumed_moco_run_restores_its_momentum_encoder_queue_and_sgd_momentum() {
        let cfg = {
            let mut edited = TrainConfig::for_method(TrainMethod::Moco);
            edited.task.images_per_batch = 6;
            edited.ssl.queue_size = 10;
            edited.outer.meta_steps = 6;
            edited.run.checkpoint_every = 2;
            edited.run.validate_every = 0;
            edited.outer.lr_schedule = crate::config::LrSchedule::Constant;
            edited
        };
        resume_is_bit_identical(cfg, "moco");
    }

    #[test]
    fn the_cosine_schedule_anneals_from_the_base_rate_to_zero() {
        use crate::config::LrSchedule;
        assert_eq!(LrSchedule::Cosine.at(0.03, 1, 100), 0.03);
        assert!((LrSchedule::Cosine.at(0.03, 51, 100) - 0.015).abs() < 1e-12);
        assert!(LrSchedule::Cosine.at(0.03, 100, 100) < 1e-4);
        assert_eq!(LrSchedule::Constant.at(0.03, 100, 100), 0.03);
    }

    fn resume_is_bit_identical(cfg: TrainConfig, name: &str) {
        let whole = temp_run(&format!("whole-{name}"));
        let a = train(
            &whole,
            &cfg,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap();
        let halves = temp_run(&format!("halves-{name}"));
        let half = {
            let mut edited = cfg.clone();
            edited.outer.meta_steps = 3;
            edited
        };
        train(
            &halves,
            &half,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap();
        let b = train(
            &halves,
            &cfg,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap();
        assert_eq!(
            b.resumed_from, 3,
            "the first half ends with a checkpoint at its last step"
        );
        assert_eq!(
            std::fs::read(a.final_checkpoint).unwrap(),
            std::fs::read(b.final_checkpoint).unwrap()
        );
        let steps = |r: &RunDir| {
            std::fs::read_to_string(r.metrics_path())
                .unwrap()
                .lines()
                .filter(|l| l.contains("outer_loss"))
                .count()
        };
        assert_eq!(
            steps(&halves),
            6,
            "metrics past the resumed checkpoint are replaced, not duplicated"
        );
    }

    #[test]
    fn resuming_with_another_configuration_is_refused() {
        let cfg = small_config(TrainMethod::Bmssl);
        let run = temp_run("mismatch");
        train(
            &run,
            &{
                let mut edited = cfg.clone();
                edited.outer.meta_steps = 2;
                edited
            },
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap();
        let other = {
            let mut edited = cfg;
            edited.inner.inner_lr = 0.1;
            edited
        };
        let err = train(
            &run,
            &other,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("another configuration"), "{err}");
    }

    #[test]
    fn a_nonfinite_loss_skips_the_update_and_repeated_ones_stop_the_run_keeping_the_last_checkpoint(
    ) {
        let cfg = {
            let mut edited = small_config(TrainMethod::Metassl);
            edited.run.max_nonfinite_steps = 2;
            edited
        };
        let run = temp_run("nan");
        struct Warnings(Vec<String>);
        impl Observer for Warnings {
            fn warning(&mut self, m: &str) {
                self.0.push(m.to_string());
            }
        }
        // One bad step is skipped and the run completes.
        let mut w = Warnings(vec![]);
        train_with_faults(
            &run,
            &cfg,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut w,
            &Faults {
                nonfinite_at: vec![3],
            },
        )
        .unwrap();
        assert_eq!(w.0.len(), 1);
        assert!(w.0[0].contains("meta-step 3"), "{}", w.0[0]);
        // Three in a row stop it; the newest checkpoint (step 4, holding the step-2 parameters since
        // the updates were skipped) is named and intact.
        let run = temp_run("nan-stop");
        let err = train_with_faults(
            &run,
            &cfg,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
            &Faults {
                nonfinite_at: vec![3, 4, 5],
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("3 consecutive") && err.contains("step-0000004"),
            "{err}"
        );
        let (c2, c4) = (
            checkpoint::load(&run.step_checkpoint(2)).unwrap(),
            checkpoint::load(&run.step_checkpoint(4)).unwrap(),
        );
        assert_eq!(c2.params, c4.params);
        assert!(c4.params.iter().all(|p| p.is_finite()));
    }

    /// A finite but huge learning rate overflows the parameters, not the loss: the update is undone
    /// and counted as non-finite, and no checkpoint ever holds an infinity.
    #[test]
    fn an_update_that_overflows_the_parameters_is_undone_and_no_checkpoint_holds_an_infinity() {
        let cfg = {
            let mut edited = small_config(TrainMethod::Metassl);
            edited.run.max_nonfinite_steps = 2;
            edited.outer.outer_lr = 1e39;
            edited
        };
        let run = temp_run("overflow");
        let err = train(
            &run,
            &cfg,
            &TrainingData::Unlabelled(pool()),
            None,
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
        // Skipped updates leave theta as it was, so a scheduled checkpoint may still be written
        // (of the finite initialisation): what must hold is that none holds an infinity.
        assert!(err.contains("3 consecutive"), "{err}");
        for (_, path) in run.step_checkpoints() {
            let c = checkpoint::load(&path).unwrap();
            assert!(c.params.iter().all(|p| p.is_finite()), "{}", path.display());
        }
    }
}

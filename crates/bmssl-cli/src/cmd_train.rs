//! `bmssl train`: meta-train with BMSSL or MetaSSL, then evaluate on the test split.
//!
//! Training and testing are one library call ([`bmssl::pipeline::train_then_test`], shared with
//! `reproduce` and `sweep`); over 400 lines because the command is everything around it: the
//! configuration's layers, the saved test plan and its checks before training, and what it shows
//! (the progress bar, the summary, one line per setting beside the untrained network and the
//! paper, `eval.json`). The flags of the configuration's keys are in `config_flags.rs`.

use crate::config_flags::ConfigFlags;
use crate::plots;
use crate::progress::{Style, Ticker};
use anyhow::{Context, Result};
use bmssl::config::{TrainConfig, TrainMethod};
use bmssl::data::open_split;
use bmssl::eval::{self, EvalOptions, EvalRecord, EvalReport, Mode, Model, Setting};
use bmssl::meta::Target;
use bmssl::objective::ContrastiveLoss;
use bmssl::pipeline::{self, Job, Test, Tested, TrainTestObserver};
use bmssl::reproduce::paper;
use bmssl::train::{self, Observer, RunDir, StepRecord, ValidationRecord};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A TOML run configuration (fields as in a run's config.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (default: runs/<method>-<target>-seed<seed>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in this directory from its newest good checkpoint (its config.toml is
    /// used; `--meta-steps` may raise the budget).
    #[arg(long, conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Data directory (default: $BMSSL_DATA, else the repository's data/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No progress bar: a log line every 30 seconds instead (also what a run whose stderr is a
    /// file or a pipe gets).
    #[arg(long, short)]
    quiet: bool,
    /// Test-set evaluation after training: settings [default: 5w1s,5w5s,20w1s; a resumed run:
    /// its own].
    #[arg(long, value_delimiter = ',')]
    eval_settings: Option<Vec<Setting>>,
    /// Test episodes per setting (the paper: 2000) [default: 2000; a resumed run: its own].
    #[arg(long)]
    eval_episodes: Option<u64>,
    /// Test evaluation mode: adapt or proto [default: adapt; a resumed run: its own].
    #[arg(long)]
    eval_mode: Option<Mode>,
    /// Skip the test evaluation (a resumed run keeps this choice).
    #[arg(long)]
    no_eval: bool,
    /// Skip the untrained network's accuracy on the same test episodes, printed beside the
    /// run's as a yardstick (it costs as much as the test itself; a resumed run keeps this choice).
    #[arg(long)]
    no_yardstick: bool,
    // Every key of the run configuration as a flag (`--inner-lr`), over the config file.
    #[command(flatten)]
    flags: ConfigFlags,
}

/// `bmssl train` as [`pipeline::train_then_test`] runs it: the training progress, then the plots
/// and the run's summary, then the test (one line per setting, the run's final checkpoint beside
/// its untrained network and the paper's figure) and `eval.json`.
struct Session<'a> {
    /// The meta-steps' progress bar.
    ticker: Ticker,
    /// Validation results and warnings as lines (no bar to show them).
    lines: bool,
    loss_ema: Option<f64>,
    speed_ema: Option<f64>,
    last_val: Option<f64>,
    dir: &'a Path,
    cfg: &'a TrainConfig,
    test: Option<&'a dyn bmssl::data::Dataset>,
    plan: &'a TestPlan,
    style: Style,
    /// The progress bar of the setting being scored.
    test_ticker: Option<Ticker>,
}

impl Session<'_> {
    fn message(&self) -> String {
        let mut m = format!(
            "loss {:.4} · {:.2} meta-steps/s",
            self.loss_ema.unwrap_or(f64::NAN),
            self.speed_ema.unwrap_or(f64::NAN)
        );
        if let Some(v) = self.last_val {
            m.push_str(&format!(" · val {:.2}%", 100.0 * v));
        }
        m
    }
}

impl Observer for Session<'_> {
    fn step(&mut self, r: &StepRecord) {
        let ema = |old: Option<f64>, x: f64| {
            if x.is_finite() {
                Some(old.map_or(x, |o| 0.95 * o + 0.05 * x))
            } else {
                old
            }
        };
        self.loss_ema = ema(self.loss_ema, r.outer_loss);
        self.speed_ema = ema(self.speed_ema, r.meta_steps_per_s);
        let message = self.message();
        self.ticker.set_label(if self.lines {
            format!("meta-steps · {message}")
        } else {
            message
        });
        self.ticker.set_position(r.step);
    }
    fn validation(&mut self, r: &ValidationRecord) {
        self.last_val = Some(r.val_accuracy);
        if self.lines {
            eprintln!(
                "step {} · validation 5w1s {:.2}% ± {:.2}%",
                r.step,
                100.0 * r.val_accuracy,
                100.0 * r.val_ci95
            );
        }
    }
    fn warning(&mut self, message: &str) {
        self.ticker.println(&format!("warning: {message}"));
    }
    fn progress(&mut self, message: &str) {
        self.ticker.println(message);
    }
}

/// What the test after training does: chosen on the command line of a fresh run, saved in the run
/// directory (`test-plan.json`) and kept by `--resume` unless a flag says otherwise, so that a
/// resumed short run does not fall back to the 2000-episode default.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct TestPlan {
    skip: bool,
    settings: Vec<Setting>,
    episodes: u64,
    mode: Mode,
    yardstick: bool,
}

impl TestPlan {
    const FILE: &'static str = "test-plan.json";

    /// The flags over the resumed run's saved plan (a fresh run: over the defaults).
    fn resolve(args: &TrainArgs, saved: Option<TestPlan>) -> TestPlan {
        let base = saved.unwrap_or(TestPlan {
            skip: false,
            settings: "5w1s,5w5s,20w1s"
                .split(',')
                .map(|s| s.parse().expect("valid setting"))
                .collect(),
            episodes: 2000,
            mode: Mode::Adapt,
            yardstick: true,
        });
        TestPlan {
            skip: base.skip || args.no_eval,
            settings: args.eval_settings.clone().unwrap_or(base.settings),
            episodes: args.eval_episodes.unwrap_or(base.episodes),
            mode: args.eval_mode.unwrap_or(base.mode),
            yardstick: base.yardstick && !args.no_yardstick,
        }
    }

    fn load(dir: &Path) -> Option<TestPlan> {
        let text = std::fs::read_to_string(dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        bmssl::io::write_atomic(
            &dir.join(Self::FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }
}

/// The validation or test split of the run's dataset; an image folder has a single split, so it is
/// used as it is (say so in your report: such numbers are not held-out).
fn open_held_out(
    cfg: &TrainConfig,
    split: &str,
    data_dir: Option<&Path>,
) -> Result<std::sync::Arc<dyn bmssl::data::Dataset>> {
    let shape = cfg.data.shape();
    let split = if bmssl::data::known_dataset(&cfg.data.dataset).is_some() {
        split
    } else {
        &cfg.data.split
    };
    Ok(open_split(
        &cfg.data.dataset,
        split,
        shape,
        cfg.data.rotations,
        data_dir,
    )?)
}

/// Name of a run: method, target (BMSSL), seed.
fn run_name(cfg: &TrainConfig) -> String {
    let target = match cfg.bootstrap.target {
        Target::Paper => "-paper",
        Target::QueryStep => "-query-step",
    };
    let target = if cfg.method == TrainMethod::Bmssl {
        target
    } else {
        ""
    };
    // The paper's "-o" variants: the SSL objective inside BMSSL's loop.
    let inner = if cfg.inner.inner_loss == ContrastiveLoss::Supcon {
        String::new()
    } else {
        format!("-{}-o", cfg.inner.inner_loss.as_str())
    };
    // The inner horizon where it differs from the paper's (`-L1`), and the bootstrap study's keys
    // where they differ from the paper's reading (`-additive-mu0.3-zh`).
    let horizon = bmssl::reproduce::plan::horizon_suffix(cfg);
    let study = bmssl::reproduce::plan::study_suffix(cfg);
    format!(
        "{}{}{inner}{horizon}{study}-seed{}",
        cfg.method.as_str(),
        target,
        cfg.run.seed
    )
}

/// Resolves the configuration: defaults < config file (or the resumed run's) < flags.
fn resolve_config(args: &TrainArgs) -> Result<(TrainConfig, PathBuf)> {
    let cfg = if let Some(dir) = &args.resume {
        RunDir { root: dir.clone() }
            .load_config()
            .context("resuming")?
    } else if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        TrainConfig::from_toml(&text, &path.display().to_string())?
    } else {
        let method = match args.flags.get("method") {
            Some(m) => m.parse()?,
            None => TrainMethod::Bmssl,
        };
        let defaults = TrainConfig::for_method(method);
        // `--target paper` is BMSSL as the paper writes it: the study's keys start from the
        // paper's reading (flags given beside it still apply).
        if args.flags.get("target") == Some("paper") {
            defaults.with_paper_bootstrap()
        } else {
            defaults
        }
    };
    let cfg = cfg.with_overrides(&args.flags.overrides)?;
    cfg.validate()?;
    let dir = args
        .resume
        .clone()
        .or_else(|| args.run_dir.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(run_name(&cfg)));
    Ok((cfg, dir))
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let (cfg, dir) = resolve_config(&args)?;
    let run_dir = RunDir::create(&dir)
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    // One process per run directory (a second `train` or a `--resume` is refused, naming the
    // holder), held until the test results are written.
    let _lock = bmssl::lock::lock_run_dir(&dir)?;
    let plan = TestPlan::resolve(&args, args.resume.as_deref().and_then(TestPlan::load));
    plan.save(&dir)?;
    let shape = cfg.data.shape();
    let t0 = Instant::now();
    let split = open_split(
        &cfg.data.dataset,
        &cfg.data.split,
        shape,
        cfg.data.rotations,
        args.data_dir.as_deref(),
    )?;
    let count = split.num_images();
    let val = open_held_out(&cfg, "val", args.data_dir.as_deref())?;
    let test = check_before_training(&cfg, &plan, &args, val.as_ref())?;
    let order = if cfg.method.is_ssl() || cfg.method == TrainMethod::Scratch {
        "no inner loop"
    } else if matches!(
        cfg.method,
        TrainMethod::Protonet | TrainMethod::CactusProtonet
    ) {
        "episodic, no inner loop"
    } else if cfg.outer.first_order {
        "first order"
    } else {
        "second order"
    };
    eprintln!(
        "{} ({order}), {count} {} images from {}/{} loaded in {:.1}s; run directory {}",
        run_name(&cfg),
        if cfg.method.uses_labels() {
            "labelled"
        } else {
            "unlabelled"
        },
        cfg.data.dataset,
        cfg.data.split,
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    // A bar on a terminal; log lines (every 30 s) with --quiet or when stderr is a file.
    let style = match Style::detect(args.quiet) {
        Style::Bar => Style::Bar,
        _ => Style::Lines,
    };
    // The test after training: each setting of the plan on the test split, the untrained network
    // beside it as a yardstick.
    let tests: Vec<Test<'_>> = match &test {
        Some(test) => plan
            .settings
            .iter()
            .map(|&s| Test {
                split: "test".into(),
                data: test.as_ref(),
                setting: s,
                mode: plan.mode,
                head: eval::HeadInit::Zero,
                episodes: plan.episodes,
                queries: EvalOptions::DEFAULT_QUERIES,
                seed: 0,
                untrained: plan.yardstick,
            })
            .collect(),
        None => Vec::new(),
    };
    let mut session = Session {
        ticker: Ticker::new(cfg.outer.meta_steps, "meta-steps", style),
        lines: style == Style::Lines,
        loss_ema: None,
        speed_ema: None,
        last_val: None,
        dir: &dir,
        cfg: &cfg,
        test: test.as_deref(),
        plan: &plan,
        style: Style::detect(args.quiet),
        test_ticker: None,
    };
    let tested = pipeline::train_then_test(
        &Job {
            run: &run_dir,
            config: &cfg,
            train: split,
            val: val.as_ref(),
            validation_queries: EvalOptions::DEFAULT_QUERIES,
            tests: &tests,
        },
        &mut session,
    )?;
    let Some(test) = &test else {
        if plan.skip {
            eprintln!(
                "test skipped (--no-eval); run it with `bmssl eval --checkpoint {}`",
                dir.display()
            );
        }
        return Ok(());
    };
    session.write_report(test.as_ref(), &tested)
}

/// Everything the run will need after its first meta-step, checked before it: the validation
/// episodes against the validation split, the test settings and options against the test split
/// (which is returned, opened), so that no setting fails after hours of training.
fn check_before_training(
    cfg: &TrainConfig,
    plan: &TestPlan,
    args: &TrainArgs,
    val: &dyn bmssl::data::Dataset,
) -> Result<Option<std::sync::Arc<dyn bmssl::data::Dataset>>> {
    if cfg.run.validation_episodes >= 2 {
        bmssl::episodes::sample_episode(
            val,
            5,
            1,
            EvalOptions::DEFAULT_QUERIES,
            bmssl::rng::STREAM_VALIDATION,
            0,
        )
        .with_context(|| {
            format!(
                "validation (5w1s, {} queries per class; `validation_episodes = 0` turns it off)",
                EvalOptions::DEFAULT_QUERIES
            )
        })?;
    }
    if plan.skip {
        return Ok(None);
    }
    let opts = EvalOptions {
        mode: plan.mode,
        queries: EvalOptions::DEFAULT_QUERIES,
        episodes: plan.episodes,
        seed: 0,
        head: eval::HeadInit::Zero,
        adapt: cfg.inner_loop(),
        features: eval::Features::Backbone,
    };
    opts.validate().context("--eval-episodes")?;
    let test = open_held_out(cfg, "test", args.data_dir.as_deref())?;
    for &s in &plan.settings {
        bmssl::episodes::sample_episode(test.as_ref(), s.ways, s.shots, opts.queries, 0, 0)
            .with_context(|| format!("test setting {s} (--eval-settings)"))?;
    }
    Ok(Some(test))
}

impl Session<'_> {
    /// Whether the paper gives a figure for this run's method in one of the settings.
    fn paper_known(&self) -> bool {
        self.plan
            .settings
            .iter()
            .any(|&s| paper::table3(self.cfg.method.as_str(), s).is_some())
            && self.cfg.data.dataset == "omniglot"
    }

    /// The run's summary after training (also after a failed run: its plots show what happened).
    fn summary(&self, outcome: &train::Outcome, plotted: anyhow::Result<Vec<PathBuf>>) {
        let (cfg, dir) = (self.cfg, self.dir);
        match plotted {
            Ok(files) => eprintln!(
                "plots: {}",
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => eprintln!("warning: plotting failed: {e:#}"),
        }
        if outcome.resumed_from >= cfg.outer.meta_steps {
            eprintln!(
                "{} already held this run, finished ({} meta-steps): nothing to train, its final checkpoint is used (delete the folder or give --run-dir DIR to train afresh)",
                dir.display(),
                outcome.resumed_from
            );
        } else if outcome.resumed_from > 0 {
            eprintln!(
                "resumed from the checkpoint of step {} in {}",
                outcome.resumed_from,
                dir.display()
            );
        }
        eprintln!("final checkpoint: {}", outcome.final_checkpoint.display());
        if let Some((step, acc)) = outcome.best {
            eprintln!(
                "best validation (5w1s, {} episodes): {:.2}% at step {step}",
                cfg.run.validation_episodes,
                100.0 * acc
            );
        }
    }

    /// The test's header line.
    fn header(&self, test: &dyn bmssl::data::Dataset) {
        let method = self.cfg.method.as_str();
        println!(
            "test accuracy on {} after {} meta-steps ({} mode, {} episodes, {} queries per class, episode seed {}):",
            test.name(),
            self.cfg.outer.meta_steps,
            serde_json::to_value(self.plan.mode)
                .ok()
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            self.plan.episodes,
            EvalOptions::DEFAULT_QUERIES,
            0
        );
        let mut head = format!("  {:>6}  {:>17}", "", "this run");
        if self.plan.yardstick {
            head.push_str(&format!("  {:>17}", "untrained network"));
        }
        if self.paper_known() {
            head.push_str(&format!("  paper's {method} (Table 3, its full training)"));
        }
        println!("{head}");
    }

    /// After the test: the short-budget note and `eval.json`.
    fn write_report(&self, test: &dyn bmssl::data::Dataset, tested: &Tested) -> Result<()> {
        // The options' inner loop is the checkpoint's (read back when no setting was scored).
        let model = match &tested.model {
            Some((model, _)) => std::borrow::Cow::Borrowed(model),
            None => std::borrow::Cow::Owned(Model::from_checkpoint(&bmssl::checkpoint::load(
                &tested.outcome.final_checkpoint,
            )?)?),
        };
        if self.cfg.outer.meta_steps < 10_000 && self.paper_known() {
            println!(
                "  (a {}-meta-step run is a short budget: the paper's figures come from full training; see docs/results for longer runs)",
                self.cfg.outer.meta_steps
            );
        }
        let path = self.dir.join("eval.json");
        let extra = serde_json::json!({
            "meta_steps": self.cfg.outer.meta_steps,
            "untrained": self.plan.yardstick.then(|| serde_json::json!({ "init_seed": self.cfg.run.seed })),
        });
        EvalReport {
            checkpoint_scored: serde_json::json!({
                "file": tested.outcome.final_checkpoint.display().to_string(),
                "which": "final",
            }),
            dataset: test.name().to_string(),
            split: "test".into(),
            options: EvalOptions {
                episodes: self.plan.episodes,
                ..EvalOptions::new(self.plan.mode, &model)
            },
            interval: eval::record::INTERVAL.to_string(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            results: tested.records.clone(),
        }
        .write(&path)?;
        eprintln!("results: {}", path.display());
        Ok(())
    }
}

impl TrainTestObserver for Session<'_> {
    fn trained(&mut self, outcome: &bmssl::Result<train::Outcome>) {
        self.ticker.finish();
        // Plots also after a failed run: they show what happened.
        let plotted = plots::plot_run(self.dir);
        if let Ok(outcome) = outcome {
            self.summary(outcome, plotted);
            if let Some(test) = self.test {
                self.header(test);
            }
        }
    }

    fn scoring(&mut self, test: usize, untrained: bool) {
        let s = self.plan.settings[test];
        let label = if untrained {
            format!("{s} episodes, untrained network")
        } else {
            format!("{s} episodes")
        };
        self.test_ticker = Some(Ticker::new(self.plan.episodes, &label, self.style));
    }

    fn episode(&self) {
        if let Some(t) = &self.test_ticker {
            t.inc();
        }
    }

    fn scored(&mut self, _test: usize, _untrained: bool) {
        if let Some(t) = self.test_ticker.take() {
            t.finish();
        }
    }

    fn tested(&mut self, _test: usize, _step: u64, r: &mut EvalRecord) -> bmssl::Result<()> {
        let s = r.setting;
        let paper = paper::table3(self.cfg.method.as_str(), s)
            .filter(|_| self.cfg.data.dataset == "omniglot");
        r.paper = paper;
        let cell = |x: &eval::Summary| format!("{:6.2}% ± {:.2}%", 100.0 * x.mean, 100.0 * x.ci95);
        let mut line = format!("  {:>6}: {:>17}", s.to_string(), cell(&r.summary()));
        if let Some(b) = &r.untrained {
            line.push_str(&format!("  {:>17}", cell(b)));
        }
        if self.paper_known() {
            line.push_str(&match paper {
                Some(p) => format!("  {p:6.2}%"),
                None => "       -".into(),
            });
        }
        line.push_str(&format!("  ({:.1}s)", r.seconds));
        println!("{line}");
        Ok(())
    }
}

//! `bmssl eval`: mean few-shot accuracy with a 95% interval over fixed test episodes
//! (docs/evaluation.md).
//!
//! Over 400 lines because it holds the whole command: its flags (about half the file, each with
//! its help text), loading a checkpoint or a random model (shared with `embed`), and
//! `--tune-adapt`'s flag checks and per-setting choice, which only this command has.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::progress::{Style, Ticker};
use anyhow::{bail, Context};
use bmssl::checkpoint;
use bmssl::data::{open_split, ImageShape};
use bmssl::eval::{
    self, EvalOptions, EvalRecord, EvalReport, Features, HeadInit, Mode, Model, Setting,
};
use bmssl::model::ArchSpec;
use bmssl::tuning::{self, AdaptGrid, Tuned};
use clap::Args;
use serde_json::json;

/// `bmssl eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Checkpoint file, a run directory (its final checkpoint), or `random` for a freshly
    /// initialised Conv4 (no meta-training).
    #[arg(long, value_name = "CKPT|RUN_DIR|random")]
    checkpoint: String,
    /// `omniglot`, `miniimagenet`, `cifar-fs`, or a path to a labelled image folder
    /// (root/<class>/<image>.png|jpg|jpeg).
    #[arg(long, default_value = "omniglot")]
    dataset: String,
    /// Split (train, val, test) of omniglot, miniimagenet or cifar-fs; an image folder is one
    /// split.
    #[arg(long, default_value = "test")]
    split: String,
    /// (ways, shots) settings, e.g. `--setting 5w1s --setting 5w5s` or `--setting 5w1s,20w1s`.
    /// Default 5w1s.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["ways", "shots"])]
    setting: Vec<Setting>,
    /// Ways of a single setting (with --shots; or use --setting).
    #[arg(long)]
    ways: Option<usize>,
    /// Shots of a single setting (with --ways; or use --setting).
    #[arg(long)]
    shots: Option<usize>,
    /// Query images per class.
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Episodes per setting.
    #[arg(long, default_value_t = 2000)]
    episodes: u64,
    /// `adapt` (inner-loop fine-tuning, fresh head) or `proto` (cosine prototypes, frozen).
    #[arg(long, default_value = "adapt")]
    mode: Mode,
    /// Adapt mode: fresh head initialisation, `zero` or `proto` (Proto-MAML).
    #[arg(long, default_value = "zero")]
    head: HeadInit,
    /// Proto mode: `backbone` (flattened Conv4 output) or `projection` features.
    #[arg(long, default_value = "backbone")]
    features: Features,
    /// Adapt mode: inner steps (default: the checkpoint's).
    #[arg(long)]
    adapt_steps: Option<usize>,
    /// Adapt mode: inner learning rate (default: the checkpoint's).
    #[arg(long)]
    adapt_lr: Option<f64>,
    /// Adapt mode: choose the inner step size and steps of each setting on validation episodes
    /// first (the grid --tune-lrs x --tune-steps, best mean on --tune-split), then score with them
    /// (docs/evaluation.md, "Choosing the test-time step").
    #[arg(long, conflicts_with_all = ["adapt_steps", "adapt_lr"])]
    tune_adapt: bool,
    /// --tune-adapt: step sizes tried (default 0.05,0.1,0.2,0.4 and the checkpoint's).
    #[arg(long, value_delimiter = ',', requires = "tune_adapt")]
    tune_lrs: Vec<f64>,
    /// --tune-adapt: step counts tried (default 1,5,10 and the checkpoint's).
    #[arg(long, value_delimiter = ',', requires = "tune_adapt")]
    tune_steps: Vec<usize>,
    /// --tune-adapt: the dataset the choice is made on (default: --dataset; required when
    /// --dataset is an image folder, which has no validation split: name a validation folder).
    #[arg(long, requires = "tune_adapt")]
    tune_dataset: Option<String>,
    /// --tune-adapt: the split the choice is made on.
    #[arg(long, default_value = "val", requires = "tune_adapt")]
    tune_split: String,
    /// --tune-adapt: validation episodes per setting.
    #[arg(long, default_value_t = 500, requires = "tune_adapt")]
    tune_episodes: u64,
    /// --tune-adapt: validation episode seed (the same seed gives every model the same episodes).
    #[arg(long, default_value_t = 1, requires = "tune_adapt")]
    tune_seed: u64,
    /// Episode seed: the same seed gives the same episodes for every model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `--checkpoint random`: initialisation seed.
    #[arg(long, default_value_t = 0)]
    init_seed: u64,
    /// `--checkpoint random`: input channels (default: 1 for Omniglot, else 3).
    #[arg(long)]
    channels: Option<usize>,
    /// `--checkpoint random`: input side in pixels (default 28; a checkpoint has its own).
    #[arg(long)]
    image_size: Option<usize>,
    /// Omniglot: no 90/180/270-degree rotation classes.
    #[arg(long)]
    no_rotations: bool,
    /// Data directory (default: $BMSSL_DATA, else <exe>/../../data, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Also write the results (with every episode's accuracy) to this JSON file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A model loaded from `--checkpoint`, with where it came from.
pub struct Loaded {
    pub model: Model,
    /// The checkpoint file (`None` for `random`).
    pub file: Option<PathBuf>,
    /// `final` / `best` when `--checkpoint` named a run directory.
    pub which: Option<&'static str>,
    /// Meta-steps of the checkpoint.
    pub step: Option<u64>,
}

impl Loaded {
    /// What eval.json and the embeddings' metadata record about the checkpoint.
    pub fn describe(&self, spec: &str) -> serde_json::Value {
        json!({
            "given": spec,
            "file": self.file.as_ref().map(|p| p.display().to_string()),
            "which": self.which,
            "step": self.step,
        })
    }
}

/// Loads `--checkpoint`: a checkpoint file, a run directory (its final checkpoint, saying so on
/// stderr unless `quiet`), or `random` (a fresh `random_arch()` from `init_seed`).
pub fn load_model(
    spec: &str,
    random_arch: impl FnOnce() -> ArchSpec,
    init_seed: u64,
    quiet: bool,
) -> anyhow::Result<Loaded> {
    if spec == "random" {
        return Ok(Loaded {
            model: Model::random(random_arch(), init_seed)?,
            file: None,
            which: None,
            step: None,
        });
    }
    let r = checkpoint::resolve(Path::new(spec))
        .with_context(|| format!("loading checkpoint {spec}"))?;
    if !quiet && !r.note.is_empty() {
        eprintln!("{}", r.note);
    }
    let model =
        Model::from_checkpoint(&r.checkpoint).with_context(|| format!("checkpoint {spec}"))?;
    Ok(Loaded {
        model,
        step: Some(r.checkpoint.step),
        file: Some(r.path),
        which: r.which,
    })
}

/// Runs `bmssl eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let settings = match (a.ways, a.shots) {
        (Some(ways), Some(shots)) => vec![format!("{ways}w{shots}s").parse::<Setting>()?],
        (None, None) if a.setting.is_empty() => vec![Setting { ways: 5, shots: 1 }],
        (None, None) => a.setting.clone(),
        _ => bail!("--ways and --shots go together (or use --setting 5w1s)"),
    };
    let omniglot = a.dataset == "omniglot";
    let channels = a.channels.unwrap_or(if omniglot { 1 } else { 3 });
    bmssl::limits::check_threads(a.threads)?;
    // The output file is checked before any episode: a typo must not cost the evaluation.
    if let Some(path) = &a.json {
        bmssl::io::check_writable(path).context("--json")?;
    }
    if a.tune_adapt {
        Tuning::check_flags(&a)?;
    }
    let loaded = load_model(
        &a.checkpoint,
        || ArchSpec::conv4(channels, a.image_size.unwrap_or(28), 5),
        a.init_seed,
        a.quiet,
    )?;
    let model = &loaded.model;
    if a.checkpoint != "random" && a.image_size.is_some_and(|s| s != model.arch.image_size) {
        bail!(
            "--image-size {} contradicts the checkpoint, whose model takes {}x{} images",
            a.image_size.unwrap_or(0),
            model.arch.image_size,
            model.arch.image_size
        );
    }
    if a.checkpoint != "random" && a.channels.is_some_and(|c| c != model.arch.in_channels) {
        bail!(
            "--channels {} contradicts the checkpoint, whose model takes {} channel(s)",
            a.channels.unwrap_or(0),
            model.arch.in_channels
        );
    }
    let shape: ImageShape = model.image_shape();
    let start = Instant::now();
    let data = open_split(
        &a.dataset,
        &a.split,
        shape,
        !a.no_rotations,
        a.data_dir.as_deref(),
    )
    .with_context(|| format!("opening dataset {}", a.dataset))?;
    if !a.quiet {
        // Omniglot's classes are characters and their rotations: say so, or 1692 test classes
        // look like a mistake.
        let classes = if omniglot && !a.no_rotations && data.num_classes() % 4 == 0 {
            format!(
                "{} classes: {} characters x 4 rotations",
                data.num_classes(),
                data.num_classes() / 4
            )
        } else {
            format!("{} classes", data.num_classes())
        };
        eprintln!(
            "loaded {} ({classes}, {} images) in {:.1} s",
            data.name(),
            data.num_images(),
            start.elapsed().as_secs_f64()
        );
    }
    // Every setting is checked before any is evaluated: a typo in the last one must not cost the
    // time of the first ones.
    for &s in &settings {
        bmssl::episodes::sample_episode(data.as_ref(), s.ways, s.shots, a.queries, a.seed, 0)
            .with_context(|| format!("setting {s}"))?;
    }
    let opts = EvalOptions {
        mode: a.mode,
        queries: a.queries,
        episodes: a.episodes,
        seed: a.seed,
        head: a.head,
        adapt: model.inner.with(
            a.adapt_lr.unwrap_or(model.inner.inner_lr),
            a.adapt_steps.unwrap_or(model.inner.inner_steps),
        ),
        features: a.features,
    };
    opts.validate()?;
    let tuning = match a.tune_adapt {
        true => Some(Tuning::prepare(&a, model, shape, &settings)?),
        false => None,
    };
    let pool = crate::thread_pool(a.threads)?;
    let method = match a.mode {
        Mode::Adapt if a.tune_adapt => format!(
            "adapt (step size and steps chosen per setting on {}, {:?} head)",
            a.tune_split, opts.head
        )
        .to_lowercase(),
        Mode::Adapt => format!(
            "adapt ({} steps, lr {}, {:?} head)",
            opts.adapt.inner_steps, opts.adapt.inner_lr, opts.head
        )
        .to_lowercase(),
        Mode::Proto => format!("proto ({:?} features, cosine)", opts.features).to_lowercase(),
    };
    println!(
        "{} on {} ({} queries per class, episode seed {}, {method})",
        a.checkpoint,
        data.name(),
        a.queries,
        a.seed
    );
    let mut results = Vec::new();
    for s in settings {
        let (opts, tuned) = match &tuning {
            Some(t) => {
                let tuned = pool.install(|| t.choose(&a, model, s, &opts))?;
                (tuned.apply(&opts), Some(tuned))
            }
            None => (opts.clone(), None),
        };
        let bar = Ticker::new(a.episodes, format!("{s} episodes"), Style::detect(a.quiet));
        let r = pool
            .install(|| {
                EvalRecord::measure(model, data.as_ref(), &a.split, s, &opts, &|| bar.inc())
            })
            .with_context(|| format!("evaluating {s}"))?;
        bar.finish();
        let chosen = match &tuned {
            Some(t) => format!(
                ", lr {} x {} steps chosen on {}",
                t.best().lr,
                t.best().steps,
                a.tune_split
            ),
            None => String::new(),
        };
        println!(
            "{}-way {}-shot: {:.2}% +- {:.2}% ({} episodes, {:.1} s{chosen})",
            s.ways,
            s.shots,
            100.0 * r.mean,
            100.0 * r.ci95,
            r.episodes,
            r.seconds
        );
        results.push(EvalRecord {
            tuning: tuned.as_ref().map(|t| tuning_json(t, &a)),
            checkpoint_step: loaded.step,
            ..r
        });
    }
    if let Some(path) = &a.json {
        let extra = json!({
            "checkpoint": a.checkpoint,
            "init_seed": if a.checkpoint == "random" { Some(a.init_seed) } else { None },
            "rotations": !a.no_rotations,
            "threads": pool.current_num_threads(),
        });
        EvalReport {
            checkpoint_scored: loaded.describe(&a.checkpoint),
            dataset: data.name().to_string(),
            split: a.split.clone(),
            options: opts,
            interval: eval::record::INTERVAL.to_string(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            results,
        }
        .write(path)?;
    }
    Ok(())
}

/// `--tune-adapt`: the validation split and grid the test-time step is chosen on.
struct Tuning {
    data: std::sync::Arc<dyn bmssl::data::Dataset>,
    grid: AdaptGrid,
}

impl Tuning {
    /// Refuses a choice that cannot be made or would be made on the scored episodes (before
    /// any data is read); returns the dataset the choice is made on.
    fn check_flags(a: &EvalArgs) -> anyhow::Result<&str> {
        if a.mode != Mode::Adapt {
            bail!(
                "--tune-adapt chooses adapt mode's step size and steps: use it with --mode adapt"
            );
        }
        bmssl::limits::count(
            "tune_episodes",
            a.tune_episodes,
            2,
            bmssl::limits::MAX_EPISODES,
        )?;
        let dataset = a.tune_dataset.as_deref().unwrap_or(&a.dataset);
        let folder = bmssl::data::known_dataset(dataset).is_none();
        if folder && dataset == a.dataset {
            bail!(
                "--tune-adapt needs validation images, and an image folder ({}) is one split: \
                 name a validation folder with --tune-dataset",
                a.dataset
            );
        }
        // A folder is one split: the split names matter only for the known datasets.
        let same_split = folder || a.tune_split == a.split;
        if dataset == a.dataset && same_split && a.tune_seed == a.seed {
            bail!(
                "--tune-split {} with --tune-seed {} would choose on the very episodes it scores: \
                 use another split (--tune-split val) or another --tune-seed",
                a.tune_split,
                a.tune_seed
            );
        }
        Ok(dataset)
    }

    /// Checks the flags and opens the validation split (before any episode is scored).
    fn prepare(
        a: &EvalArgs,
        model: &Model,
        shape: ImageShape,
        settings: &[Setting],
    ) -> anyhow::Result<Self> {
        let dataset = Self::check_flags(a)?;
        let default = AdaptGrid::default_for(model)?;
        let grid = AdaptGrid::new(
            if a.tune_lrs.is_empty() {
                &default.lrs
            } else {
                &a.tune_lrs
            },
            if a.tune_steps.is_empty() {
                &default.steps
            } else {
                &a.tune_steps
            },
        )?;
        let data = open_split(
            dataset,
            &a.tune_split,
            shape,
            !a.no_rotations,
            a.data_dir.as_deref(),
        )
        .with_context(|| format!("opening --tune-dataset {dataset} (split {})", a.tune_split))?;
        for &s in settings {
            bmssl::episodes::sample_episode(
                data.as_ref(),
                s.ways,
                s.shots,
                a.queries,
                a.tune_seed,
                0,
            )
            .with_context(|| format!("setting {s} on --tune-split {}", a.tune_split))?;
        }
        Ok(Tuning { data, grid })
    }

    /// Scores the grid for `s` on the validation episodes and prints the choice.
    fn choose(
        &self,
        a: &EvalArgs,
        model: &Model,
        s: Setting,
        opts: &EvalOptions,
    ) -> anyhow::Result<Tuned> {
        let val = EvalOptions {
            episodes: a.tune_episodes,
            seed: a.tune_seed,
            ..opts.clone()
        };
        let bar = Ticker::new(
            a.tune_episodes,
            format!(
                "{s} choosing the step on {} ({} x {} grid)",
                a.tune_split,
                self.grid.lrs.len(),
                self.grid.steps.len()
            ),
            Style::detect(a.quiet),
        );
        let t = Instant::now();
        let tuned = tuning::tune_adapt(model, self.data.as_ref(), s, &val, &self.grid, &|| {
            bar.inc()
        })
        .with_context(|| format!("choosing the test-time step for {s}"))?;
        bar.finish();
        if !a.quiet {
            let cells: Vec<String> = tuned
                .grid
                .iter()
                .map(|p| format!("{}x{} {:.2}", p.lr, p.steps, 100.0 * p.summary.mean))
                .collect();
            eprintln!(
                "{s}: {} validation episodes (seed {}) in {:.1} s, lr x steps -> %: {}",
                a.tune_episodes,
                a.tune_seed,
                t.elapsed().as_secs_f64(),
                cells.join(", ")
            );
        }
        Ok(tuned)
    }
}

/// What eval.json records of a setting's choice: the grid's validation means and the choice.
fn tuning_json(t: &Tuned, a: &EvalArgs) -> serde_json::Value {
    json!({
        "dataset": a.tune_dataset.as_deref().unwrap_or(&a.dataset),
        "split": a.tune_split,
        "episodes": a.tune_episodes,
        "seed": a.tune_seed,
        "rule": "highest validation mean; ties to the smaller step size, then fewer steps",
        "chosen": { "lr": t.best().lr, "steps": t.best().steps },
        "grid": t.grid.iter().map(|p| json!({
            "lr": p.lr,
            "steps": p.steps,
            "mean": p.summary.mean,
            "ci95": p.summary.ci95,
        })).collect::<Vec<_>>(),
    })
}

//! `bmssl reproduce`: the paper's Tables 3, 5, 6 and 7 under one budget, resumably, then
//! `OUT/report.md` with every figure's 95% interval, a verdict per claim and plots
//! (docs/reproduce.md). The orchestration is the library's [`bmssl::reproduce`]; this is the
//! progress display, the datasets and the plots.

use crate::plots::{self, Series};
use crate::progress::{Style, Ticker};
use anyhow::{Context, Result};
use bmssl::config::TrainConfig;
use bmssl::data::{known_dataset, open_split};
use bmssl::eval::Setting;
use bmssl::meta::Target;
use bmssl::reproduce::{
    self, estimate, report, Budget, Part, PartResult, Plan, PlanOptions, Splits,
};
use bmssl::train::{Observer, StepRecord, ValidationRecord};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `reproduce`.
#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// tiny (minutes: checks the machinery), small (about 1.1 h on 2 cores) or full (the
    /// 1250-meta-step, 2000-episode protocol).
    #[arg(long, default_value = "small")]
    budget: String,
    /// Output directory (default: reproduce-<budget>). A re-run in the same directory skips
    /// finished parts.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `omniglot` (the paper's Table 3 rows) or another dataset `bmssl train` accepts.
    #[arg(long, default_value = "omniglot")]
    dataset: String,
    /// Data directory (default: $BMSSL_DATA, else the repository's data/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seed of every training run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the test episodes (the same for every part).
    #[arg(long, default_value_t = 0)]
    episode_seed: u64,
    /// BMSSL target of the ablations (Tables 5-7): paper or query-step.
    #[arg(long, default_value = "paper")]
    ablation_target: Target,
    /// Print the plan and its predicted duration, run nothing.
    #[arg(long)]
    estimate_only: bool,
    /// Only (re)write the report and plots from the results already in --out.
    #[arg(long, conflicts_with = "estimate_only")]
    report_only: bool,
    /// No progress bars: one line per part and evaluation.
    #[arg(long, short)]
    quiet: bool,
}

struct Display {
    bar: Option<Ticker>,
    quiet: bool,
    started: Instant,
}

impl Display {
    fn bar(&mut self, len: u64, message: String) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        // With --quiet: the part lines only; off a terminal: timed log lines.
        if !self.quiet {
            self.bar = Some(Ticker::new(
                len,
                format!("  {message}"),
                Style::detect(false),
            ));
        }
    }
    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Display {
    fn step(&mut self, r: &StepRecord) {
        if let Some(b) = &self.bar {
            b.set_position(r.step);
        }
    }
    fn validation(&mut self, r: &ValidationRecord) {
        self.line(&format!(
            "  step {}: validation 5w1s {:.2}% ± {:.2}%",
            r.step,
            100.0 * r.val_accuracy,
            100.0 * r.val_ci95
        ));
    }
    fn warning(&mut self, message: &str) {
        self.line(&format!("  warning: {message}"));
    }
}

impl reproduce::Progress for Display {
    fn part(&mut self, index: usize, total: usize, part: &Part, skipped: bool) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let elapsed = self.started.elapsed().as_secs_f64() / 60.0;
        if skipped {
            eprintln!(
                "[{}/{total}] {}: finished earlier, skipped",
                index + 1,
                part.id
            );
            return;
        }
        let steps = if part.config.method == bmssl::config::TrainMethod::Scratch {
            0
        } else {
            part.config.outer.meta_steps
        };
        eprintln!(
            "[{}/{total}] {}: {} meta-steps, then {} ({:.0} min elapsed)",
            index + 1,
            part.id,
            steps,
            part.settings
                .iter()
                .map(Setting::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            elapsed
        );
        if steps > 0 {
            self.bar(steps, "meta-steps".into());
        }
    }
    fn eval(&mut self, _part: &Part, setting: Setting, episodes: u64) {
        self.bar(episodes, format!("test {setting}"));
    }
    fn episode(&self) {
        if let Some(b) = &self.bar {
            b.inc();
        }
    }
    fn finished(&mut self, _part: &Part, r: &PartResult) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let evals: Vec<String> = r
            .evals
            .iter()
            .map(|e| {
                format!(
                    "{} {:.2}% ± {:.2}%",
                    e.setting,
                    100.0 * e.mean,
                    100.0 * e.ci95
                )
            })
            .collect();
        let speed = r
            .speed
            .map_or(String::new(), |s| format!(", {:.3} meta-steps/s", s.mean));
        eprintln!("  done: {}{speed}", evals.join(", "));
    }
}

/// The three splits of the data `cfg` reads; an image folder is one split, used for all three
/// (its numbers are then not held-out, and the report's dataset line says which folder it was).
pub(crate) fn open_splits(cfg: &TrainConfig, data_dir: Option<&Path>) -> Result<Splits> {
    let shape = cfg.data.shape();
    let open = |split: &str| {
        let split = if known_dataset(&cfg.data.dataset).is_some() {
            split
        } else {
            &cfg.data.split
        };
        open_split(
            &cfg.data.dataset,
            split,
            shape,
            cfg.data.rotations,
            data_dir,
        )
        .with_context(|| format!("opening {} / {split}", cfg.data.dataset))
    };
    Ok(Splits {
        train: open("train")?,
        val: open("val")?,
        test: open("test")?,
    })
}

/// Today's date (UTC), from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CPU model, cores and memory, from /proc (Linux); `unknown machine` elsewhere.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    match model {
        Some(m) => format!("{m}, {cores} cores{mem}"),
        None => "unknown machine".into(),
    }
}

fn minutes(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

/// Draws the report's plots from the results in `out`.
fn draw_plots(out: &Path, results: &report::Results) -> Result<()> {
    std::fs::create_dir_all(out.join("plots"))
        .with_context(|| format!("creating {}", out.join("plots").display()))?;
    let points = report::delta_points(results);
    // The mean with its 95% interval shaded and each measured delta marked.
    let band = |f: &dyn Fn(&report::DeltaPoint) -> Option<reproduce::Interval>, scale: f64| {
        let measured: Vec<(f64, reproduce::Interval)> = points
            .iter()
            .filter_map(|p| f(p).map(|i| (p.0, i)))
            .collect();
        vec![Series {
            name: "mean (95% interval shaded)".into(),
            points: measured.iter().map(|(x, i)| (*x, scale * i.mean)).collect(),
            ci95: Some(measured.iter().map(|(_, i)| scale * i.ci95).collect()),
        }]
    };
    plots::line_chart(
        &out.join(report::PLOT_DELTA_ACCURACY),
        "Table 7: 5-way 1-shot test accuracy against delta (L = 5)",
        "delta (bootstrap steps)",
        "accuracy (%)",
        &band(&|p| p.1, 100.0),
    )?;
    plots::line_chart(
        &out.join(report::PLOT_DELTA_SPEED),
        "Table 7: meta-training speed against delta (L = 5)",
        "delta (bootstrap steps)",
        "meta-steps / s",
        &band(&|p| p.2, 1.0),
    )?;
    let curves = report::learning_curves(results);
    plots::learning_and_loss_charts(
        (
            &out.join(report::PLOT_LEARNING_CURVES),
            "Validation accuracy (5-way 1-shot, proto) per method",
        ),
        (
            &out.join(report::PLOT_LOSS_CURVES),
            "Outer loss per method (window means; each method's own loss)",
        ),
        &curves,
    )
}

/// Runs `reproduce`.
pub fn run(args: ReproduceArgs) -> Result<()> {
    let budget = Budget::named(&args.budget)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reproduce-{}", budget.name)));
    let plan = Plan::new(
        budget,
        PlanOptions {
            dataset: args.dataset.clone(),
            seed: args.seed,
            episode_seed: args.episode_seed,
            ablation_target: args.ablation_target,
        },
    )?;
    let (per_part, total) = estimate::plan_seconds(&plan);
    let remaining: f64 = per_part
        .iter()
        .filter(|(id, _)| !reproduce::result_path(&out, id).exists())
        .map(|(_, s)| s)
        .sum();
    eprintln!(
        "budget {}: {} parts ({} meta-steps each, {} test episodes per setting); predicted {} on the reference 2-core machine, {} of it still to run; output {}",
        plan.budget.name,
        plan.parts.len(),
        plan.budget.meta_steps,
        plan.budget.eval_episodes,
        minutes(total),
        minutes(remaining),
        out.display()
    );
    if args.estimate_only {
        for (id, s) in per_part {
            println!("{id:28} {}", minutes(s));
        }
        return Ok(());
    }
    if !args.report_only {
        let t0 = Instant::now();
        let splits = open_splits(&plan.parts[0].config, args.data_dir.as_deref())?;
        eprintln!(
            "data: {} / {} / {} images (train / val / test) loaded in {:.1}s",
            splits.train.num_images(),
            splits.val.num_images(),
            splits.test.num_images(),
            t0.elapsed().as_secs_f64()
        );
        let mut display = Display {
            bar: None,
            quiet: args.quiet,
            started: Instant::now(),
        };
        let summary = reproduce::run(&out, &plan, &splits, &mut display)?;
        if let Some(b) = display.bar.take() {
            b.finish();
        }
        eprintln!(
            "{} parts ran, {} were already finished, in {}",
            summary.ran.len(),
            summary.skipped.len(),
            minutes(display.started.elapsed().as_secs_f64())
        );
    }
    let results = report::load(&out)?;
    if let Err(e) = draw_plots(&out, &results) {
        eprintln!("warning: plotting failed: {e:#}");
    }
    let command: Vec<String> = std::env::args().collect();
    let path = report::write(
        &out,
        &report::ReportContext {
            date: today(),
            machine: machine(),
            commit: env!("BMSSL_BUILD_COMMIT").to_string(),
            command: command.join(" "),
        },
    )?;
    if let Some(note) = results.plan.budget.too_small_note() {
        println!("warning: {note}");
    }
    for c in report::claims(&results) {
        println!("{}: {}", c.claim, c.verdict.words());
    }
    println!("report: {}", path.display());
    Ok(())
}

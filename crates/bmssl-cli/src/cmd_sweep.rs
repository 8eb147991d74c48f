//! `bmssl sweep SPEC.toml`: a grid of training runs, every combination a resumable part, run
//! side by side within the core budget, then `OUT/summary.md`, `summary.csv` and plots
//! (docs/sweep.md). The orchestration is the library's [`bmssl::reproduce::sweep`]; this is the
//! command line, the progress display, the datasets and the plots.

use crate::plots::{self, ErrorSeries};
use anyhow::{Context, Result};
use bmssl::reproduce::sweep::{self, summary, PartStatus, RunOptions, Spec, SweepPart};
use bmssl::reproduce::{EvalSpec, PartProgress};
use bmssl::train::{Observer, StepRecord, ValidationRecord};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `sweep`.
#[derive(clap::Args)]
pub struct SweepArgs {
    /// The sweep's spec file (docs/sweep.md).
    spec: PathBuf,
    /// Output directory (default: the spec's file name without .toml, beside it). A re-run in the
    /// same directory skips finished parts and resumes interrupted ones.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Parts run side by side (default: the spec's `[sweep] jobs`, else 1).
    #[arg(long)]
    jobs: Option<usize>,
    /// Threads of each part (default: the cores divided by the parts run side by side).
    #[arg(long)]
    threads_per_part: Option<usize>,
    /// Data directory (default: the spec's `[sweep] dataset_dir`, else $BMSSL_DATA, else the
    /// repository's data/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print every part (its id and the command that runs it alone), run nothing.
    #[arg(long, conflicts_with_all = ["part", "summarize"])]
    list: bool,
    /// With --list: only the ids, one a line (for a job array or GNU parallel).
    #[arg(long, requires = "list")]
    ids: bool,
    /// Write each part's config.toml into OUT/parts/<id>/ (so parts can be pre-trained with
    /// `bmssl train --config ... --run-dir ...`), run nothing.
    #[arg(long, conflicts_with_all = ["part", "summarize"])]
    write_configs: bool,
    /// Run only this part (repeatable); no summary (collect with --summarize).
    #[arg(long, conflicts_with = "summarize")]
    part: Vec<String>,
    /// Only (re)write summary.md, summary.csv and the plots from the parts finished in --out.
    #[arg(long)]
    summarize: bool,
    /// No progress bars: log lines only (also when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Progress: a line per part start and end, a bar per running part (none with --quiet).
struct Display {
    bars: Option<MultiProgress>,
    started: Instant,
}

impl Display {
    fn line(&self, text: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

struct PartDisplay<'a> {
    display: &'a Display,
    id: &'a str,
    bar: Option<ProgressBar>,
}

impl PartDisplay<'_> {
    fn bar(&mut self, len: u64, message: String) {
        let Some(m) = &self.display.bars else { return };
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            m.remove(&b);
        }
        let b = m.add(ProgressBar::new(len));
        b.set_style(
            ProgressStyle::with_template(
                "  {prefix} {msg} {bar:25.cyan/blue} {pos}/{len} [{elapsed} < {eta}]",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix(self.id.to_string());
        b.set_message(message);
        self.bar = Some(b);
    }
}

impl Drop for PartDisplay<'_> {
    fn drop(&mut self) {
        if let (Some(b), Some(m)) = (self.bar.take(), &self.display.bars) {
            b.finish_and_clear();
            m.remove(&b);
        }
    }
}

impl Observer for PartDisplay<'_> {
    fn step(&mut self, r: &StepRecord) {
        if let Some(b) = &self.bar {
            b.set_position(r.step);
        }
    }
    fn validation(&mut self, r: &ValidationRecord) {
        self.display.line(&format!(
            "  {}: step {}: validation 5w1s {:.2}% ± {:.2}%",
            self.id,
            r.step,
            100.0 * r.val_accuracy,
            100.0 * r.val_ci95
        ));
    }
    fn warning(&mut self, message: &str) {
        self.display
            .line(&format!("  {}: warning: {message}", self.id));
    }
}

impl PartProgress for PartDisplay<'_> {
    fn eval(&mut self, spec: &EvalSpec) {
        self.bar(spec.episodes, summary::column_name(spec));
    }
    fn episode(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
}

impl sweep::SweepProgress for Display {
    fn started<'a>(
        &'a self,
        index: usize,
        total: usize,
        part: &'a SweepPart,
    ) -> Box<dyn PartProgress + 'a> {
        let steps = if part.config.method == bmssl::config::TrainMethod::Scratch {
            0
        } else {
            part.config.outer.meta_steps
        };
        self.line(&format!(
            "[{}/{total}] {}: starting: {steps} meta-steps (resumed if begun), then {} evaluations ({:.0} min elapsed)",
            index + 1,
            part.id,
            part.evals.len(),
            self.started.elapsed().as_secs_f64() / 60.0
        ));
        let mut d = PartDisplay {
            display: self,
            id: &part.id,
            bar: None,
        };
        if steps > 0 {
            d.bar(steps, "meta-steps".into());
        }
        Box::new(d)
    }
    fn ended(&self, index: usize, total: usize, part: &SweepPart, status: &PartStatus) {
        let head = format!("[{}/{total}] {}", index + 1, part.id);
        match status {
            PartStatus::Skipped => self.line(&format!("{head}: finished earlier, skipped")),
            PartStatus::Locked => self.line(&format!(
                "{head}: another process holds its lock (OUT/parts/{}/.lock), skipped",
                part.id
            )),
            PartStatus::Failed(e) => self.line(&format!("{head}: failed: {e}")),
            PartStatus::Ran(r) => {
                let evals: Vec<String> = r
                    .evals
                    .iter()
                    .filter_map(|e| {
                        let spec = part.evals.iter().find(|s| s.matches(e, None))?;
                        Some(format!(
                            "{} {:.2}% ± {:.2}%",
                            summary::column_name(spec),
                            100.0 * e.mean,
                            100.0 * e.ci95
                        ))
                    })
                    .collect();
                let speed = r
                    .speed
                    .map_or(String::new(), |s| format!(", {:.3} meta-steps/s", s.mean));
                self.line(&format!(
                    "{head}: done: {}{speed}, {:.0} s of training",
                    evals.join(", "),
                    r.train_seconds
                ));
            }
        }
    }
}

/// The default output directory: the spec's file name without its extension, beside it.
fn default_out(spec: &Path) -> PathBuf {
    let stem = spec
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    spec.with_file_name(stem)
}

/// Draws the sweep's plots from its summary.
fn draw_plots(out: &Path, spec: &Spec, s: &summary::Summary) -> Result<()> {
    std::fs::create_dir_all(out.join("plots"))
        .with_context(|| format!("creating {}", out.join("plots").display()))?;
    for p in summary::axis_plots(s, spec) {
        plots::error_bar_chart(
            &out.join(summary::axis_plot(&p.axis)),
            &format!("Validation accuracy ({}) against {}", p.column, p.axis),
            &p.axis,
            "accuracy (%), 95% interval",
            p.categories.as_deref(),
            &p.lines
                .iter()
                .map(|(name, points)| ErrorSeries {
                    name: name.clone(),
                    points: points.clone(),
                })
                .collect::<Vec<_>>(),
        )?;
    }
    let curves = summary::curves(s);
    plots::learning_and_loss_charts(
        (
            &out.join(summary::PLOT_LEARNING_CURVES),
            "Training-time validation accuracy (5-way 1-shot) per part",
        ),
        (
            &out.join(summary::PLOT_LOSS_CURVES),
            "Outer loss per part (window means; each method's own loss)",
        ),
        &curves,
    )
}

/// Writes the summary files and plots; returns the summary's path.
fn summarize(out: &Path, spec: &Spec) -> Result<PathBuf> {
    let s = summary::collect(out, spec)?;
    if let Err(e) = draw_plots(out, spec, &s) {
        eprintln!("warning: plotting failed: {e:#}");
    }
    let (md, csv) = summary::write(out, spec, &s)?;
    let finished = s.rows.iter().filter(|r| r.result.is_some()).count();
    eprintln!(
        "{finished} of {} parts finished; summary: {}, {}",
        s.rows.len(),
        md.display(),
        csv.display()
    );
    Ok(md)
}

/// Runs `sweep`.
pub fn run(args: SweepArgs) -> Result<()> {
    let spec = Spec::load(&args.spec)?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.spec));
    if args.list {
        if args.ids {
            for p in &spec.parts {
                println!("{}", p.id);
            }
            return Ok(());
        }
        for p in &spec.parts {
            let state = if sweep::finished(&out, p).is_some() {
                "finished"
            } else {
                "to run"
            };
            println!(
                "{:40} {state:8}  bmssl sweep {} --out {} --part {}",
                p.id,
                args.spec.display(),
                out.display(),
                p.id
            );
        }
        return Ok(());
    }
    if args.write_configs {
        sweep::prepare(&out, &spec, true)?;
        eprintln!(
            "wrote the config.toml of {} parts under {}",
            spec.parts.len(),
            out.join("parts").display()
        );
        return Ok(());
    }
    if args.summarize {
        let md = summarize(&out, &spec)?;
        println!("summary: {}", md.display());
        return Ok(());
    }

    let jobs = args.jobs.unwrap_or(spec.jobs).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads_per_part
        .unwrap_or_else(|| sweep::threads_per_part(cores, jobs))
        .max(1);
    bmssl::limits::check_threads(threads).context("--threads-per-part")?;
    let cfg = &spec.parts[0].config;
    let data_dir = args.data_dir.clone().or_else(|| spec.dataset_dir.clone());
    let t0 = Instant::now();
    let splits = crate::cmd_reproduce::open_splits(cfg, data_dir.as_deref())?;
    let todo = if args.part.is_empty() {
        spec.parts.len()
    } else {
        args.part.len()
    };
    eprintln!(
        "sweep {}: {todo} of {} parts, {jobs} side by side with {threads} threads each; data {} / {} / {} images (train / val / test) loaded in {:.1}s; output {}",
        args.spec.display(),
        spec.parts.len(),
        splits.train.num_images(),
        splits.val.num_images(),
        splits.test.num_images(),
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    let display = Display {
        // Bars only on a terminal: a hidden MultiProgress would swallow the log lines too
        // (a scheduler's log file gets the lines).
        bars: (!args.quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        started: Instant::now(),
    };
    let r = sweep::run(
        &out,
        &spec,
        &splits,
        &RunOptions {
            jobs,
            threads,
            only: args.part.clone(),
        },
        &display,
    )?;
    if let Some(m) = &display.bars {
        let _ = m.clear();
    }
    eprintln!(
        "{} parts ran, {} were already finished, {} held by another process, {} failed, in {:.0} s",
        r.ran.len(),
        r.skipped.len(),
        r.locked.len(),
        r.failed.len(),
        display.started.elapsed().as_secs_f64()
    );
    if args.part.is_empty() {
        let md = summarize(&out, &spec)?;
        println!("summary: {}", md.display());
    }
    if let Some((id, e)) = r.failed.into_iter().next() {
        return Err(anyhow::Error::new(e).context(format!("part {id}")));
    }
    Ok(())
}

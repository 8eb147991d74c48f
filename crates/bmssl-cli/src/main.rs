//! `bmssl`: the command-line front of the `bmssl` library.
//!
//! Cargo-style subcommands, one module each (`cmd_<name>.rs`). To add one: declare the module,
//! add a variant to [`Command`] and an arm to [`run`].
//! Errors: one line `error: <message: cause: cause...>` on stderr and exit code 1 (2 for a
//! command-line usage error, also one line).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse: the engine allocates and frees megabyte-sized
/// activation buffers at every step, which glibc's allocator returns to the kernel (page faults and
/// zeroing cost ~20% of a meta-step otherwise). [`allocator::keep_freed_memory`] goes further.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod allocator;

/// Every `println!` of the CLI goes through [`out::line`]: a closed pipe ends output quietly, a
/// full device is an error at the end, never a panic (this shadows the standard macro in every
/// module declared below).
macro_rules! println {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

mod cmd_adapt;
mod cmd_bench;
mod cmd_check;
mod cmd_data;
mod cmd_embed;
mod cmd_eval;
mod cmd_plot;
mod cmd_reproduce;
mod cmd_sweep;
mod cmd_train;
mod config_flags;
mod out;
mod plots;
mod progress;

/// Few-shot learning from unlabelled images (BMSSL, arXiv 2308.14267).
#[derive(Parser)]
#[command(name = "bmssl", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BMSSL_BUILD_COMMIT"), ")"), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Inspect datasets and preview or benchmark task construction.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
    /// Recompute a PyTorch golden meta-gradient in f64 and report the relative error per tensor.
    CheckGradient(cmd_check::CheckArgs),
    /// Meta-steps per second, same configuration and flags as `bmssl_torch.py bench`.
    Bench(cmd_bench::BenchArgs),
    /// Few-shot accuracy (mean +- 95% interval) over fixed test episodes, adapt or proto mode.
    Eval(Box<cmd_eval::EvalArgs>),
    /// Adapt a model to your own labelled images (support/<class>/) and classify a folder.
    Adapt(cmd_adapt::AdaptArgs),
    /// One feature row per image (a dataset split or your folder) to .npy, .safetensors or .csv,
    /// with OUT.labels.csv beside it.
    Embed(Box<cmd_embed::EmbedArgs>),
    /// Meta-train (BMSSL, MetaSSL or a baseline), then evaluate on the test split.
    Train(Box<cmd_train::TrainArgs>),
    /// (Re)draw a run's PNG plots from its metrics.jsonl.
    Plot(cmd_plot::PlotArgs),
    /// The paper's Tables 3, 5, 6, 7 under one budget, resumably; writes OUT/report.md.
    Reproduce(Box<cmd_reproduce::ReproduceArgs>),
    /// A grid of runs from a spec file (base + axes + variants), resumable, parallel, then
    /// OUT/summary.md, summary.csv and plots; --list / --part / --summarize split it across machines.
    Sweep(Box<cmd_sweep::SweepArgs>),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    run_command(cli)?;
    out::finish()
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => cmd_data::run(cmd),
        Command::CheckGradient(args) => cmd_check::run(args),
        Command::Bench(args) => cmd_bench::run(args),
        Command::Eval(args) => cmd_eval::run(*args),
        Command::Adapt(args) => cmd_adapt::run(args),
        Command::Embed(args) => cmd_embed::run(*args),
        Command::Plot(args) => cmd_plot::run(args),
        Command::Train(args) => cmd_train::run(*args),
        Command::Reproduce(args) => cmd_reproduce::run(*args),
        Command::Sweep(args) => cmd_sweep::run(*args),
    }
}

/// A pool of `threads` worker threads (0: one per core), bounded, with the OS error said once.
pub fn thread_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    bmssl::limits::check_threads(threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            anyhow::anyhow!(
                "invalid value for `threads`: cannot start {threads} worker threads: {e}"
            )
        })
}

/// A command-line usage error as one line (the message and clap's tip, without the usage block),
/// so that every failure of `bmssl` is one `error: ` line; help and version print as usual.
fn parse_args() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        if !e.use_stderr() {
            e.exit();
        }
        let text = e.render().to_string();
        let mut parts = text
            .lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
            .filter(|l| !l.is_empty());
        let first = parts.next().unwrap_or("invalid arguments");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            error_line(&format!("{first} (see --help)"));
        } else {
            error_line(&format!("{first}; {} (see --help)", rest.join("; ")));
        }
        ExitCode::from(2)
    })
}

/// Prints `error: <message>` on stderr as one line of reasonable length: a message that echoes a
/// huge value (a 100 MB string) keeps its start and its end (where the cause is). Never panics
/// (stderr may be closed too).
fn error_line(message: &str) {
    const HEAD: usize = 600;
    const TAIL: usize = 300;
    let chars: Vec<char> = message.chars().collect();
    let text = if chars.len() > HEAD + TAIL + 100 {
        format!(
            "{} [... {} characters left out ...] {}",
            chars[..HEAD].iter().collect::<String>(),
            chars.len() - HEAD - TAIL,
            chars[chars.len() - TAIL..].iter().collect::<String>()
        )
    } else {
        message.to_string()
    };
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("error: {text}\n").as_bytes(),
    );
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the context chain with ": " on one line; a cause that spans lines
            // (some decoders' messages do) is joined too.
            let message = format!("{err:#}");
            let lines: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            error_line(&lines.join(" "));
            ExitCode::from(1)
        }
    }
}

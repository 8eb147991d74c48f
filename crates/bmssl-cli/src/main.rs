//! `bmssl`: the command-line front of the `bmssl` library.
//!
//! Cargo-style subcommands, one module each (`cmd_<name>.rs`). To add one: declare the module,
//! add a variant to [`Command`] and an arm to [`run`].
//! Errors: one line `error: <message: cause: cause...>` on stderr and exit code 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse: the engine allocates and frees megabyte-sized
/// activation buffers at every step, which glibc's allocator returns to the kernel (page faults and
/// zeroing cost ~20% of a meta-step otherwise).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cmd_adapt;
mod cmd_bench;
mod cmd_check;
mod cmd_data;
mod cmd_eval;
mod cmd_train;
mod plots;

/// Few-shot learning from unlabelled images (BMSSL, arXiv 2308.14267).
#[derive(Parser)]
#[command(name = "bmssl", version, about)]
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
    /// Meta-train with BMSSL or MetaSSL on unlabelled images, then evaluate on the test split.
    Train(Box<cmd_train::TrainArgs>),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => cmd_data::run(cmd),
        Command::CheckGradient(args) => cmd_check::run(args),
        Command::Bench(args) => cmd_bench::run(args),
        Command::Eval(args) => cmd_eval::run(*args),
        Command::Adapt(args) => cmd_adapt::run(args),
        Command::Train(args) => cmd_train::run(*args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the context chain with ": " on one line.
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

//! `bmssl plot RUN_DIR...`: (re)draw a run's PNG plots from its `metrics.jsonl`, e.g. for a run that
//! was stopped, or while one is still going.

use crate::plots;
use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `plot`.
#[derive(clap::Args)]
pub struct PlotArgs {
    /// Run directories.
    #[arg(required = true)]
    run_dirs: Vec<PathBuf>,
}

/// Draws the plots of every run directory given.
pub fn run(args: PlotArgs) -> Result<()> {
    for dir in &args.run_dirs {
        if !dir.join("metrics.jsonl").exists() {
            anyhow::bail!(
                "{}: no metrics.jsonl (not a run directory, or nothing trained yet)",
                dir.display()
            );
        }
        for file in plots::plot_run(dir)? {
            println!("{}", file.display());
        }
    }
    Ok(())
}

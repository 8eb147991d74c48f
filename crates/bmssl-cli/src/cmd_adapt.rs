//! `bmssl adapt`: adapt a model to your own labelled examples and classify new images
//! (docs/evaluation.md).

use std::path::PathBuf;

use anyhow::Context;
use bmssl::eval::HeadInit;
use bmssl::model::ArchSpec;
use bmssl::predict::{adapt_and_predict, load_support, write_csv, AdaptOptions, Invert};
use clap::Args;

/// `bmssl adapt`.
#[derive(Args)]
pub struct AdaptArgs {
    /// Checkpoint file, a run directory (its final checkpoint), or `random` (a 1-channel 28x28
    /// Conv4, for trying the command out).
    #[arg(long, value_name = "CKPT|RUN_DIR|random")]
    checkpoint: String,
    /// Support folder: one sub-folder per class with a few images each (at least 2 classes).
    #[arg(long, value_name = "DIR")]
    support: PathBuf,
    /// Folder of images to classify.
    #[arg(long, value_name = "DIR")]
    predict: PathBuf,
    /// CSV output (default: standard output).
    #[arg(long, value_name = "CSV")]
    out: Option<PathBuf>,
    /// Invert images: `auto` (grey models: when the mean pixel is above 0.5), `yes`, `no`.
    #[arg(long, default_value = "auto")]
    invert: Invert,
    /// Fresh head initialisation, `zero` or `proto` (Proto-MAML).
    #[arg(long, default_value = "zero")]
    head: HeadInit,
    /// Inner steps (default: the checkpoint's).
    #[arg(long)]
    adapt_steps: Option<usize>,
    /// Inner learning rate (default: the checkpoint's).
    #[arg(long)]
    adapt_lr: Option<f64>,
}

/// Runs `bmssl adapt`.
pub fn run(a: AdaptArgs) -> anyhow::Result<()> {
    // Where the predictions go is checked before any work.
    if let Some(path) = &a.out {
        bmssl::io::check_writable(path).context("--out")?;
    }
    let loaded =
        crate::cmd_eval::load_model(&a.checkpoint, || ArchSpec::conv4(1, 28, 5), 0, false)?;
    let model = loaded.model;
    let support = load_support(&a.support, model.image_shape(), a.invert)
        .with_context(|| format!("reading support set {}", a.support.display()))?;
    let opts = AdaptOptions {
        head: a.head,
        inner: model.inner.with(
            a.adapt_lr.unwrap_or(model.inner.inner_lr),
            a.adapt_steps.unwrap_or(model.inner.inner_steps),
        ),
        invert: a.invert,
    };
    bmssl::limits::check_adapt(
        "adapt_lr",
        opts.inner.inner_lr,
        "adapt_steps",
        opts.inner.inner_steps,
    )?;
    let preds = adapt_and_predict(&model, &support, &a.predict, &opts)
        .with_context(|| format!("classifying {}", a.predict.display()))?;
    let mut csv = Vec::new();
    write_csv(&mut csv, &support.class_names, &preds)?;
    match &a.out {
        Some(path) => {
            // Atomic: a failed write leaves the previous file as it was, never half a file.
            bmssl::io::write_atomic(path, &csv)?;
            eprintln!(
                "adapted to {} classes ({} support images, {} steps); wrote {} predictions to {}",
                support.class_names.len(),
                support.labels.len(),
                opts.inner.inner_steps,
                preds.len(),
                path.display()
            );
        }
        None => crate::out::bytes(&csv),
    }
    Ok(())
}

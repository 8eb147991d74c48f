//! `bmssl check-gradient --golden FILE.npz`: our f64 meta-gradient against the PyTorch reference's.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// Arguments of `check-gradient`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Golden file(s) written by `python bmssl_torch.py golden [options]`.
    #[arg(long, required = true, num_args = 1..)]
    golden: Vec<PathBuf>,
    /// Largest relative error accepted.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
}

/// Prints the max relative error per parameter tensor and overall; fails above the tolerance.
pub fn run(args: CheckArgs) -> Result<()> {
    let mut worst: f64 = 0.0;
    for path in &args.golden {
        let report = bmssl::golden::check_golden(path)
            .with_context(|| format!("checking {}", path.display()))?;
        let o = &report.options;
        println!(
            "{}: method={} target={} L={} delta={} first_order={} N={} K={} M1={} M2={} {}x{}x{}",
            path.display(),
            o.method,
            o.target,
            o.inner_steps,
            o.delta,
            o.first_order,
            o.n_images,
            o.blocks,
            o.m1,
            o.m2,
            o.channels,
            o.size,
            o.size
        );
        println!(
            "  outer loss: ours {:.12} reference {:.12}",
            report.outer_loss_ours, report.outer_loss_reference
        );
        for t in &report.tensors {
            println!(
                "  {:<20} max abs {:>10.3e}  relative {:>10.3e}",
                t.name, t.max_abs, t.relative
            );
        }
        let m = report.max_relative();
        println!(
            "  overall max relative error {m:.3e} ({})",
            if m < args.tolerance { "ok" } else { "FAIL" }
        );
        worst = worst.max(m);
    }
    if worst >= args.tolerance || worst.is_nan() {
        anyhow::bail!(
            "meta-gradient differs from the reference: max relative error {worst:.3e} >= {:.1e}",
            args.tolerance
        );
    }
    Ok(())
}

//! `bmssl bench`: the same configuration as `bmssl_torch.py bench`, same flags and defaults.

use anyhow::Result;
use bmssl::bench::{
    bench_conv4, bench_eval_episodes, bench_meta_steps, conv4_forward_flops, BenchConfig,
};
use bmssl::meta::{MetaSpec, Method, Target};
use bmssl::objective::InnerLoss;

/// Arguments of `bench` (the reference's names).
#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "bmssl")]
    method: MethodArg,
    /// N source images per meta-batch.
    #[arg(long, default_value_t = 20)]
    n_images: usize,
    /// K tasks per meta-batch (N/K ways each).
    #[arg(long, default_value_t = 4)]
    blocks: usize,
    /// Support views per image.
    #[arg(long, default_value_t = 1)]
    m1: usize,
    /// Query views per image.
    #[arg(long, default_value_t = 3)]
    m2: usize,
    /// L.
    #[arg(long, default_value_t = 5)]
    inner_steps: usize,
    /// Extra bootstrap steps.
    #[arg(long, default_value_t = 5)]
    delta: usize,
    #[arg(long, default_value_t = 0.4)]
    inner_lr: f64,
    #[arg(long, default_value_t = 1.0)]
    lam: f64,
    #[arg(long, default_value_t = 0.5)]
    tau: f64,
    #[arg(long, default_value_t = 1)]
    channels: usize,
    #[arg(long, default_value_t = 28)]
    size: usize,
    #[arg(long)]
    first_order: bool,
    #[arg(long, value_enum, default_value = "paper")]
    target: TargetArg,
    /// Timed meta-steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also time Conv4 forward and forward+backward on a batch of this many images (0: skip).
    #[arg(long, default_value_t = 0)]
    conv4_batch: usize,
    /// Also time this many adapt-mode evaluation episodes (5-way 1-shot, --inner-steps SGD steps
    /// at --inner-lr on the support images, 75 queries; spread over the threads as `eval` does;
    /// 0: skip).
    #[arg(long, default_value_t = 0)]
    eval_episodes: usize,
    /// Print one JSON line (as the reference does) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Bmssl,
    Metassl,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TargetArg {
    Paper,
    QueryStep,
}

/// Runs the benchmark and prints meta-steps/s (and Conv4 timings when asked).
pub fn run(a: BenchArgs) -> Result<()> {
    if a.blocks == 0 || !a.n_images.is_multiple_of(a.blocks) {
        anyhow::bail!(
            "invalid value for `n-images`: {} is not a multiple of --blocks {}",
            a.n_images,
            a.blocks
        );
    }
    if a.threads > 0 {
        bmssl::limits::check_threads(a.threads)?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(a.threads)
            .build_global()
            .map_err(|e| {
                anyhow::anyhow!(
                    "invalid value for `threads`: cannot start {} worker threads: {e}",
                    a.threads
                )
            })?;
    }
    let cfg = BenchConfig {
        n_images: a.n_images,
        blocks: a.blocks,
        m1: a.m1,
        m2: a.m2,
        channels: a.channels,
        size: a.size,
        steps: a.steps,
        spec: MetaSpec {
            method: match a.method {
                MethodArg::Bmssl => Method::Bmssl,
                MethodArg::Metassl => Method::Metassl,
            },
            target: match a.target {
                TargetArg::Paper => Target::Paper,
                TargetArg::QueryStep => Target::QueryStep,
            },
            inner: bmssl::meta::InnerLoop {
                inner_lr: a.inner_lr,
                inner_steps: a.inner_steps,
                inner_loss: InnerLoss {
                    contrastive_weight: a.lam,
                    temperature: a.tau,
                    ..InnerLoss::PAPER
                },
            },
            bootstrap_steps: a.delta,
            first_order: a.first_order,
            zero_head: false,
            bootstrap: bmssl::meta::BootstrapSpec::PAPER,
        },
    };
    let mut result = serde_json::to_value(bench_meta_steps(&cfg)?)?;
    if a.conv4_batch > 0 {
        let (fwd, fwd_bwd) = bench_conv4(a.conv4_batch, a.channels, a.size, 20)?;
        let flops = conv4_forward_flops(a.conv4_batch, a.channels, a.size);
        result["conv4_batch"] = a.conv4_batch.into();
        result["conv4_forward_ms"] = fwd.into();
        result["conv4_forward_backward_ms"] = fwd_bwd.into();
        // Backward of a layer costs two forward-sized products (input and weight gradients),
        // except for the first layer, whose input gradient is skipped; 3x is the usual estimate.
        result["conv4_forward_gflops"] = (flops / fwd / 1e6).into();
        result["conv4_forward_backward_gflops"] = (3.0 * flops / fwd_bwd / 1e6).into();
    }
    if a.eval_episodes > 0 {
        bmssl::limits::count(
            "eval-episodes",
            a.eval_episodes as u64,
            0,
            bmssl::limits::MAX_EPISODES,
        )?;
        let per_s = bench_eval_episodes(
            a.eval_episodes,
            a.channels,
            a.size,
            a.inner_steps,
            a.inner_lr,
        )?;
        result["eval_episodes"] = a.eval_episodes.into();
        result["eval_episodes_per_s"] = per_s.into();
        result["eval_2000_episodes_s"] = (2000.0 / per_s).into();
    }
    if a.json {
        println!("{result}");
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(())
}

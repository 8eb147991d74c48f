//! Speed measurements, mirroring `bmssl_torch.py bench` option for option, so the two can run side
//! by side on the same machine (see `scripts/bench-vs-pytorch.sh`).

use crate::meta::outer::{meta_gradient, TaskTensors};
use crate::meta::MetaSpec;
use crate::model::{ArchSpec, Learner};
use crate::objective::{InnerLoss, Objective};
use crate::optim::{Optimizer, OptimizerKind};
use crate::rng;
use crate::Result;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use std::time::Instant;

/// The task configuration of a benchmark (the reference's flags).
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub n_images: usize,
    pub blocks: usize,
    pub m1: usize,
    pub m2: usize,
    pub channels: usize,
    pub size: usize,
    pub spec: MetaSpec,
    /// Timed meta-steps (after one warm-up step).
    pub steps: usize,
}

/// What a benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub r#impl: &'static str,
    pub threads: usize,
    pub method: String,
    pub first_order: bool,
    pub ways: usize,
    pub tasks_per_step: usize,
    pub inner_steps: usize,
    pub delta: usize,
    pub size: usize,
    pub meta_steps_per_s: f64,
    /// Peak resident memory of the process so far, in MiB (Linux only).
    pub peak_rss_mib: Option<f64>,
}

/// Random-tensor tasks shaped like the reference's (`torch.randn` views, `arange` labels).
pub fn random_tasks(cfg: &BenchConfig, seed: u64) -> Vec<TaskTensors<f32>> {
    let ways = cfg.n_images / cfg.blocks;
    let img = cfg.channels * cfg.size * cfg.size;
    let mut r = rng::derive(seed, &[rng::STREAM_BENCH]);
    let mut randn = |n: usize| {
        (0..n)
            .map(|_| r.sample::<f32, _>(StandardNormal))
            .collect::<Vec<f32>>()
    };
    let labels = |m: usize| {
        (0..ways)
            .flat_map(|w| std::iter::repeat_n(w, m))
            .collect::<Vec<_>>()
    };
    (0..cfg.blocks)
        .map(|_| TaskTensors {
            support_x: randn(ways * cfg.m1 * img),
            support_y: labels(cfg.m1),
            query_x: randn(ways * cfg.m2 * img),
            query_y: labels(cfg.m2),
        })
        .collect()
}

/// Meta-steps per second of the full meta-step (meta-gradient + Adam update), like the reference.
pub fn bench_meta_steps(cfg: &BenchConfig) -> Result<BenchResult> {
    let ways = cfg.n_images / cfg.blocks;
    let learner = Learner::new(ArchSpec::conv4(cfg.channels, cfg.size, ways))?;
    let mut theta = learner.init(&mut rng::derive(0, &[rng::STREAM_INIT]));
    let tasks = random_tasks(cfg, 0);
    let mut opt = Optimizer::new(OptimizerKind::Adam, 1e-3, theta.len());
    let mut step = |theta: &mut Vec<f32>| {
        let (g, _) = meta_gradient(&learner, theta, &tasks, &cfg.spec);
        opt.step(theta, &g);
    };
    step(&mut theta);
    let t0 = Instant::now();
    for _ in 0..cfg.steps {
        step(&mut theta);
    }
    let dt = t0.elapsed().as_secs_f64();
    Ok(BenchResult {
        r#impl: "bmssl-rs",
        threads: rayon::current_num_threads(),
        method: format!("{:?}", cfg.spec.method).to_lowercase(),
        first_order: cfg.spec.first_order,
        ways,
        tasks_per_step: cfg.blocks,
        inner_steps: cfg.spec.inner.inner_steps,
        delta: cfg.spec.bootstrap_steps,
        size: cfg.size,
        meta_steps_per_s: cfg.steps as f64 / dt,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Milliseconds for one Conv4 forward and for one forward + backward (cross-entropy) on a batch,
/// single-threaded as inside a meta-step, median of `reps`.
pub fn bench_conv4(batch: usize, channels: usize, size: usize, reps: usize) -> Result<(f64, f64)> {
    let learner = Learner::new(ArchSpec::conv4(channels, size, 5))?;
    let theta = learner.init(&mut rng::derive(0, &[rng::STREAM_INIT]));
    let mut r = rng::derive(1, &[rng::STREAM_BENCH]);
    let x: Vec<f32> = (0..batch * learner.image_len())
        .map(|_| r.sample(StandardNormal))
        .collect();
    let y: Vec<usize> = (0..batch).map(|i| i % 5).collect();
    let spec = InnerLoss {
        contrastive_weight: 0.0,
        temperature: 1.0,
        ..InnerLoss::PAPER
    };
    let median = |f: &mut dyn FnMut()| {
        f();
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let fwd = median(&mut || {
        std::hint::black_box(learner.forward(&theta, &x, false));
    });
    let fwd_bwd = median(&mut || {
        std::hint::black_box(learner.loss_grad(&theta, &x, &y, Objective::Inner(spec)));
    });
    Ok((fwd, fwd_bwd))
}

/// Adapt-mode evaluation episodes per second, the work `bmssl eval --mode adapt` does per 5-way
/// 1-shot episode: the learner with a zero classifier, `adapt_steps` SGD steps (step size `lr`)
/// of cross-entropy on the 5 support images, then a forward pass on the 75 query images (15 per
/// class) and their predictions; `episodes` of them spread over the thread pool as `eval` spreads
/// them. Random Conv4 weights and images (the speed does not depend on the values); the
/// contrastive term is left out, as a 1-shot support set has no positive pairs for it.
pub fn bench_eval_episodes(
    episodes: usize,
    channels: usize,
    size: usize,
    adapt_steps: usize,
    lr: f64,
) -> Result<f64> {
    use rayon::prelude::*;
    let (ways, queries) = (5, 15);
    let learner = Learner::new(ArchSpec::conv4(channels, size, ways))?;
    let mut theta = learner.init(&mut rng::derive(0, &[rng::STREAM_INIT]));
    for name in ["classifier.weight", "classifier.bias"] {
        if let Some(e) = learner.layout.get(name) {
            theta[e.range()].fill(0.0);
        }
    }
    let mut r = rng::derive(2, &[rng::STREAM_BENCH]);
    let mut randn = |n: usize| -> Vec<f32> { (0..n).map(|_| r.sample(StandardNormal)).collect() };
    let support = randn(ways * learner.image_len());
    let query = randn(ways * queries * learner.image_len());
    let labels: Vec<usize> = (0..ways).collect();
    let spec = InnerLoss {
        contrastive_weight: 0.0,
        ..InnerLoss::PAPER
    };
    let episode = || {
        let mut w = theta.clone();
        for _ in 0..adapt_steps {
            crate::meta::inner::sgd_step(
                &learner,
                &mut w,
                &support,
                &labels,
                Objective::Inner(spec),
                lr,
            );
        }
        let (out, _) = learner.infer(&w, &query, false);
        std::hint::black_box(out.logits);
    };
    episode();
    let t0 = Instant::now();
    (0..episodes).into_par_iter().for_each(|_| episode());
    Ok(episodes as f64 / t0.elapsed().as_secs_f64())
}

/// Floating-point operations of a Conv4 forward pass (multiply-adds of conv and linear layers x 2).
pub fn conv4_forward_flops(batch: usize, channels: usize, size: usize) -> f64 {
    let (mut c_in, mut s, mut flops) = (channels, size, 0.0);
    for _ in 0..4 {
        flops += 2.0 * (batch * s * s * 64 * c_in * 9) as f64;
        c_in = 64;
        s /= 2;
    }
    flops
}

/// Peak resident set size (VmHWM) in MiB, from /proc (None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_evaluation_benchmark_adapts_and_predicts_episodes_at_a_finite_positive_rate() {
        let per_s = bench_eval_episodes(3, 1, 16, 2, 0.4).unwrap();
        assert!(per_s.is_finite() && per_s > 0.0, "{per_s}");
    }
}

//! One bounded numeric validation, shared by the command line, configuration files and checkpoint
//! metadata: every size has an upper bound, and a run's peak memory is estimated before anything
//! is allocated, so that no setting can overflow, wrap, allocate until the kernel kills us, or
//! never end.
//!
//! The bounds are generous (far beyond any published few-shot configuration) and exist to turn
//! an absurd value into a one-line error naming the field, never to restrict real work. Values
//! are echoed through [`shorten`], so an error line stays short whatever was typed.
//!
//! Over 400 lines on purpose: every bound in one file is the point (the command line, configuration
//! files and checkpoint metadata check against the same table), with the memory estimate and its
//! tests.

use crate::config::TrainConfig;
use crate::{Error, Result};

/// Input side in pixels (the image decoder's own limit is 16384; a Conv4 at 4096 x 4096 needs
/// ~4 GiB of activations per image).
pub const MAX_IMAGE_SIZE: usize = 4096;
/// Input channels (an image has at most 4: RGBA).
pub const MAX_CHANNELS: usize = 4;
/// Channels of a conv block, width of the projection head.
pub const MAX_WIDTH: usize = 4096;
/// Ways of a task / classifier outputs, prototypes.
pub const MAX_WAYS: usize = 100_000;
/// Views, support views, query views per image.
pub const MAX_VIEWS: usize = 1024;
/// Source images per meta-batch, queue size.
pub const MAX_IMAGES: usize = 10_000_000;
/// Inner steps, bootstrap steps, target query steps, Sinkhorn rounds, evaluation adapt steps.
pub const MAX_INNER_STEPS: usize = 10_000;
/// Meta-steps and the step intervals (a trillion; TOML stores 64-bit signed integers).
pub const MAX_STEPS: u64 = 1_000_000_000_000;
/// Episodes of an evaluation or validation.
pub const MAX_EPISODES: u64 = 1_000_000_000;
/// Query images per class of an episode, shots.
pub const MAX_QUERIES: usize = 100_000;
/// Worker threads.
pub const MAX_THREADS: usize = 1024;
/// Kept step checkpoints.
pub const MAX_KEEP: usize = 1_000_000;
/// Seconds of a benchmark.
pub const MAX_SECONDS: f64 = 1e6;

/// `text` cut to at most 80 characters (with the total length said), for error messages that echo
/// a value: a 100 MB string must not become a 100 MB error line.
pub fn shorten(text: &str) -> String {
    const KEEP: usize = 80;
    if text.chars().count() <= KEEP {
        return text.to_string();
    }
    let head: String = text.chars().take(KEEP).collect();
    format!("{head}... ({} bytes in all)", text.len())
}

/// `field` in `min..=max`.
pub fn count(field: &str, v: u64, min: u64, max: u64) -> Result<()> {
    if v < min {
        return Err(Error::config(
            field,
            format!("must be at least {min}, got {v}"),
        ));
    }
    if v > max {
        return Err(Error::config(
            field,
            format!("must be at most {max}, got {v}"),
        ));
    }
    Ok(())
}

/// `field` in `min..=max` (a `usize`).
pub fn size(field: &str, v: usize, min: usize, max: usize) -> Result<()> {
    count(field, v as u64, min as u64, max as u64)
}

/// A positive finite number (learning rates, temperatures).
pub fn positive(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v <= 0.0 {
        return Err(Error::config(
            field,
            format!("must be a positive finite number, got {v}"),
        ));
    }
    Ok(())
}

/// Physical memory of this machine in bytes (`/proc/meminfo`), or 64 GiB where unknown.
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
        .unwrap_or(64 << 30)
}

/// A coarse upper estimate of the bytes of activations one image costs in a forward pass of a
/// conv backbone with `blocks` blocks (two f32 planes per block kept for the backward pass, and
/// the same again for its gradients), saturating. On Omniglot's default run this gives ~260 MB
/// where the measured peak RSS is 154 MiB.
pub fn bytes_per_image(image_size: usize, channels: usize, hidden: usize, blocks: u32) -> u64 {
    let mut side = image_size as u64;
    let mut total = (side * side)
        .saturating_mul(channels as u64)
        .saturating_mul(4);
    for _ in 0..blocks {
        let plane = side.saturating_mul(side).saturating_mul(hidden as u64);
        total = total.saturating_add(plane.saturating_mul(4 * 2 * 2));
        side /= 2;
    }
    total
}

/// A run's peak memory, estimated from its configuration (bytes, saturating): the activations of
/// every task's images through the inner steps (stored for the meta-gradient's backward pass),
/// plus the queue of the queue-based baselines. Deliberately coarse (within a small factor);
/// what matters is that a run which cannot fit is refused before it allocates.
pub fn run_memory(cfg: &TrainConfig) -> u64 {
    let per_image = bytes_per_image(
        cfg.data.image_size,
        cfg.data.channels,
        64,
        cfg.outer.backbone.blocks() as u32,
    );
    let images = (cfg.task.images_per_batch as u64).saturating_mul(cfg.task.views as u64);
    // The bootstrap target's steps are not differentiated through: memory does not grow with them.
    let steps = (cfg.inner.inner_steps as u64).saturating_add(2);
    // The inner loop runs on the support views of one task at a time; the outer pass sees them all.
    let per_task = (cfg.task.images_per_batch / cfg.task.tasks_per_batch.max(1)) as u64
        * cfg.task.views as u64;
    let activations = per_image
        .saturating_mul(per_task)
        .saturating_mul(steps)
        .saturating_add(per_image.saturating_mul(images));
    let queue = (cfg.ssl.queue_size as u64).saturating_mul(64 * 4);
    activations.saturating_add(queue)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Every numeric field of a run configuration within its bound, and the run's estimated peak
/// memory within this machine's physical memory (naming the field that drives it).
pub fn check_train_config(cfg: &TrainConfig) -> Result<()> {
    size("image_size", cfg.data.image_size, 1, MAX_IMAGE_SIZE)?;
    size("channels", cfg.data.channels, 1, MAX_CHANNELS)?;
    size("images_per_batch", cfg.task.images_per_batch, 1, MAX_IMAGES)?;
    size("tasks_per_batch", cfg.task.tasks_per_batch, 1, MAX_IMAGES)?;
    for (field, v) in [
        ("views", cfg.task.views),
        ("support_views", cfg.task.support_views),
        ("query_views", cfg.task.query_views),
    ] {
        size(field, v, 0, MAX_VIEWS)?;
    }
    for (field, v) in [
        ("inner_steps", cfg.inner.inner_steps),
        ("bootstrap_steps", cfg.bootstrap.bootstrap_steps),
        ("target_query_steps", cfg.bootstrap.target_query_steps),
        ("sinkhorn_iters", cfg.ssl.sinkhorn_iters),
    ] {
        size(field, v, 0, MAX_INNER_STEPS)?;
    }
    for (field, v) in [
        ("meta_steps", cfg.outer.meta_steps),
        ("checkpoint_every", cfg.run.checkpoint_every),
        ("validate_every", cfg.run.validate_every),
    ] {
        count(field, v, 0, MAX_STEPS)?;
    }
    if cfg.run.checkpoint_every == 0 {
        return Err(Error::config("checkpoint_every", "must be at least 1"));
    }
    size("keep_checkpoints", cfg.run.keep_checkpoints, 1, MAX_KEEP)?;
    count(
        "validation_episodes",
        cfg.run.validation_episodes as u64,
        0,
        MAX_EPISODES,
    )?;
    if cfg.run.validation_episodes == 1 {
        return Err(Error::config(
            "validation_episodes",
            "1 episode gives no confidence interval: use 0 to turn validation off, or at least 2",
        ));
    }
    size("queue_size", cfg.ssl.queue_size, 0, MAX_IMAGES)?;
    size("prototypes", cfg.ssl.prototypes, 0, MAX_WAYS)?;
    size("shots", cfg.ssl.shots, 0, MAX_QUERIES)?;
    let need = run_memory(cfg);
    let have = physical_memory();
    if need > have {
        // Blame the field whose default value would shrink the estimate the most.
        let d = TrainConfig::default();
        let candidates: [(&str, TrainConfig); 5] = [
            ("image_size", {
                let mut edited = cfg.clone();
                edited.data.image_size = d.data.image_size;
                edited
            }),
            ("inner_steps", {
                let mut edited = cfg.clone();
                edited.inner.inner_steps = d.inner.inner_steps;
                edited
            }),
            ("views", {
                let mut edited = cfg.clone();
                edited.task.views = d.task.views;
                edited
            }),
            ("images_per_batch", {
                let mut edited = cfg.clone();
                edited.task.images_per_batch = d.task.images_per_batch;
                edited.task.tasks_per_batch = d.task.tasks_per_batch;
                edited
            }),
            ("queue_size", {
                let mut edited = cfg.clone();
                edited.ssl.queue_size = d.ssl.queue_size.min(cfg.ssl.queue_size);
                edited
            }),
        ];
        let field = candidates
            .iter()
            .min_by_key(|(_, c)| run_memory(c))
            .map_or("image_size", |(f, _)| f);
        return Err(Error::config(
            field,
            format!(
                "this run would need about {} of memory (estimated from image_size = {}, images_per_batch = {}, views = {}, inner_steps = {}), more than this machine's {}",
                gib(need),
                cfg.data.image_size,
                cfg.task.images_per_batch,
                cfg.task.views,
                cfg.inner.inner_steps,
                gib(have)
            ),
        ));
    }
    Ok(())
}

/// An architecture's sizes within bounds (checkpoint metadata, `--checkpoint random`).
pub fn check_arch(arch: &crate::model::ArchSpec) -> Result<()> {
    size("image_size", arch.image_size, 1, MAX_IMAGE_SIZE)?;
    size("in_channels", arch.in_channels, 1, MAX_CHANNELS)?;
    size("hidden", arch.hidden, 1, MAX_WIDTH)?;
    size("proj_dim", arch.proj_dim, 1, MAX_WIDTH)?;
    size("ways", arch.ways, 1, MAX_WAYS)?;
    size("prototypes", arch.prototypes, 0, MAX_WAYS)?;
    let per_image = bytes_per_image(
        arch.image_size,
        arch.in_channels,
        arch.hidden,
        arch.backbone.blocks() as u32,
    );
    let have = physical_memory();
    if per_image > have {
        return Err(Error::config(
            "image_size",
            format!(
                "one {}x{} image through this network needs about {} of memory, more than this machine's {}",
                arch.image_size,
                arch.image_size,
                gib(per_image),
                gib(have)
            ),
        ));
    }
    Ok(())
}

/// An inner loop's settings: a positive finite learning rate and a bounded number of steps.
pub fn check_adapt(lr_field: &str, lr: f64, steps_field: &str, steps: usize) -> Result<()> {
    positive(lr_field, lr)?;
    size(steps_field, steps, 0, MAX_INNER_STEPS)
}

/// Worker threads (0: all cores).
pub fn check_threads(threads: usize) -> Result<()> {
    size("threads", threads, 0, MAX_THREADS)
}

/// A 64-bit value as TOML stores it: an integer up to `i64::MAX`, else a string of its decimal
/// digits (TOML integers are signed 64-bit); both are read back. Used for `seed`, which is any
/// 64-bit number (random seeds are >= 2^63 half the time).
pub mod u64_toml {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*v) {
            Ok(i) => s.serialize_i64(i),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(v) => Ok(v),
            Either::Text(t) => t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected a number from 0 to {}, got {:?}",
                    u64::MAX,
                    super::shorten(&t)
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_shortened_in_messages() {
        let s = "x".repeat(1_000_000);
        let short = shorten(&s);
        assert!(
            short.len() < 120 && short.contains("1000000 bytes"),
            "{short}"
        );
        assert_eq!(shorten("abc"), "abc");
    }

    #[test]
    fn every_seed_survives_the_toml_round_trip() {
        for seed in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX] {
            let cfg = {
                let mut edited = TrainConfig::default();
                edited.run.seed = seed;
                edited
            };
            let back = TrainConfig::from_toml(&cfg.to_toml(), "t").unwrap();
            assert_eq!(back.run.seed, seed);
        }
    }

    #[test]
    fn absurd_sizes_are_refused_naming_the_field() {
        let d = TrainConfig::default();
        for (cfg, field) in [
            (
                {
                    let mut edited = d.clone();
                    edited.data.image_size = 100_000;
                    edited
                },
                "image_size",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.data.image_size = 4_294_967_324;
                    edited
                },
                "image_size",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.outer.meta_steps = 1 << 63;
                    edited
                },
                "meta_steps",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.run.checkpoint_every = u64::MAX;
                    edited
                },
                "checkpoint_every",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.inner.inner_steps = 1_000_000;
                    edited
                },
                "inner_steps",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.task.views = 1_000_000_000;
                    edited.task.support_views = 1;
                    edited.task.query_views = 999_999_999;
                    edited
                },
                "views",
            ),
            (
                {
                    let mut edited = d.clone();
                    edited.run.validation_episodes = 1;
                    edited
                },
                "validation_episodes",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
        }
    }

    #[test]
    fn a_run_too_large_for_memory_is_refused_naming_the_field_that_drives_it() {
        let cfg = {
            let mut edited = TrainConfig::default();
            edited.data.image_size = 4096;
            edited
        };
        let err = check_train_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("`image_size`") && err.contains("GiB"), "{err}");
        assert!(check_train_config(&TrainConfig::default()).is_ok());
    }
}

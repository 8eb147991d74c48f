//! What a run does around its meta-steps: the seed, checkpoints and validation.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The seed, how often to checkpoint and validate, and when to give up on non-finite steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// Seed of every random choice of the run.
    #[serde(with = "crate::limits::u64_toml")]
    pub seed: u64,
    /// Checkpoint every this many meta-steps (and at the end).
    pub checkpoint_every: u64,
    /// Step checkpoints kept (older ones are deleted; `best` is kept apart).
    pub keep_checkpoints: usize,
    /// Validate every this many meta-steps (0: only at the end).
    pub validate_every: u64,
    /// Validation episodes (5-way 1-shot on the validation split).
    pub validation_episodes: usize,
    /// How validation episodes are scored: `adapt` (the inner loop, as the method is used) or
    /// `proto` (cosine prototypes on frozen features, faster).
    pub validation_mode: crate::settings::Mode,
    /// Consecutive non-finite meta-steps tolerated (each skipped) before the run stops.
    pub max_nonfinite_steps: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            validate_every: 100,
            validation_episodes: 200,
            validation_mode: crate::settings::Mode::Adapt,
            max_nonfinite_steps: 5,
        }
    }
}

impl RunConfig {
    /// Checkpoints at least every step and at least one kept.
    pub fn validate(&self) -> Result<()> {
        if self.checkpoint_every == 0 {
            return Err(Error::config("checkpoint_every", "must be at least 1"));
        }
        if self.keep_checkpoints == 0 {
            return Err(Error::config("keep_checkpoints", "must be at least 1"));
        }
        Ok(())
    }
}

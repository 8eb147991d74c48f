//! CACTUs' clustering as configured (issue 21): the `[cactus]` section, the one table of the file
//! that is not flat, read only by `cactus-protonet` and `cactus-maml` ([`crate::cactus`]).

use crate::limits::{count, size};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most partitions (the paper: 100).
pub const MAX_PARTITIONS: usize = 10_000;
/// Most clusters per partition (cluster indices are stored as `u16`).
pub const MAX_CLUSTERS: usize = u16::MAX as usize;
/// Most Lloyd iterations per partition.
pub const MAX_ITERATIONS: usize = 100_000;

/// How a partition's embedding is rescaled before its k-means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// Partition 0 on the embedding itself; every other partition with each dimension multiplied
    /// by its own factor drawn from U(0, 1) (a random diagonal metric, as CACTUs).
    #[default]
    Random,
    /// Every partition on the embedding itself (they then differ only by their k-means++ seeding).
    None,
}

impl std::str::FromStr for Scaling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(Scaling::Random),
            "none" => Ok(Scaling::None),
            _ => Err(Error::config(
                "cactus.scaling",
                format!("`{}` is not one of random, none", crate::limits::shorten(s)),
            )),
        }
    }
}

/// The `[cactus]` section of a run configuration (CACTUs methods only). Left out of `config.toml`
/// while it has its defaults, so other methods' files do not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CactusConfig {
    /// P: partitions (k-means runs). 100, CACTUs' Omniglot setting.
    pub partitions: usize,
    /// k: clusters per partition. 500, CACTUs' Omniglot setting.
    pub clusters: usize,
    /// `random` (each partition's own random diagonal scaling, as CACTUs) or `none`.
    pub scaling: Scaling,
    /// Most Lloyd iterations per partition (fewer when the assignments stop changing).
    pub iterations: usize,
    /// Checkpoint whose backbone features are the embedding (absent: a SimCLR trained in the run
    /// directory first, `embedding_steps` steps). Absent rather than null when unset, as
    /// `target_lr`: the configuration is read back through TOML, which has no null (plan.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
    /// Steps of the SimCLR embedding trained when `embedding` is absent (300: the budget of the
    /// other baselines' `small` runs, so the SimCLR row of the same budget is this embedding).
    pub embedding_steps: u64,
}

impl Default for CactusConfig {
    fn default() -> Self {
        CactusConfig {
            partitions: 100,
            clusters: 500,
            scaling: Scaling::Random,
            iterations: 30,
            embedding: None,
            embedding_steps: 300,
        }
    }
}

impl CactusConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == CactusConfig::default()
    }

    /// The keys within bounds (errors name them `cactus.<key>`), with enough clusters for tasks of
    /// `ways` classes. Whether the method reads the section is [`super::TrainConfig::validate`]'s.
    pub fn validate(&self, ways: usize) -> Result<()> {
        size("cactus.partitions", self.partitions, 1, MAX_PARTITIONS)?;
        size("cactus.clusters", self.clusters, 2, MAX_CLUSTERS)?;
        size("cactus.iterations", self.iterations, 1, MAX_ITERATIONS)?;
        count(
            "cactus.embedding_steps",
            self.embedding_steps,
            1,
            crate::limits::MAX_STEPS,
        )?;
        if self.clusters < ways {
            return Err(Error::config(
                "cactus.clusters",
                format!(
                    "k = {} clusters cannot make {ways}-way tasks",
                    self.clusters
                ),
            ));
        }
        if let Some(e) = &self.embedding {
            if e.is_empty() {
                return Err(Error::config(
                    "cactus.embedding",
                    "an empty path (leave the key out to train a SimCLR embedding)",
                ));
            }
        }
        Ok(())
    }
}

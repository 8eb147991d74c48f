//! BMSSL's bootstrap target as configured (eq. 3 and the bootstrap study's variants): delta, the
//! target's kind and the keys that shape it. Only `bmssl` reads this section.

use super::inner::{non_negative, positive};
use crate::meta::{BootstrapSpec, OuterLoss, Target};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// delta, the target and the bootstrap study's keys.
///
/// A study key absent from a configuration file takes the paper's reading (not the shipped
/// default), so every config.toml written before the key existed keeps its meaning: the section's
/// defaults are the paper's ([`BootstrapConfig::paper`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapConfig {
    /// Bootstrap target: `paper` (delta steps on the support views) or `query-step`.
    pub target: Target,
    /// delta: bootstrap steps. 5, as the paper.
    pub bootstrap_steps: usize,
    /// BMSSL's outer loss: `kl` (eq. 3) or `additive` (MetaSSL's query loss + mu x KL).
    pub outer_loss: OuterLoss,
    /// mu: weight of the KL in the `additive` outer loss.
    pub mu: f64,
    /// Query steps that end a `query-step` target (1: BMG's single step on the outer objective).
    pub target_query_steps: usize,
    /// Step size of the target's steps (absent: alpha, `inner_lr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_lr: Option<f64>,
    /// The target is `softmax(logits / target_temperature)`: below 1 sharpens it (1: the paper).
    pub target_temperature: f64,
    /// nu: weight of the KL between the target's and w_L's similarity distributions of the query
    /// views' projections (0: off, as the paper; bmssl only).
    pub similarity_weight: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig::paper(5)
    }
}

impl BootstrapConfig {
    /// The target as the paper writes it (eq. 3: delta support steps, KL alone).
    pub fn paper(bootstrap_steps: usize) -> Self {
        BootstrapConfig {
            target: Target::Paper,
            bootstrap_steps,
            outer_loss: BootstrapSpec::PAPER.outer,
            mu: BootstrapSpec::PAPER.mu,
            target_query_steps: BootstrapSpec::PAPER.query_steps,
            target_lr: BootstrapSpec::PAPER.lr,
            target_temperature: BootstrapSpec::PAPER.temperature,
            similarity_weight: BootstrapSpec::PAPER.similarity_weight,
        }
    }

    /// The target's variants as the meta-gradient reads them.
    pub fn spec(&self) -> BootstrapSpec {
        BootstrapSpec {
            outer: self.outer_loss,
            mu: self.mu,
            query_steps: self.target_query_steps,
            lr: self.target_lr,
            temperature: self.target_temperature,
            similarity_weight: self.similarity_weight,
        }
    }

    /// The study keys in range.
    pub fn validate(&self) -> Result<()> {
        non_negative("mu", self.mu)?;
        non_negative("similarity_weight", self.similarity_weight)?;
        if let Some(lr) = self.target_lr {
            positive("target_lr", lr)?;
        }
        positive("target_temperature", self.target_temperature)?;
        if self.target_query_steps == 0 {
            return Err(Error::config(
                "target_query_steps",
                "must be at least 1 (use target = \"paper\" for a target without query steps)",
            ));
        }
        Ok(())
    }

    /// The first study key that differs from the paper's reading, if any (a method without a
    /// target must leave them all there).
    pub fn first_study_key_set(&self) -> Option<&'static str> {
        let d = BootstrapConfig::paper(self.bootstrap_steps);
        [
            ("outer_loss", self.outer_loss != d.outer_loss),
            ("mu", self.mu != d.mu),
            (
                "target_query_steps",
                self.target_query_steps != d.target_query_steps,
            ),
            ("target_lr", self.target_lr.is_some()),
            (
                "target_temperature",
                self.target_temperature != d.target_temperature,
            ),
            (
                "similarity_weight",
                self.similarity_weight != d.similarity_weight,
            ),
        ]
        .into_iter()
        .find_map(|(field, changed)| changed.then_some(field))
    }
}

//! The inner loop as configured: alpha, L and the inner loss. Training, the bootstrap target
//! (its steps default to alpha) and the checkpoint's adaptation settings all read them here.

use crate::losses::ContrastiveLoss;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// alpha, L and the inner loss (lambda, tau, its self-supervised term), and how each inner loop
/// starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InnerLoopConfig {
    /// L: inner steps. 5, as the paper.
    pub inner_steps: usize,
    /// alpha: inner learning rate. 0.4, MAML's Omniglot value (Finn et al. 2017).
    pub inner_lr: f64,
    /// lambda: weight of the supervised contrastive term.
    pub contrastive_weight: f64,
    /// tau: contrastive temperature. 0.5, SimCLR's value for small batches.
    pub temperature: f64,
    /// The inner loop's self-supervised term: `supcon` (the paper's) or an "-o" variant
    /// (`simclr`, `moco`, `swav`, `barlowtwins`: the SSL objective inside BMSSL's loop; needs
    /// support_views >= 2).
    pub inner_loss: ContrastiveLoss,
    /// Zero the classifier at the start of every inner loop, in training as evaluation does
    /// (Kao et al.'s zeroing trick; bmssl, metassl, maml and umtra).
    pub zero_head: bool,
}

impl Default for InnerLoopConfig {
    fn default() -> Self {
        InnerLoopConfig {
            inner_steps: super::TrainConfig::PAPER_INNER_STEPS,
            inner_lr: 0.4,
            contrastive_weight: 1.0,
            temperature: 0.5,
            inner_loss: ContrastiveLoss::Supcon,
            zero_head: false,
        }
    }
}

impl InnerLoopConfig {
    /// alpha and tau positive, lambda not negative, L at least 1.
    pub fn validate(&self) -> Result<()> {
        positive("inner_lr", self.inner_lr)?;
        positive("temperature", self.temperature)?;
        if !self.contrastive_weight.is_finite() || self.contrastive_weight < 0.0 {
            return Err(Error::config(
                "contrastive_weight",
                format!("must be finite and >= 0, got {}", self.contrastive_weight),
            ));
        }
        if self.inner_steps == 0 {
            return Err(Error::config(
                "inner_steps",
                "must be at least 1 (L = 0 has no inner loop to meta-learn)",
            ));
        }
        Ok(())
    }
}

/// A positive finite number, or an error naming `field`.
pub(crate) fn positive(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v <= 0.0 {
        return Err(Error::config(
            field,
            format!("must be a positive finite number, got {v}"),
        ));
    }
    Ok(())
}

/// A finite number >= 0, or an error naming `field`.
pub(crate) fn non_negative(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::config(
            field,
            format!("must be finite and >= 0, got {v}"),
        ));
    }
    Ok(())
}

/// A number in [0, 1), or an error naming `field`.
pub(crate) fn fraction(field: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(Error::config(field, format!("must be in [0, 1), got {v}")));
    }
    Ok(())
}

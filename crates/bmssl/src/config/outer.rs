//! The outer loop as configured: the network theta is, how its meta-gradient is taken and how the
//! outer optimiser follows it.

use super::inner::{fraction, non_negative, positive};
use crate::model::Backbone;
use crate::optim::OptimizerKind;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// beta, the optimiser, its schedule and the meta-step budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OuterConfig {
    pub backbone: Backbone,
    /// Meta-steps (outer updates). 300 is the short budget of the README's main command.
    pub meta_steps: u64,
    /// beta: outer learning rate. 1e-3 with Adam, MAML's value.
    pub outer_lr: f64,
    pub optimizer: OptimizerKind,
    /// Drop the second-order terms (first-order MAML approximation).
    pub first_order: bool,
    /// SGD momentum of the outer optimiser (0 = plain SGD; the SSL baselines use 0.9, as PsCo's code).
    pub sgd_momentum: f64,
    /// L2 weight decay added to the outer gradient (PsCo's code: 5e-4).
    pub weight_decay: f64,
    /// Outer learning-rate schedule: `constant` or `cosine` (annealed to 0 at meta_steps, as PsCo's code).
    pub lr_schedule: LrSchedule,
}

impl Default for OuterConfig {
    fn default() -> Self {
        OuterConfig {
            backbone: Backbone::Conv4,
            meta_steps: 300,
            outer_lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            first_order: false,
            sgd_momentum: 0.0,
            weight_decay: 0.0,
            lr_schedule: LrSchedule::Constant,
        }
    }
}

impl OuterConfig {
    /// beta positive, momentum in [0, 1), weight decay not negative, at least one meta-step.
    pub fn validate(&self) -> Result<()> {
        positive("outer_lr", self.outer_lr)?;
        fraction("sgd_momentum", self.sgd_momentum)?;
        non_negative("weight_decay", self.weight_decay)?;
        if self.meta_steps == 0 {
            return Err(Error::config("meta_steps", "must be at least 1"));
        }
        Ok(())
    }
}

/// Outer learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// `lr * (1 + cos(pi * t / meta_steps)) / 2` at step t (0-based), as `CosineAnnealingLR`.
    Cosine,
}

impl LrSchedule {
    /// Learning rate for meta-step `step` (1-based) of `total`.
    pub fn at(self, base: f64, step: u64, total: u64) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let t = (step - 1) as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

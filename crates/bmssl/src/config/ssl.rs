//! The self-supervised baselines' keys (MoCo, SwAV, Barlow Twins, PsCo), also read by the "-o"
//! variants' inner losses (Sinkhorn, the redundancy weight).

use super::inner::{fraction, non_negative, positive};
use crate::Result;
use serde::{Deserialize, Serialize};

/// The momentum encoder and its queue, SwAV's prototypes and Sinkhorn, Barlow Twins' weight,
/// PsCo's few-shot term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SslConfig {
    /// MoCo / PsCo: momentum of the key encoder's moving average (PsCo's code: 0.99).
    pub momentum: f64,
    /// MoCo / PsCo: keys in the queue (PsCo's code: 16384).
    pub queue_size: usize,
    /// MoCo / PsCo: a predictor MLP on the online branch (PsCo's `--prediction`, used on Omniglot).
    pub predictor: bool,
    /// SwAV: number of prototypes (PsCo's SwAV: 2048).
    pub prototypes: usize,
    /// SwAV / PsCo: Sinkhorn rounds (3) and entropic regularisation (0.05), as SwAV.
    pub sinkhorn_iters: usize,
    pub sinkhorn_eps: f64,
    /// Barlow Twins: weight of the off-diagonal (redundancy) term, 5e-3 as the paper.
    pub redundancy_weight: f64,
    /// PsCo: shots drawn from the queue per pseudo-class (1 on Omniglot, as the official command).
    pub shots: usize,
    /// PsCo: temperature of the few-shot term (`temperature2`, 1.0).
    pub temperature2: f64,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            momentum: 0.99,
            queue_size: 16384,
            predictor: false,
            prototypes: 2048,
            sinkhorn_iters: 3,
            sinkhorn_eps: 0.05,
            redundancy_weight: 5e-3,
            shots: 1,
            temperature2: 1.0,
        }
    }
}

impl SslConfig {
    /// Temperatures and Sinkhorn's epsilon positive, momentum in [0, 1), weights not negative.
    pub fn validate(&self) -> Result<()> {
        positive("sinkhorn_eps", self.sinkhorn_eps)?;
        positive("temperature2", self.temperature2)?;
        fraction("momentum", self.momentum)?;
        non_negative("redundancy_weight", self.redundancy_weight)
    }
}

//! Meta-learning: the inner loop ([`inner`]), the bootstrapped target ([`bootstrap`]) and the outer
//! objective with its exact meta-gradient ([`outer`]).

pub mod bootstrap;
pub mod inner;
pub mod outer;

use crate::objective::InnerLoss;
use serde::{Deserialize, Serialize};

/// Which outer objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Paper eq. (3): KL(pi_target || pi_L) on the query views, target bootstrapped.
    Bmssl,
    /// Paper eq. (2): the inner loss of w_L on the query views (plain MAML objective).
    Metassl,
}

/// How the bootstrap target is reached from w_L.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// As the paper writes it: delta more inner steps on the support views.
    Paper,
    /// Then one more step on the inner loss of the query views, as bootstrapped meta-gradients do
    /// (Flennerhag et al., ICLR 2022: the target ends with a step on the outer objective). The
    /// paper's target has a trivial optimum (an inner loop that stops moving makes the KL zero);
    /// this one keeps pulling towards the query views.
    QueryStep,
}

/// Everything that defines one meta-gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaSpec {
    pub method: Method,
    pub target: Target,
    /// L: inner steps whose graph the meta-gradient goes through.
    pub inner_steps: usize,
    /// delta: extra steps that build the target, no gradient.
    pub bootstrap_steps: usize,
    /// alpha.
    pub inner_lr: f64,
    /// lambda and tau of the inner loss.
    pub inner_loss: InnerLoss,
    /// Treat w_L as if it were theta (first-order MAML approximation).
    pub first_order: bool,
}

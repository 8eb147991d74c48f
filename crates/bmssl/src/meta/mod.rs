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

/// What BMSSL's outer loss is made of (MetaSSL ignores it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OuterLoss {
    /// The paper's eq. (3): `KL(pi_target || pi_L)` on the query views alone.
    #[default]
    Kl,
    /// MetaSSL's query loss plus `mu` times the KL: `l_Q(w_L) + mu KL(pi_target || pi_L)`
    /// (`mu = 0` is MetaSSL; the reference's `--method additive`).
    Additive,
}

impl OuterLoss {
    /// Name as in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            OuterLoss::Kl => "kl",
            OuterLoss::Additive => "additive",
        }
    }
}

/// How the bootstrap target is built and weighed (BMSSL only). [`BootstrapSpec::PAPER`] is the
/// paper's reading; every other value is one of the study's variants (docs/training.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootstrapSpec {
    /// `kl` (eq. 3) or `additive`.
    pub outer: OuterLoss,
    /// mu: weight of the KL in the additive objective.
    pub mu: f64,
    /// Steps on the query views that end a [`Target::QueryStep`] target (1 in BMG's reading).
    pub query_steps: usize,
    /// Step size of every target step (delta support steps and the query steps); `None`: alpha.
    pub lr: Option<f64>,
    /// The target is `softmax(logits / T)` at the target weights: T < 1 sharpens it.
    pub temperature: f64,
    /// nu: weight of a second KL, between the target's and w_L's similarity distributions of the
    /// query views' projections (each view's softmax over the others at the inner loss's tau), so
    /// that the bootstrap also teaches the projection head (0: off, as in the paper).
    pub similarity_weight: f64,
}

impl BootstrapSpec {
    /// KL only, one query step (for `query-step`), alpha, no sharpening.
    pub const PAPER: BootstrapSpec = BootstrapSpec {
        outer: OuterLoss::Kl,
        mu: 1.0,
        query_steps: 1,
        lr: None,
        temperature: 1.0,
        similarity_weight: 0.0,
    };
}

/// The inner loop a learner adapts with: alpha, L and the inner loss.
///
/// The one struct that carries alpha from its flag to `sgd_step`: `--inner-lr` overrides the
/// `inner.inner_lr` key of [`crate::config::InnerLoopConfig`], [`crate::config::TrainConfig::inner_loop`]
/// builds this, and from there it is [`MetaSpec::inner`] in training (and the bootstrap target's
/// step size unless `target_lr` is set), the checkpoint's `adapt` record, [`crate::eval::Model::inner`]
/// when a checkpoint is loaded, and [`crate::eval::EvalOptions::adapt`] /
/// [`crate::predict::AdaptOptions::inner`] when a model adapts to an episode or to a user's images
/// (where `--adapt-lr` / `--adapt-steps` or `--tune-adapt` may replace alpha and L for that use).
/// Its field names are the checkpoint format's (`adapt: {inner_lr, inner_steps, inner_loss}`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InnerLoop {
    /// alpha: the step size of every inner SGD step.
    pub inner_lr: f64,
    /// L: inner steps.
    pub inner_steps: usize,
    /// The inner loss (lambda, tau, its self-supervised term).
    pub inner_loss: InnerLoss,
}

impl InnerLoop {
    /// The same inner loss at step size `inner_lr` for `inner_steps` steps (an evaluation's
    /// `--adapt-lr` / `--adapt-steps`, or a point of `--tune-adapt`'s grid).
    pub fn with(self, inner_lr: f64, inner_steps: usize) -> Self {
        InnerLoop {
            inner_lr,
            inner_steps,
            ..self
        }
    }
}

/// Everything that defines one meta-gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaSpec {
    pub method: Method,
    pub target: Target,
    /// alpha, L (the inner steps whose graph the meta-gradient goes through) and the inner loss.
    pub inner: InnerLoop,
    /// delta: extra steps that build the target, no gradient.
    pub bootstrap_steps: usize,
    /// Treat w_L as if it were theta (first-order MAML approximation).
    pub first_order: bool,
    /// Start every inner loop from a zero classifier (Kao et al.'s zeroing trick): theta's
    /// classifier is never used, and adaptation starts as evaluation does ([`crate::eval::HeadInit::Zero`]).
    pub zero_head: bool,
    /// The bootstrap target's variants (BMSSL only).
    pub bootstrap: BootstrapSpec,
}

impl MetaSpec {
    /// Step size of the target's steps.
    pub fn target_lr(&self) -> f64 {
        self.bootstrap.lr.unwrap_or(self.inner.inner_lr)
    }
}

//! The losses of the paper, each returning its value and its gradient with respect to its input
//! (the learner's backward pass takes it from there). All are mean-reduced over the batch and
//! computed through log-sum-exp, so no logit size overflows.
//!
//! - [`cross_entropy`]: classification of pseudo-labels (inner loss, first term).
//! - [`supervised_contrastive`]: paper eq. (1), multi-positive contrastive loss on L2-normalised
//!   projections with temperature tau (inner loss, second term, weight lambda).
//! - [`kl_to_target`]: KL(pi_target || pi) on predictive distributions (BMSSL outer loss, eq. 3).
//! - [`similarity_kl`]: the same KL on each view's similarity distribution over the other views
//!   (BMSSL's projection-head target).
//! - [`ssl`]: the self-supervised objectives of the baselines and of the "-o" variants (SimCLR,
//!   MoCo, SwAV, Barlow Twins, PsCo).
//!
//! - [`InnerLoss`]: the inner loss's settings (lambda, tau, the self-supervised term), what a run's
//!   configuration, the meta-learning specs and a checkpoint hold.
//!
//! One file per loss family: [`ce`], [`supcon`], [`kl`], [`ssl`], and [`inner`] for the settings;
//! all but [`ssl`]'s are re-exported here (`losses::cross_entropy`).

pub mod ce;
pub mod inner;
pub mod kl;
pub mod ssl;
pub mod supcon;

pub(crate) use ce::log_sum_exp;
pub use ce::{cross_entropy, log_softmax, softmax};
pub use inner::{ContrastiveLoss, InnerLoss};
pub use kl::{kl_to_target, similarity_distributions, similarity_kl};
pub use supcon::{normalize_rows, normalize_rows_backward, supervised_contrastive};

//! # bmssl: Bootstrapped Meta Self-supervised Learning
//!
//! Few-shot learners meta-trained on *unlabelled* images (arXiv 2308.14267).
//!
//! The method in ten lines:
//! 1. Sample N unlabelled images from a pool; make M augmented views of each ([`augment`]).
//! 2. Pseudo-label every view with the index of its source image; split the N images into K
//!    blocks, one N/K-way task each: M1 views per image in the support set, M2 in the query
//!    set ([`tasks`]).
//! 3. Inner loop: from the meta-parameters theta, take L SGD steps on the support views with
//!    cross-entropy + lambda * supervised contrastive loss, giving fast weights w_L ([`meta::inner`]).
//! 4. Bootstrap target: delta more steps from w_L, with no gradient, give pi_target ([`meta::bootstrap`]).
//! 5. Outer loss: KL(pi_target || pi_L) on the query views (BMSSL, eq. 3), or the inner loss of w_L
//!    on the query views (MetaSSL, eq. 2) ([`meta::outer`]).
//! 6. The meta-gradient flows back through the L inner steps exactly (second order), using
//!    Hessian-vector products computed forward-over-reverse ([`engine`]).
//!
//! ## Glossary
//! | paper | name | meaning |
//! |---|---|---|
//! | N | `images_per_batch` | unlabelled source images per meta-batch |
//! | M | `views` | augmented views per image (M1 + M2) |
//! | K | `tasks_per_batch` | blocks, one task each; N/K = `ways` |
//! | M1 / M2 | `support_views` / `query_views` | views per image in support / query |
//! | L | `inner_steps` | adaptation steps whose graph is kept |
//! | delta | `bootstrap_steps` | extra steps that make the target, no graph |
//! | alpha / beta | `inner_lr` / `outer_lr` | |
//! | lambda / tau | `contrastive_weight` / `temperature` | |

pub mod augment;
pub mod baselines;
pub mod bench;
pub mod cactus;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod embed;
pub mod engine;
pub mod episodes;
pub mod error;
pub mod eval;
pub mod golden;
pub mod io;
pub mod kmeans;
pub mod limits;
pub mod lock;
pub mod losses;
pub mod meta;
pub mod methods;
pub mod model;
pub mod npz;
pub mod objective;
pub mod optim;
pub mod pipeline;
pub mod predict;
pub mod reproduce;
pub mod rng;
pub mod run_dir;
pub mod settings;
pub mod ssl;
pub mod tasks;
pub mod train;
pub mod tuning;

pub use error::{Error, Result};

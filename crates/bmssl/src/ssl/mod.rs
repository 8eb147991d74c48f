//! Self-supervised baselines (SimCLR, MoCo v2, SwAV, Barlow Twins, PsCo): their training step
//! ([`step`]); their losses are in [`crate::losses::ssl`].

pub mod step;

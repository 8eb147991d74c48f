//! Self-supervised baselines (SimCLR, MoCo v2, SwAV, Barlow Twins, PsCo): their training step
//! ([`step`]) and SwAV's multi-crop option ([`multicrop`]); their losses are in [`crate::losses::ssl`].

pub mod multicrop;
pub mod step;

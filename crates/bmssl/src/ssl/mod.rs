//! Self-supervised baselines (SimCLR, MoCo v2, SwAV, Barlow Twins, PsCo): their losses
//! ([`losses`]) and their training step ([`step`]).

pub mod losses;
pub mod step;

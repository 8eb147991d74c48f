//! SwAV's multi-crop as configured (issue 21): the `[multicrop]` section, a table of the file like
//! `[cactus]`, read only by `--method swav` ([`crate::ssl::multicrop`]).

use crate::model::ArchSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most small crops per image.
pub const MAX_CROPS: usize = 32;

/// The `[multicrop]` section of a run configuration (`--method swav` only). Left out of
/// `config.toml` while it has its defaults, so other runs' files do not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiCropConfig {
    /// V: small crops per image besides the two full views (0: off; SwAV's ImageNet runs: 6).
    pub crops: usize,
    /// Side of the small crops in pixels; absent: the smallest side whose last feature map is the
    /// full size's (16 for 28-pixel Omniglot with Conv4). Absent rather than null when unset, as
    /// `target_lr`: the configuration is read back through TOML, which has no null (plan.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Range of a small crop's area as a fraction of the image (SwAV: 0.05-0.14 below its full
    /// crops' 0.14-1; here 0.05-0.2, below the `default` augmentation's 0.2-1).
    pub scale_min: f32,
    pub scale_max: f32,
}

impl Default for MultiCropConfig {
    fn default() -> Self {
        MultiCropConfig {
            crops: 0,
            size: None,
            scale_min: 0.05,
            scale_max: 0.2,
        }
    }
}

impl MultiCropConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == MultiCropConfig::default()
    }

    /// The keys of a set section within bounds (errors name them `multicrop.<key>`), with a small
    /// side that `arch` can share its parameters with. Whether the method reads the section is
    /// [`super::TrainConfig::validate`]'s.
    pub fn validate(&self, arch: &ArchSpec) -> Result<()> {
        if self.crops == 0 || self.crops > MAX_CROPS {
            return Err(Error::config(
                "multicrop.crops",
                format!(
                    "{} small crops: need 1 to {MAX_CROPS} when the section is set",
                    self.crops
                ),
            ));
        }
        if !(self.scale_min > 0.0 && self.scale_min <= self.scale_max && self.scale_max <= 1.0) {
            return Err(Error::config(
                "multicrop.scale_min",
                format!(
                    "crop area {}-{}: need 0 < scale_min <= scale_max <= 1",
                    self.scale_min, self.scale_max
                ),
            ));
        }
        crate::ssl::multicrop::small_size(self, arch).map(|_| ())
    }
}

//! `bmssl train`'s flags of SwAV's `[multicrop]` keys (issue 21), flattened into the train flags.

use bmssl::config::TrainConfig;

/// SwAV's multi-crop (`--method swav`): the keys of the `[multicrop]` section.
#[derive(clap::Args, Default, Debug)]
pub struct MultiCropFlags {
    /// SwAV: small crops per image besides the two full views (multi-crop; SwAV's ImageNet runs
    /// used 6). 0 or absent: off.
    #[arg(long)]
    small_crops: Option<usize>,
    /// SwAV: side of the small crops in pixels (default: the smallest side with the full views'
    /// last feature map, 16 for 28-pixel Omniglot).
    #[arg(long)]
    small_crop_size: Option<usize>,
    /// SwAV: smallest area of a small crop, as a fraction of the image (0.05).
    #[arg(long)]
    small_crop_scale_min: Option<f32>,
    /// SwAV: largest area of a small crop, as a fraction of the image (0.2).
    #[arg(long)]
    small_crop_scale_max: Option<f32>,
}

impl MultiCropFlags {
    /// Sets the keys given on the command line.
    pub fn apply(&self, cfg: &mut TrainConfig) {
        let m = &mut cfg.multicrop;
        if let Some(v) = self.small_crops {
            m.crops = v;
        }
        if let Some(v) = self.small_crop_size {
            m.size = Some(v);
        }
        if let Some(v) = self.small_crop_scale_min {
            m.scale_min = v;
        }
        if let Some(v) = self.small_crop_scale_max {
            m.scale_max = v;
        }
    }
}

//! Which images a run reads: the dataset, its split and the input shape.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The unlabelled pool's source and the network's input shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// `omniglot` (the vendored data) or a path to an image folder `root/<class>/<image>`.
    pub dataset: String,
    /// Split of the dataset used as the unlabelled pool (Omniglot: the 1028 background characters).
    pub split: String,
    /// Omniglot: rotations as extra classes (standard protocol).
    pub rotations: bool,
    /// Input side (28 for Omniglot, as every few-shot Omniglot paper).
    pub image_size: usize,
    /// Input channels (1 for Omniglot).
    pub channels: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "omniglot".into(),
            split: "train".into(),
            rotations: true,
            image_size: 28,
            channels: 1,
        }
    }
}

impl DataConfig {
    /// The input shape as the loaders take it.
    pub fn shape(&self) -> crate::data::ImageShape {
        crate::data::ImageShape::new(self.channels, self.image_size, self.image_size)
    }

    /// A non-empty input shape.
    pub fn validate_shape(&self) -> Result<()> {
        for (field, v) in [("image_size", self.image_size), ("channels", self.channels)] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// A known split name.
    pub fn validate_split(&self) -> Result<()> {
        if !["train", "val", "test", "all"].contains(&self.split.as_str()) {
            return Err(Error::config(
                "split",
                format!("unknown split {:?} (train, val, test or all)", self.split),
            ));
        }
        Ok(())
    }
}

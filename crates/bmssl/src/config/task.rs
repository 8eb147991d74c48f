//! The task construction of section 4.1 as configured: N images, M views each (M1 support + M2
//! query), K tasks per meta-batch, and how each view is augmented.

use crate::augment::AugmentLevel;
use crate::tasks::TaskShape;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// N, M, K, M1, M2 and the augmentation: what one meta-batch of tasks is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskConfig {
    /// N: source images per meta-batch. 20 = 4 tasks of 5 ways, matching 5-way evaluation.
    pub images_per_batch: usize,
    /// M: views per image (M1 + M2).
    pub views: usize,
    /// K: tasks per meta-batch (blocks).
    pub tasks_per_batch: usize,
    /// M1: support views per image. 1 = one-shot tasks, as the main benchmark.
    pub support_views: usize,
    /// M2: query views per image. 3 gives the outer loss several views of every image.
    pub query_views: usize,
    /// Augmentation level (`default` = PsCo's crop + flip; `a1`..`a4` = paper Table 5).
    pub augment: AugmentLevel,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            images_per_batch: 20,
            views: 4,
            tasks_per_batch: 4,
            support_views: 1,
            query_views: 3,
            augment: AugmentLevel::Default,
        }
    }
}

impl TaskConfig {
    /// The task construction of section 4.1.
    pub fn shape(&self) -> TaskShape {
        TaskShape {
            images_per_batch: self.images_per_batch,
            views: self.views,
            tasks_per_batch: self.tasks_per_batch,
            support_views: self.support_views,
            query_views: self.query_views,
        }
    }

    /// Ways of every task (N / K).
    pub fn ways(&self) -> usize {
        self.images_per_batch / self.tasks_per_batch.max(1)
    }

    /// Counts that cannot be zero.
    pub fn validate_counts(&self) -> Result<()> {
        for (field, v) in [
            ("images_per_batch", self.images_per_batch),
            ("tasks_per_batch", self.tasks_per_batch),
            ("support_views", self.support_views),
            ("query_views", self.query_views),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// M = M1 + M2, and N splits into K tasks of at least 2 ways.
    pub fn validate_split(&self) -> Result<()> {
        if self.support_views + self.query_views != self.views {
            return Err(Error::config(
                "views",
                format!(
                    "M = {} but support_views + query_views = {} + {} = {}",
                    self.views,
                    self.support_views,
                    self.query_views,
                    self.support_views + self.query_views
                ),
            ));
        }
        if !self.images_per_batch.is_multiple_of(self.tasks_per_batch) {
            return Err(Error::config(
                "images_per_batch",
                format!(
                    "N = {} is not divisible by tasks_per_batch K = {}",
                    self.images_per_batch, self.tasks_per_batch
                ),
            ));
        }
        if self.ways() < 2 {
            return Err(Error::config(
                "images_per_batch",
                "N / K must be at least 2 ways",
            ));
        }
        Ok(())
    }
}

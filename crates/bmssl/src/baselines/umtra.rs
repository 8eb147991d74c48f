//! UMTRA (Khodadadeh et al. 2019): unsupervised meta-learning with tasks made from N random
//! unlabelled images, each its own class; the support example is the image itself and the query an
//! augmented copy; trained with MAML.
//!
//! Built from section 4.1's task construction with M1 = M2 = 1: the query views are the augmented
//! ones, and the support views are replaced by the un-augmented source images.

use crate::augment::{Augmenter, Image};
use crate::data::UnlabelledPool;
use crate::meta::outer::TaskTensors;
use crate::tasks::{build_meta_batch, TaskShape};
use crate::{Error, Result};

/// UMTRA tasks for meta-step `step` (1-based).
pub fn tasks(
    pool: &UnlabelledPool,
    shape: &TaskShape,
    aug: &Augmenter,
    seed: u64,
    step: u64,
) -> Result<Vec<TaskTensors<f32>>> {
    if shape.support_views != 1 || shape.query_views != 1 {
        return Err(Error::config(
            "support_views",
            "UMTRA uses one support image and one augmented query per class (M1 = M2 = 1)",
        ));
    }
    let batch = build_meta_batch(pool, shape, aug, seed, step - 1)?;
    let s = pool.shape();
    Ok(batch
        .tasks
        .into_iter()
        .map(|t| {
            let support_x = t
                .source_images
                .iter()
                .flat_map(|&i| Image::from_u8(s.channels, s.height, s.width, &pool.image(i)).data)
                .collect();
            TaskTensors {
                support_x,
                support_y: t.support_labels,
                query_x: t.query.data,
                query_y: t.query_labels,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::AugmentLevel;
    use crate::data::{ImageShape, InMemoryDataset};
    use std::sync::Arc;

    #[test]
    fn the_support_image_is_the_source_itself_and_the_query_an_augmented_copy() {
        let classes: Vec<Vec<u8>> = (0..8u8)
            .map(|c| {
                (0..784)
                    .map(|i| ((i * 7 + c as usize * 13) % 251) as u8)
                    .collect()
            })
            .collect();
        let pool = UnlabelledPool::new(Arc::new(
            InMemoryDataset::from_classes("t", ImageShape::new(1, 28, 28), classes).unwrap(),
        ));
        let shape = TaskShape {
            images_per_batch: 4,
            views: 2,
            tasks_per_batch: 2,
            support_views: 1,
            query_views: 1,
        };
        let aug = Augmenter::from_level(AugmentLevel::Default, 28, 28);
        let ts = tasks(&pool, &shape, &aug, 1, 1).unwrap();
        let batch = build_meta_batch(&pool, &shape, &aug, 1, 0).unwrap();
        for (t, b) in ts.iter().zip(&batch.tasks) {
            for (w, &src) in b.source_images.iter().enumerate() {
                let original: Vec<f32> =
                    pool.image(src).iter().map(|&v| v as f32 / 255.0).collect();
                assert_eq!(&t.support_x[w * 784..(w + 1) * 784], &original[..]);
            }
            assert_eq!(t.query_x, b.query.data);
            assert_ne!(t.support_x, t.query_x);
        }
    }
}

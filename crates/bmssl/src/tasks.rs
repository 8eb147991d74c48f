//! Online task construction, paper section 4.1: unlabelled pool -> K few-shot tasks.
//!
//! One meta-batch:
//! 1. sample `N = images_per_batch` distinct images from the [`UnlabelledPool`];
//! 2. make `M = views` augmented views of each ([`Augmenter`]);
//! 3. every view of image `j` gets the pseudo-label `j`;
//! 4. split the N images into `K = tasks_per_batch` blocks of `N/K` images (= `ways`);
//! 5. in each block, `M1 = support_views` views per image go to the support set and
//!    `M2 = query_views` to the query set; labels are remapped to `0..N/K` inside the task.
//!
//! Randomness: the choice of images comes from `rng::derive(seed, [STREAM_TASKS, batch_index, 0])`
//! and the views of the `j`-th chosen image from `rng::derive(seed, [STREAM_TASKS, batch_index, 1, j])`.
//! Views are built in parallel (rayon) yet the result does not depend on the thread count.
//!
//! Pixel convention: `f32` in `[0, 1]`, NCHW. Omniglot is stored inverted (strokes 1, background
//! 0; see [`crate::data::omniglot`]) so zero padding matches the background.
//!
//! Over 400 lines with its tests: the construction itself is about 240 lines; the tests beside it
//! check each step of section 4.1 (shapes, pseudo-labels, blocks, determinism across threads).

use rand::seq::index;
use rayon::prelude::*;

use crate::augment::{Augmenter, Image};
use crate::data::UnlabelledPool;
use crate::rng;
use crate::{Error, Result};

/// Shape of a meta-batch (paper notation in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskShape {
    /// [N] distinct source images per meta-batch.
    pub images_per_batch: usize,
    /// [M] augmented views per image; must equal `support_views + query_views`.
    pub views: usize,
    /// [K] tasks per meta-batch; must divide `images_per_batch`.
    pub tasks_per_batch: usize,
    /// [M1] views per image in a task's support set (>= 1).
    pub support_views: usize,
    /// [M2] views per image in a task's query set (>= 1).
    pub query_views: usize,
}

impl Default for TaskShape {
    /// N=20, M=4, K=4, M1=1, M2=3: 5-way 1-shot tasks with 3 queries per way, four per meta-batch.
    fn default() -> Self {
        TaskShape {
            images_per_batch: 20,
            views: 4,
            tasks_per_batch: 4,
            support_views: 1,
            query_views: 3,
        }
    }
}

impl TaskShape {
    /// Classes per task: `N / K`.
    pub fn ways(&self) -> usize {
        self.images_per_batch / self.tasks_per_batch.max(1)
    }

    /// Check the shape against itself and a pool of `pool_len` images; errors name the field.
    pub fn validate(&self, pool_len: usize) -> Result<()> {
        let s = self;
        if s.images_per_batch == 0 {
            return Err(Error::config("images_per_batch", "must be at least 1"));
        }
        if s.tasks_per_batch == 0 {
            return Err(Error::config("tasks_per_batch", "must be at least 1"));
        }
        if s.images_per_batch.checked_rem(s.tasks_per_batch) != Some(0) {
            return Err(Error::config(
                "images_per_batch",
                format!(
                    "{} is not divisible by tasks_per_batch = {}: every task needs the same number of ways",
                    s.images_per_batch, s.tasks_per_batch
                ),
            ));
        }
        if s.support_views == 0 {
            return Err(Error::config(
                "support_views",
                "must be at least 1 (a task needs a support set)",
            ));
        }
        if s.query_views == 0 {
            return Err(Error::config(
                "query_views",
                "must be at least 1 (a task needs a query set)",
            ));
        }
        if s.support_views + s.query_views != s.views {
            return Err(Error::config(
                "views",
                format!(
                    "{} != support_views + query_views = {} + {}",
                    s.views, s.support_views, s.query_views
                ),
            ));
        }
        if s.images_per_batch > pool_len {
            return Err(Error::config(
                "images_per_batch",
                format!(
                    "{} is larger than the pool of {pool_len} images",
                    s.images_per_batch
                ),
            ));
        }
        Ok(())
    }
}

/// A stack of same-shaped images: `data` is `[n][channels][height][width]`, row-major, `f32`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    /// Images.
    pub n: usize,
    /// Channels per image.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// NCHW, `n * channels * height * width` values.
    pub data: Vec<f32>,
}

impl ImageBatch {
    /// An empty batch (n = 0) ready for [`push`](Self::push).
    pub fn with_capacity(n: usize, channels: usize, height: usize, width: usize) -> Self {
        ImageBatch {
            n: 0,
            channels,
            height,
            width,
            data: Vec::with_capacity(n * channels * height * width),
        }
    }
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Image `i`, CHW.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.data[i * len..(i + 1) * len]
    }
    /// Append one image of the batch's shape.
    pub fn push(&mut self, img: &Image) {
        debug_assert_eq!(
            (img.channels, img.height, img.width),
            (self.channels, self.height, self.width)
        );
        self.data.extend_from_slice(&img.data);
        self.n += 1;
    }
}

/// One few-shot task built from unlabelled images.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Classes (pseudo-classes) in the task: N/K.
    pub ways: usize,
    /// `ways * M1` views, way-major: all M1 views of way 0, then way 1, ...
    pub support: ImageBatch,
    /// Label (0..ways) of each support view.
    pub support_labels: Vec<usize>,
    /// `ways * M2` views, way-major.
    pub query: ImageBatch,
    /// Label (0..ways) of each query view.
    pub query_labels: Vec<usize>,
    /// Pool index of the source image of each way.
    pub source_images: Vec<usize>,
}

/// The K tasks of one meta-batch.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaBatch {
    /// K tasks.
    pub tasks: Vec<Task>,
}

/// The `n` distinct pool images of meta-batch `batch_index` (the sources of [`build_meta_batch`]'s
/// tasks, in their order), drawn from the run seed.
pub fn batch_images(pool_len: usize, n: usize, seed: u64, batch_index: u64) -> Vec<usize> {
    let mut pick = rng::derive(seed, &[rng::STREAM_TASKS, batch_index, 0]);
    index::sample(&mut pick, pool_len, n).into_vec()
}

/// The generator branch of the task views in [`batch_views`] (SwAV's small crops use another).
pub const VIEWS_OF_TASKS: u64 = 1;

/// `views[j][v]`: view `v` (of `count`) of the `j`-th `chosen` pool image, one generator per image,
/// at path `[STREAM_TASKS, batch_index, branch, j]` of the run seed, whatever the thread count.
pub fn batch_views(
    pool: &UnlabelledPool,
    chosen: &[usize],
    aug: &Augmenter,
    count: usize,
    seed: u64,
    batch_index: u64,
    branch: u64,
) -> Vec<Vec<Image>> {
    let src = pool.shape();
    chosen
        .par_iter()
        .enumerate()
        .map(|(j, &p)| {
            let mut r = rng::derive(seed, &[rng::STREAM_TASKS, batch_index, branch, j as u64]);
            let img = Image::from_u8(src.channels, src.height, src.width, &pool.image(p));
            (0..count).map(|_| aug.apply(&img, &mut r)).collect()
        })
        .collect()
}

/// Build meta-batch number `batch_index` of the run seeded `seed` (section 4.1).
///
/// Deterministic in `(pool, shape, aug, seed, batch_index)`, whatever the rayon thread count.
pub fn build_meta_batch(
    pool: &UnlabelledPool,
    shape: &TaskShape,
    aug: &Augmenter,
    seed: u64,
    batch_index: u64,
) -> Result<MetaBatch> {
    shape.validate(pool.len())?;
    let src = pool.shape();
    let (n, m, m1) = (shape.images_per_batch, shape.views, shape.support_views);
    let ways = shape.ways();

    let chosen = batch_images(pool.len(), n, seed, batch_index);

    let views = batch_views(pool, &chosen, aug, m, seed, batch_index, VIEWS_OF_TASKS);

    let (c, h, w) = (src.channels, aug.out_height, aug.out_width);
    let tasks = (0..shape.tasks_per_batch)
        .map(|k| {
            let block = k * ways..(k + 1) * ways;
            let mut support = ImageBatch::with_capacity(ways * m1, c, h, w);
            let mut query = ImageBatch::with_capacity(ways * (m - m1), c, h, w);
            let (mut support_labels, mut query_labels) = (Vec::new(), Vec::new());
            for (way, j) in block.clone().enumerate() {
                for (v, view) in views[j].iter().enumerate() {
                    if v < m1 {
                        support.push(view);
                        support_labels.push(way);
                    } else {
                        query.push(view);
                        query_labels.push(way);
                    }
                }
            }
            Task {
                ways,
                support,
                support_labels,
                query,
                query_labels,
                source_images: chosen[block].to_vec(),
            }
        })
        .collect();
    Ok(MetaBatch { tasks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::AugmentLevel;
    use crate::data::{ImageShape, InMemoryDataset};
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    /// `classes x per_class` random-ish 1x8x8 images whose first pixel encodes the pool index.
    fn pool(classes: usize, per_class: usize) -> UnlabelledPool {
        let shape = ImageShape::new(1, 8, 8);
        let bufs = (0..classes)
            .map(|c| {
                (0..per_class * 64)
                    .map(|i| ((c * 31 + i * 7) % 251) as u8)
                    .collect::<Vec<u8>>()
            })
            .collect();
        UnlabelledPool::new(Arc::new(
            InMemoryDataset::from_classes("synthetic", shape, bufs).unwrap(),
        ))
    }

    fn aug() -> Augmenter {
        Augmenter::from_level(AugmentLevel::Default, 6, 6)
    }

    fn shape(n: usize, k: usize, m1: usize, m2: usize) -> TaskShape {
        TaskShape {
            images_per_batch: n,
            views: m1 + m2,
            tasks_per_batch: k,
            support_views: m1,
            query_views: m2,
        }
    }

    fn arb_shape() -> impl Strategy<Value = TaskShape> {
        (1usize..5, 1usize..5, 1usize..3, 1usize..4)
            .prop_map(|(k, ways, m1, m2)| shape(k * ways, k, m1, m2))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_task_has_n_over_k_ways_with_m1_support_and_m2_query_views(s in arb_shape(), seed in any::<u64>()) {
            let mb = build_meta_batch(&pool(5, 6), &s, &aug(), seed, 3).unwrap();
            prop_assert_eq!(mb.tasks.len(), s.tasks_per_batch);
            for t in &mb.tasks {
                let ways = s.images_per_batch / s.tasks_per_batch;
                prop_assert_eq!(t.ways, ways);
                prop_assert_eq!(t.source_images.len(), ways);
                prop_assert_eq!(t.support.n, ways * s.support_views);
                prop_assert_eq!(t.query.n, ways * s.query_views);
                prop_assert_eq!(t.support.data.len(), t.support.n * 36);
                prop_assert_eq!(t.query.data.len(), t.query.n * 36);
                for way in 0..ways {
                    prop_assert_eq!(t.support_labels.iter().filter(|&&l| l == way).count(), s.support_views);
                    prop_assert_eq!(t.query_labels.iter().filter(|&&l| l == way).count(), s.query_views);
                }
                // Way-major order.
                let expect_s: Vec<usize> = (0..ways * s.support_views).map(|i| i / s.support_views).collect();
                prop_assert_eq!(&t.support_labels, &expect_s);
                let expect_q: Vec<usize> = (0..ways * s.query_views).map(|i| i / s.query_views).collect();
                prop_assert_eq!(&t.query_labels, &expect_q);
            }
        }

        #[test]
        fn all_views_of_one_source_image_share_one_label_and_one_block(s in arb_shape(), seed in any::<u64>()) {
            // Identity augmentation (whole-image resize, no randomness) makes every view of an
            // image equal to the image itself, so views can be traced back to their source.
            let p = pool(5, 6);
            let ident = Augmenter::new(
                crate::augment::AugmentConfig { crop: None, hflip: 0.0, jitter: None, grayscale: 0.0, blur: None },
                8,
                8,
            );
            let mb = build_meta_batch(&p, &s, &ident, seed, 0).unwrap();
            for t in &mb.tasks {
                for (i, &label) in t.support_labels.iter().enumerate() {
                    let src = Image::from_u8(1, 8, 8, &p.image(t.source_images[label]));
                    prop_assert_eq!(t.support.image(i), &src.data[..]);
                }
                for (i, &label) in t.query_labels.iter().enumerate() {
                    let src = Image::from_u8(1, 8, 8, &p.image(t.source_images[label]));
                    prop_assert_eq!(t.query.image(i), &src.data[..]);
                }
            }
        }

        #[test]
        fn no_source_image_appears_in_two_blocks(s in arb_shape(), seed in any::<u64>()) {
            let mb = build_meta_batch(&pool(5, 6), &s, &aug(), seed, 1).unwrap();
            let mut seen = HashSet::new();
            for t in &mb.tasks {
                for &i in &t.source_images {
                    prop_assert!(seen.insert(i), "pool image {} in two blocks", i);
                }
            }
            prop_assert_eq!(seen.len(), s.images_per_batch);
        }
    }

    #[test]
    fn the_same_seed_gives_identical_tasks_on_1_and_2_threads() {
        let p = pool(10, 4);
        let s = TaskShape::default();
        let a = Augmenter::from_level(AugmentLevel::A4, 6, 6);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| build_meta_batch(&p, &s, &a, 42, 7).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_ne!(one, build_meta_batch(&p, &s, &a, 43, 7).unwrap());
        assert_ne!(one, build_meta_batch(&p, &s, &a, 42, 8).unwrap());
    }

    #[test]
    fn n_not_divisible_by_k_is_an_error_naming_the_field() {
        let err = shape(10, 3, 1, 3).validate(100).unwrap_err().to_string();
        assert!(
            err.contains("images_per_batch") && err.contains("10") && err.contains('3'),
            "{err}"
        );
    }

    #[test]
    fn m1_plus_m2_not_m_is_an_error_naming_the_field() {
        let mut s = shape(20, 4, 1, 3);
        s.views = 5;
        let err = s.validate(100).unwrap_err().to_string();
        assert!(err.contains("views") && err.contains('5'), "{err}");
    }

    #[test]
    fn zero_support_or_query_views_is_an_error_naming_the_field() {
        let err = shape(20, 4, 0, 3).validate(100).unwrap_err().to_string();
        assert!(err.contains("support_views"), "{err}");
        let err = shape(20, 4, 2, 0).validate(100).unwrap_err().to_string();
        assert!(err.contains("query_views"), "{err}");
    }

    #[test]
    fn n_larger_than_the_pool_is_an_error_naming_both() {
        let err = build_meta_batch(&pool(2, 3), &shape(8, 2, 1, 1), &aug(), 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("images_per_batch") && err.contains('8') && err.contains('6'),
            "{err}"
        );
    }
}

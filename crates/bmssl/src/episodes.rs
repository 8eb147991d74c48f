//! Supervised N-way K-shot episodes over a labelled dataset split: the standard few-shot
//! evaluation protocol (and the input of supervised baselines).
//!
//! Unlike [`crate::tasks`], episodes use real class labels and no augmentation: an episode shows
//! the images as they are. Episode `i` of seed `s` draws from
//! `rng::derive(s, [STREAM_EPISODES, i])`, so evaluation sets are reproducible and can be
//! computed in any order.

use rand::seq::index;

use crate::augment::Image;
use crate::data::Dataset;
use crate::rng;
use crate::tasks::ImageBatch;
use crate::{Error, Result};

/// One labelled few-shot episode.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// Classes in the episode (N).
    pub ways: usize,
    /// Support images per class (K).
    pub shots: usize,
    /// Query images per class.
    pub queries: usize,
    /// `ways * shots` images, way-major, `f32` NCHW in `[0, 1]`.
    pub support: ImageBatch,
    /// Label (0..ways) of each support image.
    pub support_labels: Vec<usize>,
    /// `ways * queries` images, way-major.
    pub query: ImageBatch,
    /// Label (0..ways) of each query image.
    pub query_labels: Vec<usize>,
}

/// Sample episode `episode_index` of `ways`-way `shots`-shot with `queries` queries per class.
///
/// Classes are drawn among those with at least `shots + queries` images; images within a class
/// are distinct. Errors (naming the value) when no such episode exists.
pub fn sample_episode(
    split: &dyn Dataset,
    ways: usize,
    shots: usize,
    queries: usize,
    seed: u64,
    episode_index: u64,
) -> Result<Episode> {
    for (field, v) in [("ways", ways), ("shots", shots), ("queries", queries)] {
        if v == 0 {
            return Err(Error::config(field, "must be at least 1"));
        }
    }
    if ways > split.num_classes() {
        return Err(Error::config(
            "ways",
            format!(
                "{ways} is more than the {} classes of {}",
                split.num_classes(),
                split.name()
            ),
        ));
    }
    let need = shots + queries;
    let eligible: Vec<usize> = (0..split.num_classes())
        .filter(|&c| split.images_in_class(c) >= need)
        .collect();
    if eligible.len() < ways {
        let largest = (0..split.num_classes())
            .map(|c| split.images_in_class(c))
            .max()
            .unwrap_or(0);
        return Err(Error::config(
            "shots + queries",
            format!(
                "{shots} + {queries} = {need} images per class, but only {} classes of {} have that many \
                 ({ways} needed; the largest class has {largest})",
                eligible.len(),
                split.name()
            ),
        ));
    }

    let mut r = rng::derive(seed, &[rng::STREAM_EPISODES, episode_index]);
    let classes: Vec<usize> = index::sample(&mut r, eligible.len(), ways)
        .into_iter()
        .map(|i| eligible[i])
        .collect();
    let s = split.shape();
    let mut support = ImageBatch::with_capacity(ways * shots, s.channels, s.height, s.width);
    let mut query = ImageBatch::with_capacity(ways * queries, s.channels, s.height, s.width);
    let (mut support_labels, mut query_labels) = (Vec::new(), Vec::new());
    for (way, &class) in classes.iter().enumerate() {
        let picks = index::sample(&mut r, split.images_in_class(class), need).into_vec();
        for (i, &p) in picks.iter().enumerate() {
            let img = Image::from_u8(s.channels, s.height, s.width, &split.image(class, p));
            if i < shots {
                support.push(&img);
                support_labels.push(way);
            } else {
                query.push(&img);
                query_labels.push(way);
            }
        }
    }
    Ok(Episode {
        ways,
        shots,
        queries,
        support,
        support_labels,
        query,
        query_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageShape, InMemoryDataset};

    /// Class c's images are all filled with the value c (so labels can be checked from pixels).
    fn dataset(classes: usize, per_class: usize) -> InMemoryDataset {
        let bufs = (0..classes).map(|c| vec![c as u8; per_class * 4]).collect();
        InMemoryDataset::from_classes("toy", ImageShape::new(1, 2, 2), bufs).unwrap()
    }

    #[test]
    fn an_episode_has_ways_times_shots_support_and_ways_times_queries_query_images() {
        let ds = dataset(10, 6);
        let e = sample_episode(&ds, 5, 1, 3, 0, 0).unwrap();
        assert_eq!((e.support.n, e.query.n), (5, 15));
        assert_eq!(e.support_labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            e.query_labels,
            vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
        );
        // Support and query of one way come from one class.
        for (i, &l) in e.query_labels.iter().enumerate() {
            assert_eq!(e.query.image(i)[0], e.support.image(l)[0]);
        }
        assert_eq!(e, sample_episode(&ds, 5, 1, 3, 0, 0).unwrap());
        assert_ne!(e, sample_episode(&ds, 5, 1, 3, 0, 1).unwrap());
    }

    #[test]
    fn more_ways_than_classes_is_an_error_naming_the_value() {
        let err = sample_episode(&dataset(3, 6), 5, 1, 1, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ways") && err.contains('5') && err.contains('3'),
            "{err}"
        );
    }

    #[test]
    fn more_shots_and_queries_than_images_per_class_is_an_error_naming_the_value() {
        let err = sample_episode(&dataset(10, 6), 5, 5, 5, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10 images per class") && err.contains("largest class has 6"),
            "{err}"
        );
    }
}

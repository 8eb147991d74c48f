//! CACTUs' partitions of the pool and the tasks drawn from them, and the partition file a run keeps
//! (`RUN_DIR/cactus-partitions.bin`).
//!
//! A partition is one k-means clustering of the pool's embedding, rescaled by its own random
//! diagonal ([`Scaling`]). A task is drawn from one partition: N of its clusters that have at least
//! K + Q members, K + Q distinct images of each; the cluster is the class.
//!
//! The file: a magic line, one line of JSON ([`Header`]: what the partitions were computed from),
//! the cluster of every image in every partition (`u16`, little-endian, partition-major), and the
//! SHA-256 of everything before it. A file whose checksum does not match is refused, never read.

use super::Scaling;
use crate::meta::outer::TaskTensors;
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

const MAGIC: &[u8] = b"BMSSL-CACTUS-PARTITIONS-1\n";

/// The rng stream of CACTUs' random choices (scalings, seedings, tasks): a value of its own, apart
/// from [`crate::rng`]'s small stream numbers.
pub const STREAM_CACTUS: u64 = 0x4341_4354;

/// What a partition file was computed from; a run reuses a file only if its header is the one the
/// run's configuration asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub partitions: usize,
    pub clusters: usize,
    pub scaling: Scaling,
    pub iterations: usize,
    pub seed: u64,
    /// Images in the pool.
    pub images: usize,
    /// The embedding: the checkpoint path given, or `simclr:<steps>` for the run's own.
    pub embedding: String,
}

/// P partitions of `images` images into at most `clusters` clusters each.
#[derive(Clone, Debug, PartialEq)]
pub struct Partitions {
    pub header: Header,
    /// Cluster of image `i` in partition `p`: `labels[p * images + i]`.
    pub labels: Vec<u16>,
}

/// One image of a task: its class in the task, its pool index, and whether it is a support image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskImage {
    pub label: usize,
    pub image: usize,
    pub support: bool,
}

impl Partitions {
    /// Computes the partitions of `embedding [images, dim]`: partition `p` is k-means on the
    /// embedding with every dimension scaled by its own factor (see [`Scaling`]; partition 0 is the
    /// embedding itself). `progress(p)` is called as partition `p` (0-based) is done.
    pub fn compute(
        header: Header,
        embedding: &[f32],
        dim: usize,
        progress: &mut dyn FnMut(usize, &crate::kmeans::Clustering),
    ) -> Result<Self> {
        let n = header.images;
        if embedding.len() != n * dim {
            return Err(Error::shape(
                "cactus embedding",
                format!("{} values for {n} images of {dim}", embedding.len()),
            ));
        }
        let mut labels = Vec::with_capacity(header.partitions * n);
        for p in 0..header.partitions {
            let mut rng = crate::rng::derive(header.seed, &[STREAM_CACTUS, 0, p as u64]);
            let scale: Vec<f32> = match header.scaling {
                Scaling::Random if p > 0 => (0..dim).map(|_| rng.gen::<f32>()).collect(),
                _ => vec![1.0; dim],
            };
            let scaled: Vec<f32> = embedding
                .chunks_exact(dim)
                .flat_map(|row| row.iter().zip(&scale).map(|(v, s)| v * s))
                .collect();
            let c = crate::kmeans::kmeans(
                &scaled,
                dim,
                header.clusters,
                header.iterations,
                &mut rng,
                &mut |_| {},
            )?;
            labels.extend(c.assignments.iter().map(|&a| a as u16));
            progress(p, &c);
        }
        Ok(Partitions { header, labels })
    }

    /// Cluster of image `i` in partition `p`.
    pub fn cluster(&self, p: usize, i: usize) -> usize {
        self.labels[p * self.header.images + i] as usize
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(serde_json::to_vec(&self.header).unwrap_or_default());
        out.push(b'\n');
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, &self.to_bytes())
    }

    /// Reads a partition file, refusing one whose checksum, header or size is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let corrupt = |why: &str| {
            Error::corrupt(
                path,
                format!("{why}; delete the file to compute the partitions again"),
            )
        };
        if bytes.len() < MAGIC.len() + 32 || !bytes.starts_with(MAGIC) {
            return Err(corrupt("not a CACTUs partition file"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("checksum mismatch (the file is damaged)"));
        }
        let rest = &body[MAGIC.len()..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| corrupt("no header line"))?;
        let header: Header = serde_json::from_slice(&rest[..end])
            .map_err(|e| corrupt(&format!("bad header: {e}")))?;
        let data = &rest[end + 1..];
        let want = header
            .partitions
            .checked_mul(header.images)
            .and_then(|v| v.checked_mul(2));
        if want != Some(data.len()) {
            return Err(corrupt("size does not match its header"));
        }
        let labels: Vec<u16> = data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        if labels.iter().any(|&l| l as usize >= header.clusters) {
            return Err(corrupt("a cluster index is out of range"));
        }
        Ok(Partitions { header, labels })
    }
}

/// The partitions, indexed for drawing tasks of `ways` classes with `per_class` images each.
#[derive(Clone, Debug)]
pub struct TaskSampler {
    partitions: Partitions,
    /// Members of each cluster of each partition, ascending: `members[p][c]`.
    members: Vec<Vec<Vec<u32>>>,
    /// Partitions with at least `ways` clusters of `per_class` members, and those clusters.
    usable: Vec<(usize, Vec<usize>)>,
    ways: usize,
    shots: usize,
    queries: usize,
}

impl TaskSampler {
    /// Indexes `partitions` for `ways`-way tasks with `shots` support and `queries` query images
    /// per class; fails (naming the keys) when no partition has `ways` clusters that large.
    pub fn new(partitions: Partitions, ways: usize, shots: usize, queries: usize) -> Result<Self> {
        let h = &partitions.header;
        let need = shots + queries;
        let mut members = Vec::with_capacity(h.partitions);
        let mut usable = Vec::new();
        for p in 0..h.partitions {
            let mut m: Vec<Vec<u32>> = vec![Vec::new(); h.clusters];
            for i in 0..h.images {
                m[partitions.cluster(p, i)].push(i as u32);
            }
            let big: Vec<usize> = (0..h.clusters).filter(|&c| m[c].len() >= need).collect();
            if big.len() >= ways {
                usable.push((p, big));
            }
            members.push(m);
        }
        if usable.is_empty() {
            return Err(Error::config(
                "cactus.clusters",
                format!(
                    "no partition has {ways} clusters of at least {need} images (K + Q = {shots} + {queries}); with {} images, use fewer clusters (k = {}) or smaller tasks",
                    h.images, h.clusters
                ),
            ));
        }
        Ok(TaskSampler {
            partitions,
            members,
            usable,
            ways,
            shots,
            queries,
        })
    }

    /// The partitions.
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Task `t` of meta-step `step` (1-based): the partition it was drawn from and its images,
    /// class by class (support images first within a class).
    pub fn task_images(&self, seed: u64, step: u64, t: u64) -> (usize, Vec<TaskImage>) {
        let mut rng = crate::rng::derive(seed, &[STREAM_CACTUS, 1, step, t]);
        let (p, clusters) = &self.usable[rng.gen_range(0..self.usable.len())];
        let mut out = Vec::with_capacity(self.ways * (self.shots + self.queries));
        for (label, ci) in sample(&mut rng, clusters.len(), self.ways)
            .into_iter()
            .enumerate()
        {
            let m = &self.members[*p][clusters[ci]];
            for (j, k) in sample(&mut rng, m.len(), self.shots + self.queries)
                .into_iter()
                .enumerate()
            {
                out.push(TaskImage {
                    label,
                    image: m[k] as usize,
                    support: j < self.shots,
                });
            }
        }
        (*p, out)
    }

    /// The `tasks` tasks of meta-step `step` as tensors (pixels in `[0, 1]`, no augmentation, as
    /// CACTUs), with `image(i)` the pool's image `i`.
    pub fn tasks(
        &self,
        seed: u64,
        step: u64,
        tasks: usize,
        image: &dyn Fn(usize) -> Vec<f32>,
    ) -> Vec<TaskTensors<f32>> {
        (0..tasks as u64)
            .map(|t| {
                let (_, images) = self.task_images(seed, step, t);
                let mut task = TaskTensors {
                    support_x: Vec::new(),
                    support_y: Vec::new(),
                    query_x: Vec::new(),
                    query_y: Vec::new(),
                };
                for im in images {
                    let (x, y) = if im.support {
                        (&mut task.support_x, &mut task.support_y)
                    } else {
                        (&mut task.query_x, &mut task.query_y)
                    };
                    x.extend(image(im.image));
                    y.push(im.label);
                }
                task
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(partitions: usize, clusters: usize, images: usize) -> Header {
        Header {
            partitions,
            clusters,
            scaling: Scaling::Random,
            iterations: 20,
            seed: 3,
            images,
            embedding: "test".into(),
        }
    }

    /// 6 groups of 10 points in 4 dimensions, the groups far apart.
    fn embedding() -> Vec<f32> {
        let mut rng = crate::rng::derive(1, &[]);
        (0..60)
            .flat_map(|i| {
                let g = i / 10;
                (0..4)
                    .map(|j| (g * (j + 1)) as f32 * 3.0 + rng.gen_range(-0.5f32..0.5))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn partitions() -> Partitions {
        Partitions::compute(header(4, 6, 60), &embedding(), 4, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn every_task_of_a_partition_holds_images_of_distinct_clusters() {
        let sampler = TaskSampler::new(partitions(), 3, 2, 3).unwrap();
        let p = sampler.partitions();
        for step in 1..=20 {
            for t in 0..4 {
                let (part, images) = sampler.task_images(7, step, t);
                assert_eq!(images.len(), 3 * 5);
                // One cluster per label, a different one for each label, and no image twice.
                let mut cluster_of_label = [usize::MAX; 3];
                for im in &images {
                    let c = p.cluster(part, im.image);
                    if cluster_of_label[im.label] == usize::MAX {
                        cluster_of_label[im.label] = c;
                    }
                    assert_eq!(cluster_of_label[im.label], c, "step {step} task {t}");
                }
                let mut distinct = cluster_of_label.to_vec();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), 3, "step {step} task {t}");
                let mut seen: Vec<usize> = images.iter().map(|i| i.image).collect();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), images.len());
                for l in 0..3 {
                    let s = images.iter().filter(|i| i.label == l && i.support).count();
                    assert_eq!(s, 2);
                }
            }
        }
    }

    #[test]
    fn the_partitions_differ_from_one_another_and_are_the_same_for_a_seed() {
        let a = partitions();
        assert_eq!(a, partitions());
        assert_eq!(a.labels.len(), 4 * 60);
        let rows = |p: usize| a.labels[p * 60..(p + 1) * 60].to_vec();
        assert!(
            (1..4).any(|p| rows(p) != rows(0)),
            "the random scaling changes the partitions"
        );
        let other = Partitions::compute(
            Header {
                seed: 4,
                ..header(4, 6, 60)
            },
            &embedding(),
            4,
            &mut |_, _| {},
        )
        .unwrap();
        assert_ne!(a.labels, other.labels);
    }

    #[test]
    fn a_saved_file_loads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.bin");
        let a = partitions();
        a.save(&path).unwrap();
        assert_eq!(Partitions::load(&path).unwrap(), a);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Partitions::load(&path).unwrap_err().to_string();
        assert!(err.contains("checksum") && err.contains("p.bin"), "{err}");
        std::fs::write(&path, b"hello").unwrap();
        assert!(Partitions::load(&path).is_err());
    }

    #[test]
    fn tasks_too_large_for_every_partition_are_refused_naming_the_key() {
        let err = TaskSampler::new(partitions(), 3, 10, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cactus.clusters"), "{err}");
    }
}

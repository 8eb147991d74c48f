//! k-means (Lloyd's algorithm from a k-means++ seeding) for CACTUs' partitions ([`crate::cactus`]).
//!
//! Written here rather than taken from a crate, on purpose. `linfa-clustering`, the maintained Rust
//! k-means, was evaluated: it brings `ndarray`, `linfa` and their random-number stack into a crate
//! that uses none of them, and it does not promise the same bits for every thread count. A run's
//! partitions must be reproducible from its seed alone, on 1 thread or 16 (they are part of the
//! run, and a resumed run must match an uninterrupted one). What makes this implementation so:
//!
//! * every random choice comes from the one generator the caller derives from the run seed;
//! * each point's nearest centre is computed alone (a parallel *map*, no parallel reduction), with a
//!   fixed summation order inside the distance (eight lanes, then the lanes in order), ties going to
//!   the lowest centre index;
//! * everything summed over points (the k-means++ D^2 total, the new centroids) is summed
//!   sequentially in point order, in `f64`.
//!
//! It is ~150 lines of code besides its tests, with no BLAS: a Lloyd iteration costs n k d
//! multiply-adds (Omniglot's pool: 82,240 points, 64 dimensions, k = 500: 2.6e9), the greedy
//! seeding about `2 + ln k` iterations' worth.

use crate::{Error, Result};
use rand::Rng;
use rayon::prelude::*;

/// The result of one clustering.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    /// Cluster of each point, in `0..k`.
    pub assignments: Vec<u32>,
    /// Lloyd iterations run (fewer than the cap when the assignments stopped changing).
    pub iterations: usize,
    /// Sum of squared distances of the points to their centres.
    pub inertia: f64,
}

/// Squared Euclidean distance with a fixed summation order (eight interleaved lanes, summed in
/// order), so the compiler may vectorise it and every machine still gets the same bits.
#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((l, u), v) in lanes.iter_mut().zip(x).zip(y) {
            let d = u - v;
            *l += d * d;
        }
    }
    for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
        let d = x - y;
        lanes[j] += d * d;
    }
    lanes.iter().sum()
}

/// Nearest centre of `x` among `centres [k, dim]` (lowest index on ties) and its squared distance.
fn nearest(x: &[f32], centres: &[f32], dim: usize) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (c, centre) in centres.chunks_exact(dim).enumerate() {
        let d = sq_dist(x, centre);
        if d < best.1 {
            best = (c as u32, d);
        }
    }
    best
}

/// A point drawn with probability proportional to `dist` (its squared distance to the nearest
/// centre so far); `total` is the sum of `dist`, > 0.
fn draw_by_distance(dist: &[f32], total: f64, rng: &mut impl Rng) -> usize {
    let mut target = rng.gen::<f64>() * total;
    for (i, &d) in dist.iter().enumerate() {
        target -= d as f64;
        if target < 0.0 && d > 0.0 {
            return i;
        }
    }
    // Rounding left `target` at or just above 0: the last point that can be drawn.
    dist.iter().rposition(|&d| d > 0.0).unwrap_or(0)
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as scikit-learn's `KMeans`, which CACTUs
/// used): the first centre uniformly; each next one the best (lowest total squared distance) of
/// `2 + ln k` candidates drawn with probability proportional to the squared distance to the nearest
/// centre chosen so far.
fn seed_centres(data: &[f32], dim: usize, k: usize, rng: &mut impl Rng) -> Vec<f32> {
    let n = data.len() / dim;
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres = Vec::with_capacity(k * dim);
    let first = rng.gen_range(0..n);
    centres.extend_from_slice(&data[first * dim..(first + 1) * dim]);
    let mut dist: Vec<f32> = data
        .par_chunks_exact(dim)
        .map(|x| sq_dist(x, &centres[..dim]))
        .collect();
    for _ in 1..k {
        let total: f64 = dist.iter().map(|&d| d as f64).sum();
        if total <= 0.0 {
            // Every point sits on a centre already (fewer distinct points than k): any point.
            let pick = rng.gen_range(0..n);
            centres.extend_from_slice(&data[pick * dim..(pick + 1) * dim]);
            continue;
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| draw_by_distance(&dist, total, rng))
            .collect();
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for c in candidates {
            let row = &data[c * dim..(c + 1) * dim];
            let with: Vec<f32> = dist
                .par_iter()
                .zip(data.par_chunks_exact(dim))
                .map(|(&d, x)| d.min(sq_dist(x, row)))
                .collect();
            let potential: f64 = with.iter().map(|&d| d as f64).sum();
            if best.as_ref().is_none_or(|b| potential < b.0) {
                best = Some((potential, c, with));
            }
        }
        if let Some((_, c, with)) = best {
            centres.extend_from_slice(&data[c * dim..(c + 1) * dim]);
            dist = with;
        }
    }
    centres
}

/// Clusters the `n = data.len() / dim` rows of `data` into `k` clusters: k-means++ seeding, then
/// at most `max_iters` Lloyd iterations (stopping early when no assignment changes). A cluster
/// left empty by an iteration is re-seeded with the point farthest from its centre. `progress(i)`
/// is called after each iteration. The same data and generator state give the same bits on any
/// number of threads.
pub fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    max_iters: usize,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(usize),
) -> Result<Clustering> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::shape(
            "k-means",
            format!("{} values are not rows of {dim}", data.len()),
        ));
    }
    let n = data.len() / dim;
    if k == 0 || k > n || k > u32::MAX as usize {
        return Err(Error::config(
            "clusters",
            format!("k = {k} clusters of {n} points: need 1 <= k <= {n}"),
        ));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("k-means input (row {}, column {})", i / dim, i % dim),
        });
    }
    let mut centres = seed_centres(data, dim, k, rng);
    let mut assignments = vec![u32::MAX; n];
    let mut iterations = 0;
    let mut inertia = 0.0;
    for it in 0..max_iters.max(1) {
        let near: Vec<(u32, f32)> = data
            .par_chunks_exact(dim)
            .map(|x| nearest(x, &centres, dim))
            .collect();
        inertia = near.iter().map(|&(_, d)| d as f64).sum();
        let changed = near
            .iter()
            .zip(&assignments)
            .filter(|((c, _), a)| c != *a)
            .count();
        for (a, (c, _)) in assignments.iter_mut().zip(&near) {
            *a = *c;
        }
        iterations = it + 1;
        progress(iterations);
        if changed == 0 || iterations == max_iters.max(1) {
            break;
        }
        // New centroids: sums in point order, in f64.
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (x, &c) in data.chunks_exact(dim).zip(&assignments) {
            counts[c as usize] += 1;
            for (s, &v) in sums[c as usize * dim..(c as usize + 1) * dim]
                .iter_mut()
                .zip(x)
            {
                *s += v as f64;
            }
        }
        // Empty clusters take the points farthest from their centres, farthest first.
        let mut far: Vec<(f32, usize)> = Vec::new();
        if counts.contains(&0) {
            far = near.iter().enumerate().map(|(i, &(_, d))| (d, i)).collect();
            far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        let mut next_far = far.into_iter();
        for c in 0..k {
            let centre = &mut centres[c * dim..(c + 1) * dim];
            if counts[c] > 0 {
                for (v, s) in centre.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *v = (*s / counts[c] as f64) as f32;
                }
            } else if let Some((_, i)) = next_far.next() {
                centre.copy_from_slice(&data[i * dim..(i + 1) * dim]);
            }
        }
    }
    Ok(Clustering {
        assignments,
        iterations,
        inertia,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `blobs` well-separated Gaussian-ish blobs of `per` points in `dim` dimensions.
    fn blobs(blobs: usize, per: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::derive(seed, &[]);
        let mut out = Vec::new();
        for b in 0..blobs {
            for _ in 0..per {
                for j in 0..dim {
                    let centre = if j % blobs == b { 10.0 } else { 0.0 };
                    out.push(centre + rng.gen_range(-1.0f32..1.0));
                }
            }
        }
        out
    }

    fn run(data: &[f32], k: usize, seed: u64) -> Clustering {
        kmeans(
            data,
            5,
            k,
            50,
            &mut crate::rng::derive(seed, &[9]),
            &mut |_| {},
        )
        .unwrap()
    }

    #[test]
    fn separated_blobs_are_recovered_exactly() {
        let data = blobs(4, 30, 5, 1);
        let c = run(&data, 4, 3);
        for b in 0..4 {
            let first = c.assignments[b * 30];
            assert!(
                c.assignments[b * 30..(b + 1) * 30]
                    .iter()
                    .all(|&a| a == first),
                "{:?} after {} iterations, inertia {}",
                c.assignments,
                c.iterations,
                c.inertia
            );
        }
        let mut distinct: Vec<u32> = (0..4).map(|b| c.assignments[b * 30]).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn clustering_is_deterministic_for_a_seed_and_the_same_on_one_and_two_threads() {
        let data = blobs(3, 200, 5, 2);
        let on = |threads: usize, seed: u64| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run(&data, 17, seed))
        };
        let one = on(1, 5);
        assert_eq!(one, on(2, 5));
        assert_eq!(one, on(1, 5));
        assert_eq!(one.inertia.to_bits(), on(2, 5).inertia.to_bits());
        assert_ne!(one.assignments, on(1, 6).assignments, "the seed matters");
    }

    #[test]
    fn no_cluster_is_left_empty_when_points_repeat() {
        // 12 points on 3 distinct positions, k = 3: each position its own cluster.
        let data: Vec<f32> = (0..12).flat_map(|i| [(i % 3) as f32; 5]).collect();
        let c = run(&data, 3, 0);
        let mut used = c.assignments.clone();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn impossible_requests_are_errors_not_panics() {
        let data = blobs(2, 3, 5, 0);
        let mut rng = crate::rng::derive(0, &[]);
        let err = kmeans(&data, 5, 7, 10, &mut rng, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("clusters"), "{err}");
        assert!(kmeans(&data, 4, 2, 10, &mut rng, &mut |_| {}).is_err());
        let mut bad = data.clone();
        bad[3] = f32::NAN;
        assert!(kmeans(&bad, 5, 2, 10, &mut rng, &mut |_| {}).is_err());
    }

    #[test]
    fn the_distance_sums_every_coordinate() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        let b = vec![0f32; 13];
        assert_eq!(
            sq_dist(&a, &b),
            (0..13).map(|i| (i * i) as f32).sum::<f32>()
        );
    }
}

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
//! The distances are the cost (a Lloyd iteration on Omniglot's pool, 82,240 points of 64 dimensions
//! and k = 500: 2.6e9 multiply-adds; the greedy seeding about `2 + ln k` iterations' worth). The
//! engine's GEMM computes every `x.c` on fixed blocks of [`BLOCK`] points (blocks in parallel, each
//! one GEMM), and `|x|^2 + |c|^2 - 2 x.c` then only *rules out* the centres that cannot be nearest:
//! those farther than the best by more than a bound on the rounding error of both forms
//! ([`margin`]). The few that remain are compared by the direct, fixed-order [`sq_dist`], so the
//! result has exactly the bits of comparing every point with every centre directly, on any machine
//! (whatever kernel the GEMM picks) and any thread count, at GEMM speed.
//!
//! Over 400 lines with its tests: the algorithm (seeding, blocked distances, Lloyd) is about 300
//! lines; the tests beside it, about 140, check it against the direct computation bit for bit.

use crate::engine::{MatRef, Scalar};
use crate::{Error, Result};
use rand::Rng;
use rayon::prelude::*;

/// Points per distance block: one `BLOCK x k` GEMM each (500 centres: 512 KB of products).
const BLOCK: usize = 256;

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

/// Squared norm of every row of `data [n, dim]`.
fn row_norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.par_chunks_exact(dim)
        .map(|x| x.iter().map(|v| v * v).sum())
        .collect()
}

/// A bound on the rounding error of `|x|^2 + |c|^2 - 2 x.c` in `f32` *plus* that of [`sq_dist`], as a
/// multiple of `|x|^2 + |c|^2` (each of the dot product, the norms and the direct sum errs by at most
/// `dim * EPSILON` of `|x|^2 + |c|^2` in any summation order; this doubles the sum of them).
fn margin(dim: usize) -> f32 {
    (4 * dim + 16) as f32 * f32::EPSILON
}

/// `f(block, products)` for each fixed block of [`BLOCK`] rows of `data [n, dim]`, in parallel, with
/// `products [rows, m]` the dot products of the block's rows with the `m` rows of `centres`;
/// the results in block order.
fn by_blocks<T: Send>(
    data: &[f32],
    dim: usize,
    centres: &[f32],
    f: impl Fn(usize, &[f32]) -> Vec<T> + Sync,
) -> Vec<T> {
    let m = centres.len() / dim;
    let blocks: Vec<Vec<T>> = data
        .par_chunks(BLOCK * dim)
        .enumerate()
        .map(|(b, xs)| {
            let rows = xs.len() / dim;
            let mut products = vec![0f32; rows * m];
            f32::matmul(
                &mut products,
                false,
                MatRef::rows(xs, rows, dim),
                MatRef::rows(centres, m, dim).t(),
            );
            f(b * BLOCK, &products)
        })
        .collect();
    blocks.into_iter().flatten().collect()
}

/// Nearest centre of every point (lowest index on ties) and its squared distance, the same bits as
/// [`sq_dist`] against every centre would give: the GEMM's distances only rule out the centres
/// that cannot be nearest (farther than the best by more than [`margin`]); the few left are
/// compared by [`sq_dist`].
fn nearest_all(data: &[f32], dim: usize, centres: &[f32]) -> Vec<(u32, f32)> {
    let k = centres.len() / dim;
    let centre_norms = row_norms(centres, dim);
    let largest = centre_norms.iter().cloned().fold(0f32, f32::max);
    let norms = row_norms(data, dim);
    by_blocks(data, dim, centres, |start, products| {
        products
            .chunks_exact(k)
            .enumerate()
            .map(|(r, dots)| {
                let i = start + r;
                let x = &data[i * dim..(i + 1) * dim];
                // |x|^2 is the same for every centre: compare |c|^2 - 2 x.c.
                let s: Vec<f32> = dots
                    .iter()
                    .zip(&centre_norms)
                    .map(|(&dot, &cn)| cn - 2.0 * dot)
                    .collect();
                let low = s.iter().cloned().fold(f32::INFINITY, f32::min);
                let cut = low + 2.0 * margin(dim) * (norms[i] + largest);
                let mut best = (0u32, f32::INFINITY);
                for (c, &sc) in s.iter().enumerate() {
                    if sc <= cut {
                        let d = sq_dist(x, &centres[c * dim..(c + 1) * dim]);
                        if d < best.1 {
                            best = (c as u32, d);
                        }
                    }
                }
                best
            })
            .collect()
    })
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
    let norms = row_norms(data, dim);
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
        let rows: Vec<f32> = candidates
            .iter()
            .flat_map(|&c| data[c * dim..(c + 1) * dim].iter().copied())
            .collect();
        let row_norm: Vec<f32> = candidates.iter().map(|&c| norms[c]).collect();
        // with[i * trials + t]: point i's distance to its nearest centre if candidate t joins.
        let with = by_blocks(data, dim, &rows, |start, products| {
            let mut out = Vec::with_capacity(products.len());
            for (r, dots) in products.chunks_exact(trials).enumerate() {
                let i = start + r;
                let x = &data[i * dim..(i + 1) * dim];
                for (t, &dot) in dots.iter().enumerate() {
                    // dist.min(sq_dist(x, c)), exactly: sq_dist only where c may be nearer.
                    let scale = norms[i] + row_norm[t];
                    let far = scale - 2.0 * dot - margin(dim) * scale > dist[i];
                    out.push(if far {
                        dist[i]
                    } else {
                        dist[i].min(sq_dist(x, &rows[t * dim..(t + 1) * dim]))
                    });
                }
            }
            out
        });
        // Potentials summed in point order, in f64; the first of equal ones wins.
        let mut potential = vec![0f64; trials];
        for row in with.chunks_exact(trials) {
            for (p, &d) in potential.iter_mut().zip(row) {
                *p += d as f64;
            }
        }
        let mut best = 0;
        for t in 1..trials {
            if potential[t] < potential[best] {
                best = t;
            }
        }
        centres.extend_from_slice(&rows[best * dim..(best + 1) * dim]);
        for (d, row) in dist.iter_mut().zip(with.chunks_exact(trials)) {
            *d = row[best];
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
        let near = nearest_all(data, dim, &centres);
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
    fn the_blocked_nearest_centre_is_the_direct_nearest_centre_bit_for_bit() {
        // 700 points (three blocks, the last one short) in 13 dimensions, 37 centres, offset far
        // from the origin so that |x|^2 + |c|^2 - 2 x.c cancels heavily; two points sit on centres.
        let mut rng = crate::rng::derive(4, &[]);
        let (n, dim, k) = (700, 13, 37);
        let mut data: Vec<f32> = (0..n * dim)
            .map(|_| 50.0 + rng.gen_range(-1.0f32..1.0))
            .collect();
        let centres: Vec<f32> = data[..k * dim].to_vec();
        data.copy_within(0..dim, 400 * dim);
        data.copy_within(5 * dim..6 * dim, 699 * dim);
        let near = nearest_all(&data, dim, &centres);
        assert_eq!(near.len(), n);
        for (i, &(c, d)) in near.iter().enumerate() {
            let x = &data[i * dim..(i + 1) * dim];
            let mut direct = (0u32, f32::INFINITY);
            for (z, centre) in centres.chunks_exact(dim).enumerate() {
                let e = sq_dist(x, centre);
                if e < direct.1 {
                    direct = (z as u32, e);
                }
            }
            assert_eq!(
                (c, d.to_bits()),
                (direct.0, direct.1.to_bits()),
                "point {i}"
            );
        }
        assert_eq!(
            near[400],
            (0, 0.0),
            "a point on a centre is at distance exactly 0"
        );
        assert_eq!(near[699], (5, 0.0));
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

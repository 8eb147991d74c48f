//! Times CACTUs' clustering at Omniglot's size: one partition (k-means++ seeding + Lloyd) of
//! 82,240 points in 64 dimensions into k = 500 clusters, the shape of `bmssl train --method
//! cactus-protonet` on the Omniglot training pool. The points are synthetic (2000 Gaussian blobs
//! offset from the origin, as ReLU features are), so no data or training is needed.
//!
//!     cargo run --release -p bmssl --example kmeans_bench -- [points] [k] [iterations] [threads]

use rand::Rng;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are whole numbers"))
        .collect();
    let n = args.first().copied().unwrap_or(82_240);
    let k = args.get(1).copied().unwrap_or(500);
    let iterations = args.get(2).copied().unwrap_or(30);
    let threads = args.get(3).copied().unwrap_or(1);
    let dim = 64;
    let mut rng = bmssl::rng::derive(0, &[1]);
    let blobs: Vec<f32> = (0..2000 * dim)
        .map(|_| rng.gen_range(0.0f32..4.0))
        .collect();
    let data: Vec<f32> = (0..n)
        .flat_map(|i| {
            let b = (i * 7919) % 2000;
            blobs[b * dim..(b + 1) * dim].to_vec()
        })
        .map(|v| v + rng.gen_range(-0.5f32..0.5))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let start = Instant::now();
    let c = pool
        .install(|| {
            bmssl::kmeans::kmeans(
                &data,
                dim,
                k,
                iterations,
                &mut bmssl::rng::derive(0, &[2]),
                &mut |_| {},
            )
        })
        .expect("k-means runs");
    let secs = start.elapsed().as_secs_f64();
    let flop = 2.0 * (n * k * dim) as f64 * (c.iterations as f64 + 2.0 + (k as f64).ln());
    println!(
        "k-means: {n} points x {dim} dims, k = {k}, {} Lloyd iterations, {threads} thread(s): {secs:.2} s \
         ({:.2} GFLOP/s of distance work), inertia {:.6e}",
        c.iterations,
        flop / secs / 1e9,
        c.inertia
    );
}

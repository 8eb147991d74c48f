// The micro-benchmark of the Winograd products (engine/conv/products.rs) against the gemm crate, one thread.
// To run: append this module to crates/bmssl/src/engine/conv/products.rs, then
//   cargo test -p bmssl --release --lib tmp_bench -- --ignored --nocapture
// (kept out of the crate: speed is measured in benchmarks, not tests). Output of 2026-12-06 in products-bench.txt.
#[cfg(test)]
mod tmpbench {
    use super::*;
    #[test]
    #[ignore]
    fn tmp_bench() {
        let shapes = [
            (64usize, 245usize, 64usize, false),
            (64, 64, 245, true),
            (64, 735, 64, false),
            (128, 64, 735, true),
            (64, 20, 64, false),
            (128, 1210, 64, false),
        ];
        for &(m, n, kd, bt) in &shapes {
            let a: Vec<f32> = (0..m * kd).map(|i| (i % 7) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..kd * n).map(|i| (i % 5) as f32 * 0.1).collect();
            let av = MatRef::rows(&a, m, kd);
            let bv = if bt {
                MatRef::rows(&b, n, kd).t()
            } else {
                MatRef::rows(&b, kd, n)
            };
            let mut c = vec![0f32; m * n];
            let reps = 2000;
            let time = |f: &mut dyn FnMut()| {
                for _ in 0..50 {
                    f()
                }
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    f()
                }
                t.elapsed().as_secs_f64() / reps as f64 * 1e6
            };
            let t512 = time(&mut || unsafe { simd::product_avx512(&mut c, n, av, bv, false) });
            let t2 = time(&mut || unsafe { simd::product_avx2(&mut c, n, av, bv, false) });
            let tg = time(&mut || f32::matmul_strided(&mut c, m, n, n, 1, false, av, bv, kd));
            let fl = 2.0 * (m * n * kd) as f64 / 1e3;
            println!("{m}x{n}x{kd} bt={bt}: avx512 {:.1} us ({:.0} GF), avx2 {:.1} us ({:.0} GF), gemm {:.1} us ({:.0} GF)", t512, fl / t512, t2, fl / t2, tg, fl / tg);
        }
    }
}

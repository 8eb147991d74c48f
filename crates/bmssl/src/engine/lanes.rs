//! AVX2 lane masks and partial stores shared by the kernels' intrinsics (`pool/avx2.rs`,
//! `conv/fast/avx2.rs`).

use std::arch::x86_64::*;

/// Lanes `0..n` set (`n <= 8`), as a mask for masked loads and stores.
///
/// # Safety
/// Called from code compiled with AVX2 on a CPU that has it (the function is inlined there).
#[inline(always)]
pub(crate) unsafe fn first_lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The first `k` values of `v` stored at `p` (`k <= 8`), by whole stores of 8, 4, 2 and 1 values:
/// a masked store (`vmaskmovps`) is slow on AMD Zen, dozens of cycles, and the kernels took one a
/// row on planes of 7, 14 or 21 values a row.
///
/// # Safety
/// As [`first_lanes`]; `p..p + k` is writable.
#[inline(always)]
pub(crate) unsafe fn store_first(p: *mut f32, v: __m256, k: usize) {
    store_first_si256(p.cast(), _mm256_castps_si256(v), k)
}

/// [`store_first`] for eight 32-bit integers (or any 32-bit lanes).
///
/// # Safety
/// As [`store_first`].
#[inline(always)]
pub(crate) unsafe fn store_first_si256(p: *mut i32, v: __m256i, k: usize) {
    if k >= 8 {
        return _mm256_storeu_si256(p.cast(), v);
    }
    let (mut p, mut k, mut part) = (p, k, _mm256_castsi256_si128(v));
    if k >= 4 {
        _mm_storeu_si128(p.cast(), part);
        (p, k, part) = (p.add(4), k - 4, _mm256_extracti128_si256::<1>(v));
    }
    if k >= 2 {
        _mm_storel_epi64(p.cast(), part);
        (p, k, part) = (p.add(2), k - 2, _mm_unpackhi_epi64(part, part));
    }
    if k == 1 {
        _mm_storeu_si32(p.cast(), part);
    }
}

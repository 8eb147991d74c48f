//! AVX2 lane masks shared by the kernels' intrinsics (`pool/avx2.rs`, `conv/fast/avx2.rs`).

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

//! The direct kernel's weight gradient on `f32` in AVX2 instructions: the nine tap sums of one
//! (output channel, input channel) pair over the batch, `acc[kk][l] += dy[i + l] * x_pad[off_kk +
//! i + l]`, eight positions at a time, each a multiply then an add (as the portable loop, so the
//! same bits).
//!
//! Why not the portable loop: compiled, it kept two of the nine accumulators on the stack (a
//! store-to-load round trip on every iteration's chain), reloaded `dy` for every tap and checked
//! eighteen bounds per iteration; at 3x84x84 it was 11% of a BMSSL meta-step. Here the nine
//! accumulators stay in registers and the three padded rows are read through one pointer each.

use std::arch::x86_64::*;

/// Positions per vector.
pub(super) const W: usize = 8;

/// The tap sums of [`super::direct_backward`] for one (output, input) channel pair: `planes` holds
/// the batch's zero-padded input planes of that channel (`plane` values each, `wp` per row), `dyp`
/// the output gradient of that channel in the padded row pitch (`dy_stride` values per image), `len`
/// positions per image. Returns the nine vector accumulators (lanes unsummed) and the nine scalar
/// sums of the positions past the last whole vector, as the portable loop computes them.
///
/// # Safety
/// The CPU must have AVX2 (bounds are checked here).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tap_sums(
    planes: &[f32],
    plane: usize,
    dyp: &[f32],
    dy_stride: usize,
    n: usize,
    wp: usize,
    len: usize,
) -> ([[f32; W]; 9], [f32; 9]) {
    assert!(n == 0 || (n * plane <= planes.len() && (n - 1) * dy_stride + len <= dyp.len()));
    // The farthest tap (2, 2) of the last position stays in its plane.
    assert!(n == 0 || len + 2 * wp + 2 <= plane);
    let body = len / W * W;
    let mut acc = [_mm256_setzero_ps(); 9];
    let mut rest = [0.0f32; 9];
    for b in 0..n {
        let p = planes.as_ptr().add(b * plane);
        let d = dyp.as_ptr().add(b * dy_stride);
        let (r0, r1, r2) = (p, p.add(wp), p.add(2 * wp));
        let mut i = 0;
        while i < body {
            let dv = _mm256_loadu_ps(d.add(i));
            macro_rules! tap {
                ($kk:expr, $row:expr, $kx:expr) => {
                    acc[$kk] = _mm256_add_ps(
                        acc[$kk],
                        _mm256_mul_ps(dv, _mm256_loadu_ps($row.add(i + $kx))),
                    );
                };
            }
            tap!(0, r0, 0);
            tap!(1, r0, 1);
            tap!(2, r0, 2);
            tap!(3, r1, 0);
            tap!(4, r1, 1);
            tap!(5, r1, 2);
            tap!(6, r2, 0);
            tap!(7, r2, 1);
            tap!(8, r2, 2);
            i += W;
        }
        for i in body..len {
            for (kk, r) in rest.iter_mut().enumerate() {
                *r += *d.add(i) * *p.add((kk / 3) * wp + kk % 3 + i);
            }
        }
    }
    let mut out = [[0.0f32; W]; 9];
    for (o, a) in out.iter_mut().zip(acc) {
        _mm256_storeu_ps(o.as_mut_ptr(), a);
    }
    (out, rest)
}

//! The whole chunks of eight of the reductions in `reduce.rs`, in AVX2, on `f32` (one register
//! holds a row's eight accumulators) and `Dual<f32>` (two registers, value and tangent
//! interleaved as in memory). Each accumulator gets the same additions in the same order as in the
//! plain loops, and products are rounded before they are added (a multiply then an add, no FMA),
//! so the results are the same bits; `reduce.rs`'s tests compare them.
//!
//! Why: one row's sum is a chain of dependent additions (one per chunk), so a loop over one row
//! waits on the adder's latency. Several rows (the channels of a batch-norm layer) are summed side
//! by side here, four chains at a time, which changes nothing in any row's order.
//!
//! Each function fills the accumulators of every row (`acc[r]` for row `r`, rows of `m` elements)
//! and returns how many elements of each row it consumed: the whole chunks of eight when the type
//! is `f32` or `Dual<f32>` and the CPU has AVX2, else none (the caller's loops then do everything).

use super::ACC;
use crate::engine::scalar::{as_f32s, as_f32s_mut, f32s_per_element};
use std::arch::x86_64::*;

/// Independent chains of additions in flight (registers of accumulators per group of rows).
const CHAINS: usize = 4;

/// Whether the kernels take `S` (`f32` or `Dual<f32>` on a CPU with AVX2).
fn taken<S: 'static>() -> bool {
    f32s_per_element::<S>().is_some() && std::arch::is_x86_feature_detected!("avx2")
}

/// `x`'s floats and floats per element, for a type [`taken`] accepted.
fn f32s<S: 'static>(x: &[S]) -> (&[f32], usize) {
    as_f32s(x).expect("f32 or Dual<f32>")
}

/// [`f32s`] of a mutable slice (accumulators flattened).
fn f32s_mut<S: 'static>(x: &mut [S]) -> (&mut [f32], usize) {
    as_f32s_mut(x).expect("f32 or Dual<f32>")
}

/// The geometry of one call: `rows` rows of `m` elements, `e` floats each, of which the first
/// `whole` elements (the whole chunks) are for the kernels.
#[derive(Clone, Copy)]
struct Rows {
    rows: usize,
    /// Floats per row.
    stride: usize,
    /// Floats of each row the kernels consume.
    len: usize,
    dual: bool,
}

impl Rows {
    fn new(len: usize, m: usize, rows: usize, e: usize) -> Self {
        assert_eq!(len, rows * m, "reduce: rows of the wrong length");
        Rows {
            rows,
            stride: m * e,
            len: m / ACC * ACC * e,
            dual: e == 2,
        }
    }
}

/// What a kernel does with each chunk (a const parameter, so that each is compiled on its own).
type Op = u8;
/// `acc += a`.
const SUM: Op = 0;
/// `acc += a * b`.
const DOT: Op = 1;
/// `acc_s += a`, `acc_d += a * b`.
const SUM_DOT: Op = 2;
/// `a -= c`, then `acc += a * a`.
const CENTER: Op = 3;

/// Row sums' chunks: `acc[r][i] += x[r][i + 8 k]`.
pub(super) fn sum_chunks<S: 'static>(x: &[S], m: usize, acc: &mut [[S; ACC]]) -> usize {
    if !taken::<S>() {
        return 0;
    }
    let g = Rows::new(x.len(), m, acc.len(), f32s(x).1);
    let x = f32s(x).0.as_ptr().cast_mut();
    let acc = f32s_mut(acc.as_flattened_mut()).0.as_mut_ptr();
    // SAFETY: the CPU has AVX2 (`taken`); `Rows::new` checked that x holds the rows, and acc has
    // eight elements per row; SUM only reads x.
    unsafe { run::<SUM>(g, x, x, &[], acc, acc) };
    m / ACC * ACC
}

/// Row dot products' chunks: `acc[r][i] += a[r][i + 8 k] * b[r][i + 8 k]`.
pub(super) fn dot_chunks<S: 'static>(a: &[S], b: &[S], m: usize, acc: &mut [[S; ACC]]) -> usize {
    if !taken::<S>() {
        return 0;
    }
    let g = Rows::new(a.len(), m, acc.len(), f32s(a).1);
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    let (a, b) = (f32s(a).0.as_ptr().cast_mut(), f32s(b).0.as_ptr());
    let acc = f32s_mut(acc.as_flattened_mut()).0.as_mut_ptr();
    // SAFETY: as in `sum_chunks`; b holds as many rows as a.
    unsafe { run::<DOT>(g, a, b, &[], acc, acc) };
    m / ACC * ACC
}

/// Both of the above in one pass.
pub(super) fn sum_and_dot_chunks<S: 'static>(
    a: &[S],
    b: &[S],
    m: usize,
    acc_s: &mut [[S; ACC]],
    acc_d: &mut [[S; ACC]],
) -> usize {
    if !taken::<S>() {
        return 0;
    }
    let g = Rows::new(a.len(), m, acc_s.len(), f32s(a).1);
    assert!(a.len() == b.len() && acc_d.len() == acc_s.len());
    let (a, b) = (f32s(a).0.as_ptr().cast_mut(), f32s(b).0.as_ptr());
    let s = f32s_mut(acc_s.as_flattened_mut()).0.as_mut_ptr();
    let d = f32s_mut(acc_d.as_flattened_mut()).0.as_mut_ptr();
    // SAFETY: as in `dot_chunks`, with acc_d as long as acc_s.
    unsafe { run::<SUM_DOT>(g, a, b, &[], s, d) };
    m / ACC * ACC
}

/// Centring's chunks: `x[r][j] -= c[r]`, then `acc[r][i] += x[r][j] * x[r][j]`.
pub(super) fn center_chunks<S: Copy + 'static>(
    x: &mut [S],
    m: usize,
    c: &[S],
    acc: &mut [[S; ACC]],
) -> usize {
    if !taken::<S>() {
        return 0;
    }
    let g = Rows::new(x.len(), m, acc.len(), f32s(x).1);
    assert_eq!(c.len(), acc.len(), "center: one centre per row");
    let x = f32s_mut(x).0.as_mut_ptr();
    let c = f32s(c).0;
    let acc = f32s_mut(acc.as_flattened_mut()).0.as_mut_ptr();
    // SAFETY: as in `sum_chunks`; x is written through its own pointer, c holds one element per
    // row.
    unsafe { run::<CENTER>(g, x, x, c, acc, acc) };
    m / ACC * ACC
}

/// Runs `OP` over every row, [`CHAINS`] registers of accumulators at a time (four `f32` rows or
/// two dual rows per group), then the rows left over one at a time.
///
/// # Safety
/// The CPU has AVX2; `a` and `b` hold `g.rows` rows of `g.stride` floats (`a` writable for
/// [`CENTER`]); `c` holds one element per row for [`CENTER`]; `acc_s` and `acc_d` hold
/// `8 e` floats per row (they may be the same pointer for the ops that use one).
#[target_feature(enable = "avx2")]
unsafe fn run<const OP: Op>(
    g: Rows,
    a: *mut f32,
    b: *const f32,
    c: &[f32],
    acc_s: *mut f32,
    acc_d: *mut f32,
) {
    macro_rules! rows {
        ($dual:literal, $group:literal) => {{
            let mut r = 0;
            while r + $group <= g.rows {
                group::<OP, $dual, $group>(g, r, a, b, c, acc_s, acc_d);
                r += $group;
            }
            while r < g.rows {
                group::<OP, $dual, 1>(g, r, a, b, c, acc_s, acc_d);
                r += 1;
            }
        }};
    }
    if g.dual {
        rows!(true, 2)
    } else {
        rows!(false, 4)
    }
}

/// Registers per chunk of eight elements.
const fn regs(dual: bool) -> usize {
    if dual {
        2
    } else {
        1
    }
}

/// `OP` over rows `first..first + G`, their accumulators in registers.
///
/// # Safety
/// As [`run`], with `first + G <= g.rows`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn group<const OP: Op, const DUAL: bool, const G: usize>(
    g: Rows,
    first: usize,
    a: *mut f32,
    b: *const f32,
    c: &[f32],
    acc_s: *mut f32,
    acc_d: *mut f32,
) {
    let nr = regs(DUAL);
    let per_row = 8 * nr;
    let zero = _mm256_setzero_ps();
    let mut s = [[zero; 2]; G];
    let mut d = [[zero; 2]; G];
    let mut cv = [zero; G];
    for j in 0..G {
        let row = first + j;
        for k in 0..nr {
            s[j][k] = _mm256_loadu_ps(acc_s.add(row * per_row + 8 * k));
            d[j][k] = _mm256_loadu_ps(acc_d.add(row * per_row + 8 * k));
        }
        if OP == CENTER {
            // The subtrahend of every lane: c, or (c.v, c.t) repeated.
            cv[j] = if DUAL {
                let (v, t) = (c[2 * row], c[2 * row + 1]);
                _mm256_setr_ps(v, t, v, t, v, t, v, t)
            } else {
                _mm256_set1_ps(c[row])
            };
        }
    }
    let mut off = 0;
    while off < g.len {
        for j in 0..G {
            let at = (first + j) * g.stride + off;
            for k in 0..nr {
                let pa = a.add(at + 8 * k);
                let x = _mm256_loadu_ps(pa);
                match OP {
                    SUM => s[j][k] = _mm256_add_ps(s[j][k], x),
                    DOT => {
                        let p = mul::<DUAL>(x, _mm256_loadu_ps(b.add(at + 8 * k)));
                        s[j][k] = _mm256_add_ps(s[j][k], p);
                    }
                    SUM_DOT => {
                        s[j][k] = _mm256_add_ps(s[j][k], x);
                        let p = mul::<DUAL>(x, _mm256_loadu_ps(b.add(at + 8 * k)));
                        d[j][k] = _mm256_add_ps(d[j][k], p);
                    }
                    _ => {
                        let v = _mm256_sub_ps(x, cv[j]);
                        _mm256_storeu_ps(pa, v);
                        s[j][k] = _mm256_add_ps(s[j][k], mul::<DUAL>(v, v));
                    }
                }
            }
        }
        off += per_row;
    }
    for j in 0..G {
        let row = first + j;
        for k in 0..nr {
            _mm256_storeu_ps(acc_s.add(row * per_row + 8 * k), s[j][k]);
            if OP == SUM_DOT {
                _mm256_storeu_ps(acc_d.add(row * per_row + 8 * k), d[j][k]);
            }
        }
    }
}

/// The elementwise product of two registers of `f32`s, or of duals (`(x.v y.v, x.t y.v + x.v y.t)`
/// per dual, as `Dual`'s `Mul`).
#[inline(always)]
unsafe fn mul<const DUAL: bool>(x: __m256, y: __m256) -> __m256 {
    if DUAL {
        let p = _mm256_mul_ps(x, _mm256_moveldup_ps(y)); // (x.v y.v, x.t y.v)
        let q = _mm256_mul_ps(_mm256_moveldup_ps(x), y); // (x.v y.v, x.v y.t)
        _mm256_blend_ps::<0b1010_1010>(p, _mm256_add_ps(p, q))
    } else {
        _mm256_mul_ps(x, y)
    }
}

const _: () = assert!(CHAINS == 4 * regs(false) && CHAINS == 2 * regs(true));

//! A conv block run a few output channels at a time, for the blocks whose convolution computes
//! each output channel on its own ([`conv::computes_channels_independently`]: the first layer's
//! direct kernel on `f32` and dual numbers).
//!
//! Why: the first block's convolution output is the largest tensor of the learner (a 75-image
//! 28x28 query batch: 64 channels x 75 x 784 floats, 15 MB; 15 images of 84x84: 27 MB). Run as
//! three whole-tensor passes (convolution, batch-norm statistics and normalisation, the fused
//! affine, ReLU and pooling) each pass streams it through memory. Batch norm and pooling work per channel, so a
//! group of channels can go through all three while its convolution output is still in the L2
//! cache; the backward pass does the same (pooling, batch-norm and weight gradients per group).
//!
//! Every output is computed by the same operations in the same order as the whole-tensor passes
//! (the kernels are per channel; only which channels share a call changes), so the results are
//! bit-identical; the tests compare the two bit for bit.
//!
//! Over 400 lines because those tests (every group size against the whole-tensor passes, on `f32`
//! and dual numbers) sit beside the code they check.

use crate::engine::{batchnorm, conv, pool, Scalar};

/// Bytes of one group's convolution output. L2 is 2 MiB per core on the machines this is tuned
/// on; a group of at most 512 KiB leaves room there for what the convolution reads and writes
/// beside it (the block input and its zero-padded copy, the pooled outputs and winners).
const GROUP_BYTES: usize = 512 << 10;

/// Output channels per group per input channel, at least. Each convolution call reads the whole
/// block input (and, when this was measured, also padded it again and on dual numbers split it:
/// since then the block pads it once, `conv::PaddedInput`), so a group smaller than a few times
/// the input spends its time reading the input: with 3x84x84 images one channel's output is
/// larger than [`GROUP_BYTES`], and groups of one channel ran the block slower than the
/// whole-tensor passes (the `bench --channels 3 --size 84` CPU time, measured with 1, 2, 3 and 5
/// channels per input channel: 2 and more were equally fast).
const MIN_CHANNELS_PER_INPUT_CHANNEL: usize = 2;

/// Output channels per group: as many as fit in [`GROUP_BYTES`], at least
/// [`MIN_CHANNELS_PER_INPUT_CHANNEL`] per input channel (and one).
pub(super) fn group_channels<S>(s: &conv::ConvShape) -> usize {
    let channel_bytes = (s.positions() * std::mem::size_of::<S>()).max(1);
    (GROUP_BYTES / channel_bytes)
        .max(MIN_CHANNELS_PER_INPUT_CHANNEL * s.c_in)
        .clamp(1, s.c_out.max(1))
}

/// A block's forward results: the pooled output and, when the tape is kept, what the backward
/// pass needs (empty otherwise).
pub(super) struct BlockForward<S> {
    pub pooled: Vec<S>,
    pub xhat: Vec<S>,
    pub inv_std: Vec<S>,
    pub pool_arg: Vec<u32>,
}

/// The block's parameters: conv weights `[C_out, C_in, 3, 3]` and bias, batch-norm scale and shift.
#[derive(Clone, Copy)]
pub(super) struct BlockWeights<'a, S> {
    pub conv_w: &'a [S],
    pub conv_b: &'a [S],
    pub gamma: &'a [S],
    pub beta: &'a [S],
}

/// Output channel ranges of at most `group` channels.
fn groups(c_out: usize, group: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let group = group.max(1);
    (0..c_out)
        .step_by(group)
        .map(move |c0| c0..(c0 + group).min(c_out))
}

/// What a block's convolution output does with recorded values (`super::conv_values`): `known`,
/// the value part of the whole block's convolution output `[C_out, N, H, W]` from a real pass
/// at the same weights and input (each group's dual convolution then computes only its tangent);
/// `record`, where a real pass appends its convolution output before batch norm.
pub(super) struct OutputMemo<'a, V> {
    pub known: Option<&'a [V]>,
    pub record: Option<&'a mut Vec<V>>,
}

/// conv -> batch-norm (normalised in place) -> fused affine + ReLU + 2x2 max-pool over `x`
/// `[C_in, N, H, W]`, `group` output channels at a time. Needs
/// [`conv::computes_channels_independently`] for bit-identity with the whole-tensor passes.
pub(super) fn forward<S: Scalar>(
    x: &[S],
    p: BlockWeights<'_, S>,
    s: &conv::ConvShape,
    keep_tape: bool,
    group: usize,
    mut memo: OutputMemo<'_, S::Value>,
) -> BlockForward<S> {
    let m = s.positions();
    let (patch, n) = (s.patch(), s.n);
    let (oh, ow) = (s.h / 2, s.w / 2);
    let pooled_per_channel = n * oh * ow;
    let mut out = BlockForward {
        pooled: Vec::with_capacity(s.c_out * pooled_per_channel),
        xhat: Vec::new(),
        inv_std: Vec::with_capacity(s.c_out),
        pool_arg: vec![
            0;
            if keep_tape {
                s.c_out * pooled_per_channel
            } else {
                0
            }
        ],
    };
    if keep_tape {
        out.pooled
            .resize(s.c_out * pooled_per_channel, S::default());
    }
    // The groups' convolution outputs, written in place by the convolution: with the tape, side
    // by side (they become `xhat` once normalised); without, one group's at a time.
    let mut ys: Vec<S> = Vec::with_capacity(if keep_tape { s.c_out } else { group } * m);
    if let Some(rec) = memo.record.as_deref_mut() {
        rec.reserve(s.c_out * m);
    }
    // Padded once for all the groups' convolutions.
    let input = conv::PaddedInput::new(x, s);
    for r in groups(s.c_out, group) {
        let shape = conv::ConvShape {
            c_out: r.len(),
            ..*s
        };
        let (w, b) = (
            &p.conv_w[r.start * patch..r.end * patch],
            &p.conv_b[r.clone()],
        );
        if !keep_tape {
            ys.clear();
        }
        let start = ys.len();
        match memo.known {
            Some(k) => {
                input.forward_known_append(w, b, &shape, &k[r.start * m..r.end * m], &mut ys)
            }
            None => input.forward_append(w, b, &shape, &mut ys),
        }
        let y = &mut ys[start..];
        if let Some(rec) = memo.record.as_deref_mut() {
            rec.extend(y.iter().map(|v| v.value()));
        }
        let inv_std = batchnorm::normalize(y, r.len());
        let pool_shape = pool::PoolShape {
            planes: r.len() * n,
            h: s.h,
            w: s.w,
        };
        let (gamma, beta) = (&p.gamma[r.clone()], &p.beta[r.clone()]);
        if keep_tape {
            let pr = r.start * pooled_per_channel..r.end * pooled_per_channel;
            pool::affine_relu_max_into(
                y,
                gamma,
                beta,
                &pool_shape,
                r.start * m,
                &mut out.pooled[pr.clone()],
                &mut out.pool_arg[pr],
            );
            out.inv_std.extend_from_slice(&inv_std);
        } else {
            pool::affine_relu_max_values_into(y, gamma, beta, &pool_shape, &mut out.pooled);
        }
    }
    if keep_tape {
        out.xhat = ys;
    }
    out
}

/// The block's parameter gradients.
pub(super) struct BlockGrads<S> {
    pub conv_w: Vec<S>,
    pub conv_b: Vec<S>,
    pub gamma: Vec<S>,
    pub beta: Vec<S>,
}

/// The block's forward results the backward pass reads (its tape).
#[derive(Clone, Copy)]
pub(super) struct BlockTapeRef<'a, S> {
    pub input: &'a [S],
    pub xhat: &'a [S],
    pub inv_std: &'a [S],
    pub pooled: &'a [S],
    pub pool_arg: &'a [u32],
}

/// Backward of [`forward`] from `dpooled` (the gradient of the pooled output), `group` output
/// channels at a time: pooling and ReLU, batch norm, then the convolution's weight and bias
/// gradients. The block input's gradient is not computed (the first block needs none).
/// `known`: the value parts of the convolution's weight and bias gradients from a real pass at
/// the same weights and input (each group's dual convolution then computes only its tangents).
pub(super) fn backward<S: Scalar>(
    dpooled: &[S],
    t: BlockTapeRef<'_, S>,
    p: BlockWeights<'_, S>,
    s: &conv::ConvShape,
    group: usize,
    known: Option<&conv::KnownGrads<'_, S::Value>>,
) -> BlockGrads<S> {
    let m = s.positions();
    let patch = s.patch();
    let pooled_per_channel = s.n * (s.h / 2) * (s.w / 2);
    let mut g = BlockGrads {
        conv_w: Vec::with_capacity(s.c_out * patch),
        conv_b: Vec::with_capacity(s.c_out),
        gamma: Vec::with_capacity(s.c_out),
        beta: Vec::with_capacity(s.c_out),
    };
    let mut dz = Vec::new();
    // Padded once for all the groups' weight gradients.
    let input = conv::PaddedInput::new(t.input, s);
    for r in groups(s.c_out, group) {
        let pr = r.start * pooled_per_channel..r.end * pooled_per_channel;
        dz.clear();
        dz.resize(r.len() * m, S::default());
        pool::relu_max_backward_into(
            &dpooled[pr.clone()],
            &t.pooled[pr.clone()],
            &t.pool_arg[pr],
            r.start * m,
            &mut dz,
        );
        let (dg, db) = batchnorm::backward_in_place(
            &mut dz,
            &t.xhat[r.start * m..r.end * m],
            &t.inv_std[r.clone()],
            &p.gamma[r.clone()],
        );
        g.gamma.extend_from_slice(&dg);
        g.beta.extend_from_slice(&db);
        let shape = conv::ConvShape {
            c_out: r.len(),
            ..*s
        };
        let w = &p.conv_w[r.start * patch..r.end * patch];
        let cg = match known {
            Some(whole) => {
                let k = conv::KnownGrads {
                    weight: &whole.weight[r.start * patch..r.end * patch],
                    bias: &whole.bias[r.clone()],
                    input: None,
                };
                input.backward_known(&dz, w, &shape, &k)
            }
            None => input.backward(&dz, w, &shape),
        };
        g.conv_w.extend_from_slice(&cg.weight);
        g.conv_b.extend_from_slice(&cg.bias);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::test_values;
    use crate::engine::Dual;

    fn no_memo<'a, V>() -> OutputMemo<'a, V> {
        OutputMemo {
            known: None,
            record: None,
        }
    }

    /// The bits of a number, to compare results exactly (`==` equates 0.0 and -0.0).
    trait Bits: Scalar {
        fn bits(self) -> (u32, u32);
        fn make(v: f64, t: f64) -> Self;
    }
    impl Bits for f32 {
        fn bits(self) -> (u32, u32) {
            (self.to_bits(), 0)
        }
        fn make(v: f64, _: f64) -> Self {
            v as f32
        }
    }
    impl Bits for Dual<f32> {
        fn bits(self) -> (u32, u32) {
            (self.v.to_bits(), self.t.to_bits())
        }
        fn make(v: f64, t: f64) -> Self {
            Dual::new(v as f32, t as f32)
        }
    }

    fn values<S: Bits>(len: usize, salt: u64, tangent: bool) -> Vec<S> {
        let v = test_values(len, salt);
        let t = test_values(len, salt + 1000);
        v.iter()
            .zip(&t)
            .map(|(&v, &t)| S::make(v, if tangent { t } else { 0.0 }))
            .collect()
    }

    fn assert_same<S: Bits>(what: &str, got: &[S], want: &[S]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths differ");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.bits(), w.bits(), "{what}: element {i} differs");
        }
    }

    /// The block as three whole-tensor passes, as the learner runs blocks the kernel does not
    /// allow to group: `(pooled, xhat, inv_std, pool_arg)`, and the gradients from `dpooled`.
    fn whole<S: Scalar>(
        x: &[S],
        p: BlockWeights<'_, S>,
        s: &conv::ConvShape,
        dpooled: &[S],
    ) -> (BlockForward<S>, BlockGrads<S>) {
        let mut xhat = conv::forward(x, p.conv_w, p.conv_b, s);
        let inv_std = batchnorm::normalize(&mut xhat, s.c_out);
        let pool_shape = pool::PoolShape {
            planes: s.c_out * s.n,
            h: s.h,
            w: s.w,
        };
        let (pooled, pool_arg) = pool::affine_relu_max(&xhat, p.gamma, p.beta, &pool_shape);
        let mut d = pool::relu_max_backward(dpooled, &pooled, &pool_arg, xhat.len());
        let (gamma, beta) = batchnorm::backward_in_place(&mut d, &xhat, &inv_std, p.gamma);
        let cg = conv::backward(&d, x, p.conv_w, s, false);
        (
            BlockForward {
                pooled,
                xhat,
                inv_std,
                pool_arg,
            },
            BlockGrads {
                conv_w: cg.weight,
                conv_b: cg.bias,
                gamma,
                beta,
            },
        )
    }

    fn check<S: Bits>(tangent: bool) {
        // One and three input channels, odd and even sides (odd sides floor at the pooling).
        for (i, (c_in, side)) in [(1, 7), (3, 6), (4, 5)].into_iter().enumerate() {
            let s = conv::ConvShape {
                c_in,
                c_out: 8,
                n: 3,
                h: side,
                w: side,
                k: 3,
            };
            assert!(conv::computes_channels_independently::<S>(&s));
            let salt = 10 * i as u64;
            // The images carry a tangent only when asked (the first layer's images have none).
            let x: Vec<S> = values(c_in * s.positions(), salt + 1, tangent);
            let conv_w: Vec<S> = values(s.c_out * s.patch(), salt + 2, true);
            let conv_b: Vec<S> = values(s.c_out, salt + 3, true);
            let gamma: Vec<S> = values(s.c_out, salt + 4, true);
            let beta: Vec<S> = values(s.c_out, salt + 5, true);
            let p = BlockWeights {
                conv_w: &conv_w,
                conv_b: &conv_b,
                gamma: &gamma,
                beta: &beta,
            };
            let pooled_len = s.c_out * s.n * (side / 2) * (side / 2);
            let dpooled: Vec<S> = values(pooled_len, salt + 6, true);
            let (want, want_grads) = whole(&x, p, &s, &dpooled);
            // One channel a group, groups of 3 (3 + 3 + 2: a last partial group), one group.
            for group in [1, 3, 8] {
                let got = forward(&x, p, &s, true, group, no_memo());
                assert_same("pooled", &got.pooled, &want.pooled);
                assert_same("xhat", &got.xhat, &want.xhat);
                assert_same("inv_std", &got.inv_std, &want.inv_std);
                assert_eq!(got.pool_arg, want.pool_arg, "pooling winners");
                let values_only = forward(&x, p, &s, false, group, no_memo());
                assert_same("inferred", &values_only.pooled, &want.pooled);
                let tape = BlockTapeRef {
                    input: &x,
                    xhat: &got.xhat,
                    inv_std: &got.inv_std,
                    pooled: &got.pooled,
                    pool_arg: &got.pool_arg,
                };
                let g = backward(&dpooled, tape, p, &s, group, None);
                assert_same("conv weight gradient", &g.conv_w, &want_grads.conv_w);
                assert_same("conv bias gradient", &g.conv_b, &want_grads.conv_b);
                assert_same("bn scale gradient", &g.gamma, &want_grads.gamma);
                assert_same("bn shift gradient", &g.beta, &want_grads.beta);
            }
        }
    }

    #[test]
    fn a_block_run_by_channel_groups_equals_the_whole_tensor_passes_bit_for_bit_in_f32() {
        check::<f32>(false);
    }

    #[test]
    fn a_block_run_by_channel_groups_equals_the_whole_tensor_passes_bit_for_bit_on_duals() {
        check::<Dual<f32>>(false);
        check::<Dual<f32>>(true);
    }

    #[test]
    fn groups_hold_at_most_the_group_bytes_and_at_least_one_channel() {
        let s = conv::ConvShape {
            c_in: 1,
            c_out: 64,
            n: 75,
            h: 28,
            w: 28,
            k: 3,
        };
        // 235 KB per f32 channel: two channels a group; 470 KB per dual channel: one, raised to
        // two per input channel; 3x84x84 images: two per input channel.
        assert_eq!(group_channels::<f32>(&s), 2);
        assert_eq!(group_channels::<Dual<f32>>(&s), 2);
        let rgb = conv::ConvShape {
            c_in: 3,
            n: 20,
            h: 84,
            w: 84,
            ..s
        };
        assert_eq!(group_channels::<f32>(&rgb), 6);
        let tiny = conv::ConvShape {
            n: 1,
            h: 2,
            w: 2,
            ..s
        };
        assert_eq!(group_channels::<f32>(&tiny), 64);
        let r: Vec<_> = groups(8, 3).collect();
        assert_eq!(r, vec![0..3, 3..6, 6..8]);
    }

    #[test]
    fn f64_and_the_winograd_shapes_are_not_grouped() {
        let s = conv::ConvShape {
            c_in: 1,
            c_out: 8,
            n: 2,
            h: 5,
            w: 5,
            k: 3,
        };
        assert!(conv::computes_channels_independently::<f32>(&s));
        assert!(conv::computes_channels_independently::<Dual<f64>>(&s));
        assert!(!conv::computes_channels_independently::<f64>(&s));
        let winograd = conv::ConvShape { c_in: 5, ..s };
        assert!(!conv::computes_channels_independently::<f32>(&winograd));
        assert!(!conv::computes_channels_independently::<f32>(
            &conv::ConvShape { k: 5, ..s }
        ));
    }
}

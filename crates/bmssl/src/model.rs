//! The learner: a Conv4 (or Conv5) backbone, a projection head for the contrastive loss and a
//! linear classifier over the task's ways, run *functionally* on a flat parameter vector.
//!
//! ```text
//! x [N, C, H, W] -> blocks x [conv3x3(64, pad 1) -> batch-norm -> ReLU -> max-pool 2x2] -> flatten f [N, F]
//! f -> classifier: Linear(F, ways)                       -> logits [N, ways]
//! f -> projection: Linear(F, 64) -> ReLU -> Linear(64, 64) -> z [N, 64]
//! ```
//!
//! Parameters live in one flat vector whose layout ([`Layout`]) names every tensor exactly as the
//! PyTorch reference does (`conv0.weight`, `bn0.bias`, `proj.2.weight`, `classifier.bias`...), so
//! checkpoints line up with PyTorch. The same [`Learner`] runs with the meta-parameters theta or
//! with any fast weights w (learn2learn's `clone`/`adapt` idea without the module copies): the
//! weights are an argument, never state.
//!
//! Over 400 lines: the parameter layout and the forward and backward passes of every block and head
//! form one functional model; splitting them would separate each forward pass from its backward
//! pass.

use crate::engine::{activation, batchnorm, conv, linear, pool, Scalar};
use crate::{Error, Result};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::ops::Range;

mod conv_values;
mod grouped;

pub use conv_values::{ConvValues, Memo};

/// Which convolutional backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// Four blocks: the standard few-shot backbone (Vinyals et al. 2016, MAML, PsCo on Omniglot).
    Conv4,
    /// Five blocks: PsCo's choice for 84x84 miniImageNet (a 2x2 final map instead of 5x5).
    Conv5,
}

impl Backbone {
    /// Number of conv blocks.
    pub fn blocks(self) -> usize {
        match self {
            Backbone::Conv4 => 4,
            Backbone::Conv5 => 5,
        }
    }
}

/// Architecture of a learner: everything that fixes the parameter layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchSpec {
    pub backbone: Backbone,
    /// 1 (Omniglot) or 3 (RGB sets).
    pub in_channels: usize,
    /// Square input side: 28 (Omniglot), 32 (CIFAR-FS), 84 (miniImageNet).
    pub image_size: usize,
    /// Channels of every conv block (64 in the paper's Conv4).
    pub hidden: usize,
    /// Width of both projection-head layers.
    pub proj_dim: usize,
    /// Classifier outputs: the ways of a task (N/K).
    pub ways: usize,
    /// SwAV's prototypes `[P, proj_dim]` (`prototypes.weight`), 0 when the method has none.
    #[serde(default)]
    pub prototypes: usize,
    /// A predictor MLP on the projection (`pred.0`, `pred.2`: Linear -> ReLU -> Linear, as PsCo's
    /// `--prediction` and BYOL), used by MoCo and PsCo.
    #[serde(default)]
    pub predictor: bool,
}

impl ArchSpec {
    /// Conv4 with 64 channels and a 64-d projection, as in the reference.
    pub fn conv4(in_channels: usize, image_size: usize, ways: usize) -> Self {
        ArchSpec {
            backbone: Backbone::Conv4,
            in_channels,
            image_size,
            hidden: 64,
            proj_dim: 64,
            ways,
            prototypes: 0,
            predictor: false,
        }
    }

    /// Side of the last feature map (each pool floors: 28 -> 14 -> 7 -> 3 -> 1).
    pub fn feature_side(&self) -> usize {
        (0..self.backbone.blocks()).fold(self.image_size, |s, _| s / 2)
    }

    /// Length of the flattened feature vector.
    pub fn feature_dim(&self) -> usize {
        self.hidden * self.feature_side() * self.feature_side()
    }

    /// Rejects architectures that cannot run.
    pub fn validate(&self) -> Result<()> {
        let blocks = self.backbone.blocks();
        if self.in_channels == 0 {
            return Err(Error::config("in_channels", "must be at least 1"));
        }
        if self.image_size >> blocks == 0 {
            return Err(Error::config(
                "image_size",
                format!(
                    "{} is too small for {blocks} pooling blocks (needs at least {})",
                    self.image_size,
                    1 << blocks
                ),
            ));
        }
        for (field, v) in [
            ("hidden", self.hidden),
            ("proj_dim", self.proj_dim),
            ("ways", self.ways),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        crate::limits::check_arch(self)
    }
}

/// One named tensor inside the flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamEntry {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat vector.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Names, shapes and offsets of all parameters, in the reference's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub entries: Vec<ParamEntry>,
    pub len: usize,
}

impl Layout {
    fn new(spec: &ArchSpec) -> Self {
        let mut entries = Vec::new();
        let mut offset = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let e = ParamEntry {
                name,
                shape,
                offset,
            };
            offset += e.len();
            entries.push(e);
        };
        let mut c_in = spec.in_channels;
        for i in 0..spec.backbone.blocks() {
            push(format!("conv{i}.weight"), vec![spec.hidden, c_in, 3, 3]);
            push(format!("conv{i}.bias"), vec![spec.hidden]);
            push(format!("bn{i}.weight"), vec![spec.hidden]);
            push(format!("bn{i}.bias"), vec![spec.hidden]);
            c_in = spec.hidden;
        }
        let f = spec.feature_dim();
        push("proj.0.weight".into(), vec![spec.proj_dim, f]);
        push("proj.0.bias".into(), vec![spec.proj_dim]);
        push("proj.2.weight".into(), vec![spec.proj_dim, spec.proj_dim]);
        push("proj.2.bias".into(), vec![spec.proj_dim]);
        push("classifier.weight".into(), vec![spec.ways, f]);
        push("classifier.bias".into(), vec![spec.ways]);
        // Heads of the self-supervised baselines, after the reference's tensors so that the
        // layout of every other learner is unchanged.
        if spec.prototypes > 0 {
            push(
                "prototypes.weight".into(),
                vec![spec.prototypes, spec.proj_dim],
            );
        }
        if spec.predictor {
            push("pred.0.weight".into(), vec![spec.proj_dim, spec.proj_dim]);
            push("pred.0.bias".into(), vec![spec.proj_dim]);
            push("pred.2.weight".into(), vec![spec.proj_dim, spec.proj_dim]);
            push("pred.2.bias".into(), vec![spec.proj_dim]);
        }
        Layout {
            entries,
            len: offset,
        }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn range(&self, name: &str) -> Range<usize> {
        self.get(name)
            .map(|e| e.range())
            .unwrap_or_else(|| panic!("layout has no parameter {name}"))
    }
}

/// The forward activations the backward pass needs, for one conv block.
struct BlockTape<S> {
    conv: conv::ConvShape,
    /// The block's input `[C_in, N, H, W]` (its im2col is rebuilt for the weight gradient).
    input: Vec<S>,
    /// Batch-normalised conv output, before the affine part `[C, N, H, W]`.
    xhat: Vec<S>,
    inv_std: Vec<S>,
    pool_arg: Vec<u32>,
}

/// Everything the backward pass needs from one forward pass.
pub struct Tape<S> {
    n: usize,
    blocks: Vec<BlockTape<S>>,
    /// The last block's output after ReLU and pooling `[C, N, h, w]`. Each other block's output
    /// is the next block's `input`, kept once ([`Tape::pooled`]).
    last_pooled: Vec<S>,
    /// `[N, F]`
    features: Vec<S>,
    /// Projection hidden layer after ReLU `[N, P]`, when the projection was computed.
    proj_hidden: Option<Vec<S>>,
}

impl<S> Tape<S> {
    /// Block `i`'s output after ReLU and pooling (its sign gates the gradient): the next block's
    /// input, or the last block's own.
    fn pooled(&self, i: usize) -> &[S] {
        match self.blocks.get(i + 1) {
            Some(next) => &next.input,
            None => &self.last_pooled,
        }
    }
}

/// What the learner predicts.
pub struct Output<S> {
    /// `[N, ways]`
    pub logits: Vec<S>,
    /// `[N, proj_dim]`, when asked for.
    pub projection: Option<Vec<S>>,
}

/// Named parameter ranges of one block, looked up once.
#[derive(Clone, Debug)]
struct BlockParams {
    conv_w: Range<usize>,
    conv_b: Range<usize>,
    bn_w: Range<usize>,
    bn_b: Range<usize>,
}

/// Batch-norm statistics of one block, per channel: the mean and `1 / sqrt(var + eps)` (biased
/// variance, [`batchnorm::EPS`]), as [`batchnorm::normalize`] computes them from a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct BnStats {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// A learner architecture with its parameter layout; the weights are always passed in.
#[derive(Clone, Debug)]
pub struct Learner {
    pub spec: ArchSpec,
    pub layout: Layout,
    blocks: Vec<BlockParams>,
    proj0_w: Range<usize>,
    proj0_b: Range<usize>,
    proj2_w: Range<usize>,
    proj2_b: Range<usize>,
    cls_w: Range<usize>,
    cls_b: Range<usize>,
}

impl Learner {
    /// Builds the learner for an architecture (validated).
    pub fn new(spec: ArchSpec) -> Result<Self> {
        spec.validate()?;
        let layout = Layout::new(&spec);
        let blocks = (0..spec.backbone.blocks())
            .map(|i| BlockParams {
                conv_w: layout.range(&format!("conv{i}.weight")),
                conv_b: layout.range(&format!("conv{i}.bias")),
                bn_w: layout.range(&format!("bn{i}.weight")),
                bn_b: layout.range(&format!("bn{i}.bias")),
            })
            .collect();
        Ok(Learner {
            proj0_w: layout.range("proj.0.weight"),
            proj0_b: layout.range("proj.0.bias"),
            proj2_w: layout.range("proj.2.weight"),
            proj2_b: layout.range("proj.2.bias"),
            cls_w: layout.range("classifier.weight"),
            cls_b: layout.range("classifier.bias"),
            spec,
            layout,
            blocks,
        })
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.layout.len
    }

    /// Elements of one input image (`C*H*W`).
    pub fn image_len(&self) -> usize {
        self.spec.in_channels * self.spec.image_size * self.spec.image_size
    }

    /// Initial parameters, as the reference initialises them: He-normal conv weights
    /// (`N(0, 2/fan_in)`), `N(0, 1/fan_in)` linear weights, zero biases, unit batch-norm scales.
    pub fn init(&self, rng: &mut impl Rng) -> Vec<f32> {
        let mut p = vec![0.0f32; self.layout.len];
        for e in &self.layout.entries {
            let r = e.range();
            if e.name.ends_with(".bias") {
                continue;
            }
            if e.name.starts_with("bn") {
                p[r].fill(1.0);
                continue;
            }
            let fan_in: usize = e.shape[1..].iter().product();
            let std = if e.name.starts_with("conv") {
                (2.0 / fan_in as f64).sqrt()
            } else {
                (1.0 / fan_in as f64).sqrt()
            };
            for v in &mut p[r] {
                *v = (rng.sample::<f64, _>(StandardNormal) * std) as f32;
            }
        }
        p
    }

    fn check_input<S>(&self, params: &[S], x: &[S]) -> usize {
        assert_eq!(
            params.len(),
            self.layout.len,
            "parameter vector has the wrong length"
        );
        assert!(
            x.len().is_multiple_of(self.image_len()),
            "input length is not a multiple of one image"
        );
        x.len() / self.image_len()
    }

    /// Forward pass over `x [N, C, H, W]`. The projection head runs only when asked (the BMSSL
    /// outer loss and evaluation need logits or features only).
    pub fn forward<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        want_projection: bool,
    ) -> (Output<S>, Tape<S>) {
        self.forward_impl(params, x, want_projection, true, &mut Memo::Off)
    }

    /// [`Learner::forward`] that records its convolution values or takes them from a record
    /// ([`Memo`]; the same `memo` then goes to [`Learner::backward_memo`]).
    pub fn forward_memo<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        want_projection: bool,
        memo: &mut Memo<'_, S::Value>,
    ) -> (Output<S>, Tape<S>) {
        self.forward_impl(params, x, want_projection, true, memo)
    }

    /// Forward pass for prediction only: each block's input and normalised activations are freed
    /// as soon as the next block starts, so the buffers stay in cache and memory. The returned tape holds the features only and
    /// cannot be used for [`Learner::backward`].
    pub fn infer<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        want_projection: bool,
    ) -> (Output<S>, Tape<S>) {
        self.forward_impl(params, x, want_projection, false, &mut Memo::Off)
    }

    fn forward_impl<S: Scalar>(
        &self,
        params: &[S],
        x: &[S],
        want_projection: bool,
        keep_tape: bool,
        memo: &mut Memo<'_, S::Value>,
    ) -> (Output<S>, Tape<S>) {
        let n = self.check_input(params, x);
        let (c, side) = (self.spec.in_channels, self.spec.image_size);
        // NCHW -> CNHW (a no-op for one channel).
        let plane = side * side;
        let mut act = vec![S::default(); x.len()];
        for b in 0..n {
            for ch in 0..c {
                act[(ch * n + b) * plane..(ch * n + b + 1) * plane]
                    .copy_from_slice(&x[(b * c + ch) * plane..(b * c + ch + 1) * plane]);
            }
        }
        let (mut c_in, mut h) = (c, side);
        let mut tapes = Vec::with_capacity(self.blocks.len());
        for (i, bp) in self.blocks.iter().enumerate() {
            let shape = conv::ConvShape {
                c_in,
                c_out: self.spec.hidden,
                n,
                h,
                w: h,
                k: 3,
            };
            let (gamma, beta) = (&params[bp.bn_w.clone()], &params[bp.bn_b.clone()]);
            if conv::computes_channels_independently::<S>(&shape) {
                // The first block: the same passes a few channels at a time, in cache.
                let weights = grouped::BlockWeights {
                    conv_w: &params[bp.conv_w.clone()],
                    conv_b: &params[bp.conv_b.clone()],
                    gamma,
                    beta,
                };
                let group = grouped::group_channels::<S>(&shape);
                let mut recorded = Vec::new();
                let recording = memo.is_recording();
                let out_memo = grouped::OutputMemo {
                    known: memo.output(i),
                    record: recording.then_some(&mut recorded),
                };
                let out = grouped::forward(&act, weights, &shape, keep_tape, group, out_memo);
                if let Some(rec) = memo.recorder() {
                    rec.record_output(i, recorded);
                }
                let input = std::mem::replace(&mut act, out.pooled);
                if keep_tape {
                    tapes.push(BlockTape {
                        conv: shape,
                        input,
                        xhat: out.xhat,
                        inv_std: out.inv_std,
                        pool_arg: out.pool_arg,
                    });
                }
                c_in = self.spec.hidden;
                h /= 2;
                continue;
            }
            // conv -> batch-norm (normalised in place) -> fused affine + ReLU + 2x2 max-pool.
            let (w, b) = (&params[bp.conv_w.clone()], &params[bp.conv_b.clone()]);
            let mut xhat = match memo.output(i) {
                Some(y_v) => conv::forward_known(&act, w, b, &shape, y_v),
                None => conv::forward(&act, w, b, &shape),
            };
            if let Some(rec) = memo.recorder() {
                rec.record_output(i, xhat.iter().map(|v| v.value()).collect());
            }
            let inv_std = batchnorm::normalize(&mut xhat, shape.c_out);
            let pool_shape = pool::PoolShape {
                planes: shape.c_out * n,
                h,
                w: h,
            };
            if !keep_tape {
                act = pool::affine_relu_max_values(&xhat, gamma, beta, &pool_shape);
                c_in = self.spec.hidden;
                h /= 2;
                continue;
            }
            let (pooled, pool_arg) = pool::affine_relu_max(&xhat, gamma, beta, &pool_shape);
            let input = std::mem::replace(&mut act, pooled);
            tapes.push(BlockTape {
                conv: shape,
                input,
                xhat,
                inv_std,
                pool_arg,
            });
            c_in = self.spec.hidden;
            h /= 2;
        }
        // Flatten CNHW -> [N, C*h*w] in PyTorch's (c, y, x) order.
        let fhw = h * h;
        let f = self.spec.feature_dim();
        let mut features = vec![S::default(); n * f];
        for ch in 0..c_in {
            for b in 0..n {
                features[b * f + ch * fhw..b * f + (ch + 1) * fhw]
                    .copy_from_slice(&act[(ch * n + b) * fhw..(ch * n + b + 1) * fhw]);
            }
        }
        let ways = self.spec.ways;
        let logits = linear::forward(
            &features,
            &params[self.cls_w.clone()],
            &params[self.cls_b.clone()],
            n,
            f,
            ways,
        );
        let (projection, proj_hidden) = if want_projection {
            let p = self.spec.proj_dim;
            let hdn = linear::forward(
                &features,
                &params[self.proj0_w.clone()],
                &params[self.proj0_b.clone()],
                n,
                f,
                p,
            );
            let hdn = activation::relu(&hdn);
            let z = linear::forward(
                &hdn,
                &params[self.proj2_w.clone()],
                &params[self.proj2_b.clone()],
                n,
                p,
                p,
            );
            (Some(z), Some(hdn))
        } else {
            (None, None)
        };
        (
            Output { logits, projection },
            Tape {
                n,
                blocks: tapes,
                last_pooled: if keep_tape { act } else { Vec::new() },
                features,
                proj_hidden,
            },
        )
    }

    /// Inference with batch norm on *given* statistics instead of the batch's own, over a range
    /// of blocks. `x` is the input of block `from`, NCHW (the images for `from = 0`, else the
    /// previous block's output, `hidden` channels of side `image_size >> from`); block
    /// `from + i` normalises its convolution output with `stats[i]` (per channel `mean` and
    /// `1 / sqrt(var + eps)`).
    ///
    /// * `conv_after`: then returns the next block's convolution output, before batch norm,
    ///   channel-major `[C, N * h * w]`: what that block's statistics are computed from.
    /// * otherwise returns the output of the last block run, NCHW: the flattened features
    ///   `[N, F]` when that is the last block.
    ///
    /// Why: a set of images too large for one batch can then be normalised as one batch
    /// ([`crate::embed`] computes the statistics block by block over the whole set).
    pub fn backbone_with_stats(
        &self,
        params: &[f32],
        x: &[f32],
        from: usize,
        stats: &[BnStats],
        conv_after: bool,
    ) -> Vec<f32> {
        assert_eq!(
            params.len(),
            self.layout.len,
            "parameter vector has the wrong length"
        );
        let upto = from + stats.len() + usize::from(conv_after);
        assert!(
            upto <= self.blocks.len(),
            "more blocks than the backbone has"
        );
        let (mut c_in, mut h) = if from == 0 {
            (self.spec.in_channels, self.spec.image_size)
        } else {
            (self.spec.hidden, self.spec.image_size >> from)
        };
        let per = c_in * h * h;
        assert!(
            per > 0 && x.len().is_multiple_of(per),
            "input length is not a multiple of one block input"
        );
        let n = x.len() / per;
        // NCHW -> CNHW.
        let to_cnhw = |src: &[f32], c: usize, plane: usize| {
            let mut out = vec![0.0f32; src.len()];
            for b in 0..n {
                for ch in 0..c {
                    out[(ch * n + b) * plane..(ch * n + b + 1) * plane]
                        .copy_from_slice(&src[(b * c + ch) * plane..(b * c + ch + 1) * plane]);
                }
            }
            out
        };
        let mut act = to_cnhw(x, c_in, h * h);
        for i in from..upto {
            let bp = &self.blocks[i];
            let shape = conv::ConvShape {
                c_in,
                c_out: self.spec.hidden,
                n,
                h,
                w: h,
                k: 3,
            };
            let mut y = conv::forward(
                &act,
                &params[bp.conv_w.clone()],
                &params[bp.conv_b.clone()],
                &shape,
            );
            let Some(st) = stats.get(i - from) else {
                return y;
            };
            let m = n * h * h;
            for (ch, row) in y.chunks_mut(m).enumerate() {
                let (mean, is) = (st.mean[ch], st.inv_std[ch]);
                for v in row {
                    *v = (*v - mean) * is;
                }
            }
            let pool_shape = pool::PoolShape {
                planes: shape.c_out * n,
                h,
                w: h,
            };
            act = pool::affine_relu_max_values(
                &y,
                &params[bp.bn_w.clone()],
                &params[bp.bn_b.clone()],
                &pool_shape,
            );
            c_in = self.spec.hidden;
            h /= 2;
        }
        // CNHW -> NCHW (for the last block: flattened in PyTorch's (c, y, x) order).
        let fhw = h * h;
        let f = c_in * fhw;
        let mut out = vec![0.0f32; n * f];
        for ch in 0..c_in {
            for b in 0..n {
                out[b * f + ch * fhw..b * f + (ch + 1) * fhw]
                    .copy_from_slice(&act[(ch * n + b) * fhw..(ch * n + b + 1) * fhw]);
            }
        }
        out
    }

    /// The projection head on features `[N, F]`: `Linear -> ReLU -> Linear`, `[N, proj_dim]`.
    pub fn project(&self, params: &[f32], features: &[f32]) -> Vec<f32> {
        let f = self.spec.feature_dim();
        let n = features.len() / f;
        let p = self.spec.proj_dim;
        let hdn = linear::forward(
            features,
            &params[self.proj0_w.clone()],
            &params[self.proj0_b.clone()],
            n,
            f,
            p,
        );
        let hdn = activation::relu(&hdn);
        linear::forward(
            &hdn,
            &params[self.proj2_w.clone()],
            &params[self.proj2_b.clone()],
            n,
            p,
            p,
        )
    }

    /// Flattened backbone features `[N, F]` of a forward pass (for prototype evaluation).
    pub fn features<'a, S>(&self, tape: &'a Tape<S>) -> &'a [S] {
        &tape.features
    }

    /// Backward pass: the gradient of a loss with respect to every parameter, given the loss's
    /// gradient with respect to the logits and (if the projection was used) the projection.
    pub fn backward<S: Scalar>(
        &self,
        params: &[S],
        tape: &Tape<S>,
        dlogits: &[S],
        dproj: Option<&[S]>,
    ) -> Vec<S> {
        self.backward_memo(params, tape, dlogits, dproj, &mut Memo::Off)
    }

    /// [`Learner::backward`] with the [`Memo`] its forward pass ([`Learner::forward_memo`]) had.
    pub fn backward_memo<S: Scalar>(
        &self,
        params: &[S],
        tape: &Tape<S>,
        dlogits: &[S],
        dproj: Option<&[S]>,
        memo: &mut Memo<'_, S::Value>,
    ) -> Vec<S> {
        let n = tape.n;
        let f = self.spec.feature_dim();
        let ways = self.spec.ways;
        let mut grad = vec![S::default(); self.layout.len];
        let cls = linear::backward(
            dlogits,
            &tape.features,
            &params[self.cls_w.clone()],
            n,
            f,
            ways,
        );
        grad[self.cls_w.clone()].copy_from_slice(&cls.weight);
        grad[self.cls_b.clone()].copy_from_slice(&cls.bias);
        let mut dfeat = cls.input;
        if let Some(dz) = dproj {
            let hdn = tape
                .proj_hidden
                .as_ref()
                .expect("backward through a projection the forward pass did not compute");
            let p = self.spec.proj_dim;
            let l2 = linear::backward(dz, hdn, &params[self.proj2_w.clone()], n, p, p);
            grad[self.proj2_w.clone()].copy_from_slice(&l2.weight);
            grad[self.proj2_b.clone()].copy_from_slice(&l2.bias);
            let dh = activation::relu_backward(&l2.input, hdn);
            let l0 = linear::backward(&dh, &tape.features, &params[self.proj0_w.clone()], n, f, p);
            grad[self.proj0_w.clone()].copy_from_slice(&l0.weight);
            grad[self.proj0_b.clone()].copy_from_slice(&l0.bias);
            for (a, b) in dfeat.iter_mut().zip(l0.input) {
                *a += b;
            }
        }
        self.backbone_backward(params, tape, &dfeat, &mut grad, memo);
        grad
    }

    /// Backward pass of a loss defined on the backbone features alone (prototype losses): the
    /// gradient with respect to every parameter (zero for the heads), given `dfeat [N, F]`.
    pub fn backward_from_features<S: Scalar>(
        &self,
        params: &[S],
        tape: &Tape<S>,
        dfeat: &[S],
    ) -> Vec<S> {
        let mut grad = vec![S::default(); self.layout.len];
        self.backbone_backward(params, tape, dfeat, &mut grad, &mut Memo::Off);
        grad
    }

    /// Backward through the conv blocks from the gradient of the flattened features.
    fn backbone_backward<S: Scalar>(
        &self,
        params: &[S],
        tape: &Tape<S>,
        dfeat: &[S],
        grad: &mut [S],
        memo: &mut Memo<'_, S::Value>,
    ) {
        if dfeat.iter().all(|d| d.is_zero()) {
            // Nothing flows back (a zero classifier's first adaptation step, say): every
            // backbone gradient is zero, which `grad` already holds.
            return;
        }
        let n = tape.n;
        let f = self.spec.feature_dim();
        // Unflatten [N, C*h*w] -> CNHW.
        let side = self.spec.feature_side();
        let fhw = side * side;
        let hidden = self.spec.hidden;
        let mut dact = vec![S::default(); n * f];
        for ch in 0..hidden {
            for b in 0..n {
                dact[(ch * n + b) * fhw..(ch * n + b + 1) * fhw]
                    .copy_from_slice(&dfeat[b * f + ch * fhw..b * f + (ch + 1) * fhw]);
            }
        }
        for (i, (bp, t)) in self.blocks.iter().zip(&tape.blocks).enumerate().rev() {
            let need_input = i > 0;
            if !need_input && conv::computes_channels_independently::<S>(&t.conv) {
                // The first block, by channel groups as its forward pass ran.
                let weights = grouped::BlockWeights {
                    conv_w: &params[bp.conv_w.clone()],
                    conv_b: &params[bp.conv_b.clone()],
                    gamma: &params[bp.bn_w.clone()],
                    beta: &params[bp.bn_b.clone()],
                };
                let block_tape = grouped::BlockTapeRef {
                    input: &t.input,
                    xhat: &t.xhat,
                    inv_std: &t.inv_std,
                    pooled: tape.pooled(i),
                    pool_arg: &t.pool_arg,
                };
                let group = grouped::group_channels::<S>(&t.conv);
                let known = memo.grads(i, false).map(|k| k.known());
                let g =
                    grouped::backward(&dact, block_tape, weights, &t.conv, group, known.as_ref());
                if let Some(rec) = memo.recorder() {
                    rec.record_grads(i, &g.conv_w, &g.conv_b, None);
                }
                grad[bp.bn_w.clone()].copy_from_slice(&g.gamma);
                grad[bp.bn_b.clone()].copy_from_slice(&g.beta);
                grad[bp.conv_w.clone()].copy_from_slice(&g.conv_w);
                grad[bp.conv_b.clone()].copy_from_slice(&g.conv_b);
                continue;
            }
            let mut d = pool::relu_max_backward(&dact, tape.pooled(i), &t.pool_arg, t.xhat.len());
            let (dg, db) =
                batchnorm::backward_in_place(&mut d, &t.xhat, &t.inv_std, &params[bp.bn_w.clone()]);
            grad[bp.bn_w.clone()].copy_from_slice(&dg);
            grad[bp.bn_b.clone()].copy_from_slice(&db);
            let w = &params[bp.conv_w.clone()];
            let g = match memo.grads(i, need_input) {
                Some(k) => conv::backward_known(&d, &t.input, w, &t.conv, &k.known()),
                None => conv::backward(&d, &t.input, w, &t.conv, need_input),
            };
            if let Some(rec) = memo.recorder() {
                rec.record_grads(i, &g.weight, &g.bias, g.input.as_deref());
            }
            grad[bp.conv_w.clone()].copy_from_slice(&g.weight);
            grad[bp.conv_b.clone()].copy_from_slice(&g.bias);
            if let Some(dx) = g.input {
                dact = dx;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_follow_the_pytorch_reference() {
        let l = Learner::new(ArchSpec::conv4(1, 28, 5)).unwrap();
        let names: Vec<&str> = l.layout.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            &names[..4],
            ["conv0.weight", "conv0.bias", "bn0.weight", "bn0.bias"]
        );
        assert_eq!(
            &names[16..],
            [
                "proj.0.weight",
                "proj.0.bias",
                "proj.2.weight",
                "proj.2.bias",
                "classifier.weight",
                "classifier.bias"
            ]
        );
        assert_eq!(
            l.layout.get("classifier.weight").unwrap().shape,
            vec![5, 64]
        );
        assert_eq!(
            l.layout.get("conv1.weight").unwrap().shape,
            vec![64, 64, 3, 3]
        );
    }

    #[test]
    fn a_zero_classifier_sends_no_gradient_into_the_backbone_and_a_trained_one_does() {
        use crate::engine::gradcheck::test_values;
        let l = Learner::new(ArchSpec::conv4(1, 28, 3)).unwrap();
        let mut w: Vec<f64> = test_values(l.num_params(), 1)
            .iter()
            .map(|v| 0.1 * v)
            .collect();
        let x = test_values(3 * 28 * 28, 2);
        let backbone = 0..l.layout.get("bn3.bias").unwrap().range().end;
        let dlogits = test_values(3 * 3, 3);
        let (_, tape) = l.forward(&w, &x, false);
        let g = l.backward(&w, &tape, &dlogits, None);
        assert!(g[backbone.clone()].iter().any(|v| *v != 0.0));
        // The first step of a zero-head adaptation: only the classifier gets a gradient.
        w[l.cls_w.clone()].fill(0.0);
        let (_, tape) = l.forward(&w, &x, false);
        let g = l.backward(&w, &tape, &dlogits, None);
        assert!(g[backbone].iter().all(|v| *v == 0.0));
        assert!(g[l.cls_w.clone()].iter().any(|v| *v != 0.0));
    }

    #[test]
    fn feature_sizes_floor_at_every_pool() {
        assert_eq!(ArchSpec::conv4(1, 28, 5).feature_dim(), 64);
        assert_eq!(ArchSpec::conv4(3, 32, 5).feature_dim(), 256);
        assert_eq!(ArchSpec::conv4(3, 84, 5).feature_dim(), 64 * 25);
        let c5 = ArchSpec {
            backbone: Backbone::Conv5,
            ..ArchSpec::conv4(3, 84, 5)
        };
        assert_eq!(c5.feature_dim(), 256);
    }

    #[test]
    fn an_image_too_small_for_the_backbone_is_a_config_error() {
        let err = Learner::new(ArchSpec::conv4(1, 8, 5)).err().unwrap();
        assert!(err.to_string().contains("image_size"), "{err}");
    }
}

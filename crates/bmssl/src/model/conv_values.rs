//! The convolution values of one inner step, kept for the Hessian-vector product that the
//! second-order meta-gradient later takes at the same weights on the same images.
//!
//! Why: the Hessian-vector product runs the inner loss's forward and backward passes on dual
//! numbers `w + eps v` (forward-over-reverse). The value part of every dual is the ordinary
//! forward and backward pass at `w`, which the inner step at `w` already ran. For each
//! convolution (the bulk of the work) a third of the dual pass's products are that value part:
//! `w_v * x_v`, `dy_v (*) x_v`, `w_v^T dy_v`. Recorded once by the real pass
//! ([`Memo::Record`]) and given back to the dual pass ([`Memo::Replay`]), they leave the dual
//! convolutions only their tangents (`conv::forward_known`, `conv::backward_known`): two real
//! convolutions' products per pass instead of three.
//!
//! What is kept per block: the convolution output before batch norm, and the convolution's
//! weight, bias and input gradients (no input gradient for the first block). A first block of at
//! most four input channels runs by channel groups (`grouped.rs`); its record is the whole
//! block's, each group taking its channels' rows. For the Omniglot Conv4 and a 5-image support
//! set that is ~2 MB per inner step, for 3x84x84 images ~15 MB (the first block's 84x84 output is
//! 9 MB of it): memory that grows with the inner loop's L (one record per step, freed when the
//! task's meta-gradient is done), not with the bootstrap's delta.
//!
//! The values recorded by the real pass and those the dual pass would compute are the same
//! numbers computed by different kernels (the dual pass stacks value and tangent in one Winograd
//! call), so they can differ in the last bits; the Hessian-vector product is exact either way
//! (tested against finite differences in `objective.rs` and `meta::outer`, and against the full
//! dual pass in `objective.rs`).

use crate::engine::conv::KnownGrads;
use crate::engine::Scalar;

/// What one real forward + backward pass recorded, block by block.
#[derive(Debug, Default)]
pub struct ConvValues<F> {
    pub(super) blocks: Vec<BlockValues<F>>,
}

#[derive(Debug, Default)]
pub(super) struct BlockValues<F> {
    /// The convolution output before batch norm `[C_out, N, H, W]`.
    pub(super) output: Option<Vec<F>>,
    pub(super) grads: Option<BlockGrads<F>>,
}

#[derive(Debug)]
pub(super) struct BlockGrads<F> {
    pub(super) weight: Vec<F>,
    pub(super) bias: Vec<F>,
    pub(super) input: Option<Vec<F>>,
}

impl<F> ConvValues<F> {
    pub fn new() -> Self {
        ConvValues { blocks: Vec::new() }
    }

    /// Whether anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.blocks
            .iter()
            .all(|b| b.output.is_none() && b.grads.is_none())
    }

    fn block(&mut self, i: usize) -> &mut BlockValues<F> {
        if self.blocks.len() <= i {
            self.blocks.resize_with(i + 1, || BlockValues {
                output: None,
                grads: None,
            });
        }
        &mut self.blocks[i]
    }

    pub(super) fn record_output(&mut self, i: usize, output: Vec<F>) {
        self.block(i).output = Some(output);
    }

    /// Records the value parts of block `i`'s convolution gradients (`input`: where the pass
    /// computed the input gradient).
    pub(super) fn record_grads<S: Scalar<Value = F>>(
        &mut self,
        i: usize,
        weight: &[S],
        bias: &[S],
        input: Option<&[S]>,
    ) {
        let values = |v: &[S]| v.iter().map(|a| a.value()).collect::<Vec<F>>();
        self.block(i).grads = Some(BlockGrads {
            weight: values(weight),
            bias: values(bias),
            input: input.map(values),
        });
    }
}

impl<F> BlockGrads<F> {
    /// The recorded gradients as the convolution's known value parts.
    pub(super) fn known(&self) -> KnownGrads<'_, F> {
        KnownGrads {
            weight: &self.weight,
            bias: &self.bias,
            input: self.input.as_deref(),
        }
    }
}

/// What a forward + backward pass does with recorded convolution values.
pub enum Memo<'a, F> {
    /// Neither records nor uses any.
    Off,
    /// Records the pass's convolution values (a real pass: an inner step).
    Record(&'a mut ConvValues<F>),
    /// Takes the value parts from a record of the same weights and images (a dual pass: the
    /// Hessian-vector product at an inner step's weights).
    Replay(&'a ConvValues<F>),
}

impl<F> Memo<'_, F> {
    /// The recorded convolution output of block `i`, when replaying.
    pub(super) fn output(&self, i: usize) -> Option<&[F]> {
        match self {
            Memo::Replay(v) => v.blocks.get(i)?.output.as_deref(),
            _ => None,
        }
    }

    /// The recorded gradients of block `i`, when replaying and recorded with the same
    /// `need_input`.
    pub(super) fn grads(&self, i: usize, need_input: bool) -> Option<&BlockGrads<F>> {
        match self {
            Memo::Replay(v) => v
                .blocks
                .get(i)?
                .grads
                .as_ref()
                .filter(|g| g.input.is_some() == need_input),
            _ => None,
        }
    }

    pub(super) fn is_recording(&self) -> bool {
        matches!(self, Memo::Record(_))
    }

    pub(super) fn recorder(&mut self) -> Option<&mut ConvValues<F>> {
        match self {
            Memo::Record(v) => Some(v),
            _ => None,
        }
    }
}

//! The differentiable core: a small set of kernels, each with a hand-written backward pass,
//! generic over the number type so that one code path gives
//! - gradients in `f32` (training) and `f64` (checks), and
//! - exact Hessian-vector products by running the same forward + backward on [`Dual`] numbers
//!   (forward-over-reverse), which is what the second-order meta-gradient needs.
//!
//! Why not a general autograd? The learner is a fixed stack (Conv4/Conv5 + two heads); a tape, graph
//! nodes and reference counting would cost time at the small batches of few-shot learning (a 5-way
//! 1-shot support set is 5 images) and memory for every intermediate of the inner loop. Here the
//! meta-gradient stores the L fast-weight vectors and each inner step's convolution values (the
//! outputs and gradients its Hessian-vector product would otherwise recompute:
//! `model/conv_values.rs`), and the bootstrap target's delta steps store nothing.
//!
//! Every kernel is tested against f64 central finite differences in its own file.

pub mod activation;
pub mod batchnorm;
pub mod conv;
#[cfg(test)]
pub mod gradcheck;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod linear;
pub mod pool;
pub mod reduce;
pub mod scalar;

pub use scalar::{Dual, MatRef, Real, Scalar};

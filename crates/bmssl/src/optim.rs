//! Outer-loop optimisers on the flat parameter vector: Adam (the default, as in MAML-style
//! meta-learning) and plain SGD. Their state is plain vectors, saved in checkpoints.

use serde::{Deserialize, Serialize};

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Optimiser state (Adam moments; empty for SGD).
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// Steps taken (Adam's bias correction).
    pub t: u64,
    /// First moment.
    pub m: Vec<f32>,
    /// Second moment.
    pub v: Vec<f32>,
}

impl Optimizer {
    /// Adam's constants, PyTorch's defaults.
    pub const BETA1: f64 = 0.9;
    pub const BETA2: f64 = 0.999;
    pub const EPS: f64 = 1e-8;

    /// A fresh optimiser for `n` parameters.
    pub fn new(kind: OptimizerKind, lr: f64, n: usize) -> Self {
        let moments = if kind == OptimizerKind::Adam { n } else { 0 };
        Optimizer {
            kind,
            lr,
            t: 0,
            m: vec![0.0; moments],
            v: vec![0.0; moments],
        }
    }

    /// One update of `params` along `grad`, exactly as `torch.optim.Adam` / `SGD` (no weight decay).
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.t += 1;
        match self.kind {
            OptimizerKind::Sgd => {
                for (p, g) in params.iter_mut().zip(grad) {
                    *p -= (self.lr * *g as f64) as f32;
                }
            }
            OptimizerKind::Adam => {
                let bc1 = 1.0 - Self::BETA1.powi(self.t as i32);
                let bc2 = 1.0 - Self::BETA2.powi(self.t as i32);
                let step = self.lr / bc1;
                for i in 0..params.len() {
                    let g = grad[i] as f64;
                    let m = Self::BETA1 * self.m[i] as f64 + (1.0 - Self::BETA1) * g;
                    let v = Self::BETA2 * self.v[i] as f64 + (1.0 - Self::BETA2) * g * g;
                    self.m[i] = m as f32;
                    self.v[i] = v as f32;
                    params[i] -= (step * m / ((v / bc2).sqrt() + Self::EPS)) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_each_parameter_by_the_learning_rate() {
        let mut p = vec![1.0f32, -2.0, 0.5];
        let mut opt = Optimizer::new(OptimizerKind::Adam, 0.01, 3);
        opt.step(&mut p, &[3.0, -0.1, 1e-3]);
        for (a, b) in p.iter().zip([0.99f32, -1.99, 0.49]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = vec![5.0f32];
        let mut opt = Optimizer::new(OptimizerKind::Adam, 0.1, 1);
        for _ in 0..500 {
            let g = [2.0 * p[0]];
            opt.step(&mut p, &g);
        }
        assert!(p[0].abs() < 0.05, "{}", p[0]);
    }

    #[test]
    fn sgd_steps_against_the_gradient() {
        let mut p = vec![1.0f32];
        Optimizer::new(OptimizerKind::Sgd, 0.5, 1).step(&mut p, &[2.0]);
        assert_eq!(p, vec![0.0]);
    }
}

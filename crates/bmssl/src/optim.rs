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
    /// SGD momentum (its buffer lives in `m`); 0 for plain SGD and for Adam.
    pub momentum: f64,
    /// L2 penalty added to the gradient (`weight_decay` of `torch.optim`).
    pub weight_decay: f64,
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
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }

    /// SGD with heavy-ball momentum and/or weight decay (as `torch.optim.SGD(momentum=, weight_decay=)`,
    /// no dampening, no Nesterov); weight decay also applies to Adam (L2, as `torch.optim.Adam`).
    pub fn with_options(mut self, momentum: f64, weight_decay: f64) -> Self {
        self.momentum = if self.kind == OptimizerKind::Sgd {
            momentum
        } else {
            0.0
        };
        self.weight_decay = weight_decay;
        self
    }

    /// One update of `params` along `grad` at the optimiser's own learning rate.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.step_at(params, grad, self.lr);
    }

    /// One update at learning rate `lr` (a schedule's value for this step), exactly as
    /// `torch.optim.Adam` / `SGD`.
    pub fn step_at(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        self.t += 1;
        let wd = self.weight_decay;
        // The L2 term needs a new gradient; without it the caller's is used as it is.
        let decayed: Vec<f32>;
        let grad: &[f32] = if wd > 0.0 {
            decayed = grad
                .iter()
                .zip(params.iter())
                .map(|(&g, &p)| (g as f64 + wd * p as f64) as f32)
                .collect();
            &decayed
        } else {
            grad
        };
        match self.kind {
            OptimizerKind::Sgd if self.momentum > 0.0 => {
                // The buffer starts at zero, so the first step is `buf = g`, as PyTorch's.
                if self.m.len() != params.len() {
                    self.m = vec![0.0; params.len()];
                }
                for ((p, g), b) in params.iter_mut().zip(grad).zip(&mut self.m) {
                    let buf = self.momentum * *b as f64 + *g as f64;
                    *b = buf as f32;
                    *p -= (lr * buf) as f32;
                }
            }
            OptimizerKind::Sgd => {
                for (p, g) in params.iter_mut().zip(grad) {
                    *p -= (lr * *g as f64) as f32;
                }
            }
            OptimizerKind::Adam => {
                let bc1 = 1.0 - Self::BETA1.powi(self.t as i32);
                let bc2 = 1.0 - Self::BETA2.powi(self.t as i32);
                let step = lr / bc1;
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
    fn sgd_with_momentum_and_weight_decay_follows_pytorch() {
        // torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5), p = 1, grad = 2 twice:
        // step 1: g = 2.5, buf = 2.5, p = 0.75; step 2: g = 2.375, buf = 4.625, p = 0.2875.
        let mut p = vec![1.0f32];
        let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.1, 1).with_options(0.9, 0.5);
        opt.step(&mut p, &[2.0]);
        assert!((p[0] - 0.75).abs() < 1e-6, "{}", p[0]);
        opt.step(&mut p, &[2.0]);
        assert!((p[0] - 0.2875).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn sgd_steps_against_the_gradient() {
        let mut p = vec![1.0f32];
        Optimizer::new(OptimizerKind::Sgd, 0.5, 1).step(&mut p, &[2.0]);
        assert_eq!(p, vec![0.0]);
    }
}

//! One-level optimisation (Table 6's M2): BMSSL's pseudo-labelled tasks, theta minimising the inner
//! loss on all their views directly, no inner loop ([`crate::baselines::onelevel`]), no state;
//! evaluated by adapting.

use super::{Method, PseudoLabelled};
use crate::config::TrainConfig;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::objective::InnerLoss;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Onelevel {
    tasks: PseudoLabelled,
    inner_loss: InnerLoss,
}

impl Onelevel {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Onelevel {
            tasks: PseudoLabelled::new(cfg),
            inner_loss: cfg.meta_spec().inner.inner_loss,
        }
    }
}

impl Method for Onelevel {
    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        self.tasks.tasks(data, step)
    }

    fn gradient(
        &mut self,
        learner: &Learner,
        theta: &[f32],
        tasks: &[TaskTensors<f32>],
        _step: u64,
    ) -> (Vec<f32>, Vec<TaskStats>) {
        crate::baselines::onelevel::meta_batch_gradient(learner, theta, tasks, self.inner_loss)
    }

    fn eval_mode(&self) -> Mode {
        Mode::Adapt
    }
}

//! BMSSL (paper eq. 3): section 4.1's pseudo-labelled tasks, the KL from the bootstrapped target
//! to the adapted learner's predictions as the outer loss ([`crate::meta::outer`] with
//! `Method::Bmssl`), no state; evaluated by adapting.

use super::{meta_objective, Method, PseudoLabelled};
use crate::config::TrainConfig;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::meta::MetaSpec;
use crate::model::Learner;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Bmssl {
    tasks: PseudoLabelled,
    spec: MetaSpec,
}

impl Bmssl {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Bmssl {
            tasks: PseudoLabelled::new(cfg),
            spec: cfg.meta_spec(),
        }
    }
}

impl Method for Bmssl {
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
        meta_objective(learner, theta, tasks, &self.spec, true)
    }

    fn eval_mode(&self) -> Mode {
        Mode::Adapt
    }
}

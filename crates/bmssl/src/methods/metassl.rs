//! MetaSSL (paper eq. 2): section 4.1's pseudo-labelled tasks, the adapted learner's loss on the
//! query views as the outer loss ([`crate::meta::outer`] with `Method::Metassl`), no state;
//! evaluated by adapting.

use super::{meta_objective, Method, PseudoLabelled};
use crate::config::TrainConfig;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::meta::MetaSpec;
use crate::model::Learner;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Metassl {
    tasks: PseudoLabelled,
    spec: MetaSpec,
}

impl Metassl {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Metassl {
            tasks: PseudoLabelled::new(cfg),
            spec: cfg.meta_spec(),
        }
    }
}

impl Method for Metassl {
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
        meta_objective(learner, theta, tasks, &self.spec, false)
    }

    fn eval_mode(&self) -> Mode {
        Mode::Adapt
    }
}

//! BMSSL (paper eq. 3) and MetaSSL (eq. 2), one code path: section 4.1's pseudo-labelled tasks and
//! the exact meta-gradient of [`crate::meta::outer`], whose outer loss the run's `MetaSpec::method`
//! picks (BMSSL: the KL from the bootstrapped target to the adapted learner's predictions, reported
//! as `kl`; MetaSSL: the adapted learner's loss on the query views, `kl` NaN). No state; evaluated
//! by adapting.

use super::{Method, PseudoLabelled};
use crate::config::TrainConfig;
use crate::meta::outer::{meta_gradient, TaskStats, TaskTensors};
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
    /// BMSSL or MetaSSL, as `cfg.method` says (through `cfg.meta_spec()`).
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
        meta_gradient(learner, theta, tasks, &self.spec)
    }

    fn eval_mode(&self) -> Mode {
        Mode::Adapt
    }
}

//! UMTRA (Khodadadeh et al. 2019), unsupervised: tasks of N random pool images, each its own class,
//! the image itself as support and an augmented copy as query ([`crate::baselines::umtra`]);
//! MAML's meta-gradient (cross-entropy inner loss), no state; evaluated by adapting.

use super::{augmenter, pool, Method};
use crate::augment::Augmenter;
use crate::config::TrainConfig;
use crate::meta::outer::{meta_gradient, TaskStats, TaskTensors};
use crate::meta::MetaSpec;
use crate::model::Learner;
use crate::settings::Mode;
use crate::tasks::TaskShape;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Umtra {
    shape: TaskShape,
    aug: Augmenter,
    seed: u64,
    spec: MetaSpec,
}

impl Umtra {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Umtra {
            shape: cfg.task_shape(),
            aug: augmenter(cfg),
            seed: cfg.run.seed,
            spec: cfg.meta_spec(),
        }
    }
}

impl Method for Umtra {
    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        crate::baselines::umtra::tasks(
            pool("umtra", data)?,
            &self.shape,
            &self.aug,
            self.seed,
            step,
        )
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

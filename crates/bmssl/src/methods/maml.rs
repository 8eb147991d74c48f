//! MAML (Finn et al. 2017), supervised: N-way episodes of the labelled training classes, MetaSSL's
//! exact meta-gradient with the cross-entropy inner loss (`TrainConfig::inner_loop` forces the
//! contrastive weight to 0), no state; evaluated by adapting. CACTUs-MAML is this gradient on
//! CACTUs' tasks (`cactus.rs`).

use super::{Episodes, Method};
use crate::config::TrainConfig;
use crate::meta::outer::{meta_gradient, TaskStats, TaskTensors};
use crate::meta::MetaSpec;
use crate::model::Learner;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Maml {
    tasks: Episodes,
    spec: MetaSpec,
}

impl Maml {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Maml {
            tasks: Episodes::new(cfg),
            spec: cfg.meta_spec(),
        }
    }
}

impl Method for Maml {
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

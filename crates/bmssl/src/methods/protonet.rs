//! ProtoNet (Snell et al. 2017), supervised: N-way episodes of the labelled training classes, the
//! cross-entropy over negative squared distances to the class prototypes
//! ([`crate::baselines::protonet`]), no state; evaluated by prototypes (it trains no classifier).
//! CACTUs-ProtoNet is this gradient on CACTUs' tasks (`cactus.rs`).

use super::{Episodes, Method};
use crate::config::TrainConfig;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::Result;

pub(super) struct Protonet {
    tasks: Episodes,
}

impl Protonet {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Protonet {
            tasks: Episodes::new(cfg),
        }
    }
}

impl Method for Protonet {
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
        crate::baselines::protonet::meta_batch_gradient(learner, theta, tasks)
    }

    fn eval_mode(&self) -> Mode {
        Mode::Proto
    }
}

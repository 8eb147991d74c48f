//! CACTUs (Hsu et al. 2019): tasks of k-means clusters of an unsupervised embedding of the pool
//! ([`crate::cactus`]), meta-trained with ProtoNet's gradient (`cactus-protonet`) or MAML's
//! (`cactus-maml`), and evaluated as that method is. The partitions are computed (or read back) in
//! [`Method::prepare`] and kept in the run directory, not in the checkpoint.

use super::Method;
use crate::cactus::CactusTasks;
use crate::config::TrainConfig;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::run_dir::RunDir;
use crate::settings::Mode;
use crate::train::{Observer, TrainingData};
use crate::{Error, Result};

pub(super) struct Cactus {
    cfg: TrainConfig,
    /// ProtoNet or MAML: the gradient (its own tasks are not used).
    base: Box<dyn Method>,
    tasks: Option<CactusTasks>,
}

impl Cactus {
    pub(super) fn new(cfg: &TrainConfig, base: Box<dyn Method>) -> Self {
        Cactus {
            cfg: cfg.clone(),
            base,
            tasks: None,
        }
    }
}

impl Method for Cactus {
    fn prepare(
        &mut self,
        run: &RunDir,
        data: &TrainingData,
        _learner: &Learner,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        self.tasks = crate::cactus::prepare(run, &self.cfg, data, observer)?;
        Ok(())
    }

    fn tasks(&self, _data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        let tasks = self
            .tasks
            .as_ref()
            .ok_or_else(|| Error::config("method", "CACTUs' partitions are not prepared"))?;
        Ok(tasks.tasks(&self.cfg, step))
    }

    fn gradient(
        &mut self,
        learner: &Learner,
        theta: &[f32],
        tasks: &[TaskTensors<f32>],
        step: u64,
    ) -> (Vec<f32>, Vec<TaskStats>) {
        self.base.gradient(learner, theta, tasks, step)
    }

    fn eval_mode(&self) -> Mode {
        self.base.eval_mode()
    }
}

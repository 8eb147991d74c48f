//! Training from scratch (Table 6's M1): no meta-training at all; the run's random initialisation
//! is its model (checkpoint of step 0), adapted on each test episode.

use super::Method;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::settings::Mode;
use crate::train::TrainingData;
use crate::{Error, Result};

pub(super) struct Scratch;

impl Method for Scratch {
    fn meta_steps(&self, _configured: u64) -> u64 {
        0
    }

    fn tasks(&self, _data: &TrainingData, _step: u64) -> Result<Vec<TaskTensors<f32>>> {
        Err(Error::config("method", "scratch takes no meta-step"))
    }

    fn gradient(
        &mut self,
        _learner: &Learner,
        theta: &[f32],
        _tasks: &[TaskTensors<f32>],
        _step: u64,
    ) -> (Vec<f32>, Vec<TaskStats>) {
        (vec![0.0; theta.len()], Vec::new())
    }

    fn eval_mode(&self) -> Mode {
        Mode::Adapt
    }
}

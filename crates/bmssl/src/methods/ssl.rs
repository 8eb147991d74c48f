//! The self-supervised baselines, one code path with a flag
//! ([`crate::ssl::step::SslMethod`]): SimCLR, MoCo v2,
//! SwAV, Barlow Twins and PsCo. A step's batch is section 4.1's construction with K = 1 and
//! M1 = M2 = 1 (the support views are each image's first view, the query views its second); its
//! gradient is [`crate::ssl::step`] on the two views (SwAV with `[multicrop]`:
//! [`crate::ssl::multicrop::step`], with the batch's small crops); its state is MoCo's and PsCo's
//! momentum encoder and queue of keys ([`SslState`], checkpointed as `state/ema`, `state/queue`,
//! `state/queue_ptr`). None trains a classifier, so all are evaluated by prototypes, as PsCo
//! evaluates them.

use super::{Method, PseudoLabelled};
use crate::augment::Augmenter;
use crate::config::{MultiCropConfig, TrainConfig};
use crate::data::UnlabelledPool;
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::settings::Mode;
use crate::ssl::multicrop;
use crate::ssl::step::{SslSpec, SslState};
use crate::train::TrainingData;
use crate::Result;
use std::collections::BTreeMap;

/// SwAV's multi-crop: the pool, the small crops' learner (same parameters) and augmenter.
struct MultiCrop {
    pool: UnlabelledPool,
    learner: Learner,
    aug: Augmenter,
}

pub(super) struct Ssl {
    tasks: PseudoLabelled,
    spec: SslSpec,
    state: SslState,
    seed: u64,
    images_per_batch: usize,
    multicrop_cfg: MultiCropConfig,
    multicrop: Option<MultiCrop>,
}

impl Ssl {
    pub(super) fn new(cfg: &TrainConfig) -> Self {
        Ssl {
            tasks: PseudoLabelled::new(cfg),
            spec: cfg
                .ssl_spec()
                .expect("a self-supervised baseline has an SSL spec"),
            state: SslState::default(),
            seed: cfg.run.seed,
            images_per_batch: cfg.task.images_per_batch,
            multicrop_cfg: cfg.multicrop.clone(),
            multicrop: None,
        }
    }
}

impl Method for Ssl {
    fn init_state(&mut self, learner: &Learner, theta: &[f32]) {
        self.state = SslState::new(&self.spec, self.seed, learner, theta);
    }

    fn state(&self) -> BTreeMap<String, Vec<f32>> {
        self.state.to_tensors()
    }

    fn restore_state(&mut self, tensors: &BTreeMap<String, Vec<f32>>, learner: &Learner) -> bool {
        match SslState::from_tensors(tensors, &self.spec, learner) {
            Some(state) => {
                self.state = state;
                true
            }
            None => false,
        }
    }

    fn prepare(
        &mut self,
        _run: &crate::run_dir::RunDir,
        data: &TrainingData,
        learner: &Learner,
        _observer: &mut dyn crate::train::Observer,
    ) -> Result<()> {
        self.multicrop = match (self.multicrop_cfg.crops, data) {
            (0, _) | (_, TrainingData::Labelled(_)) => None,
            (_, TrainingData::Unlabelled(pool)) => {
                let size = multicrop::small_size(&self.multicrop_cfg, &learner.spec)?;
                Some(MultiCrop {
                    pool: pool.clone(),
                    learner: multicrop::small_learner(learner, size)?,
                    aug: multicrop::augmenter(&self.tasks.aug.config, &self.multicrop_cfg, size),
                })
            }
        };
        Ok(())
    }

    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        self.tasks.tasks(data, step)
    }

    fn gradient(
        &mut self,
        learner: &Learner,
        theta: &[f32],
        tasks: &[TaskTensors<f32>],
        step: u64,
    ) -> (Vec<f32>, Vec<TaskStats>) {
        let r = match &self.multicrop {
            Some(m) => multicrop::step(
                &self.spec,
                learner,
                &m.learner,
                theta,
                &tasks[0].support_x,
                &tasks[0].query_x,
                &multicrop::crops(
                    &m.pool,
                    self.images_per_batch,
                    &m.aug,
                    self.multicrop_cfg.crops,
                    self.seed,
                    step,
                ),
            ),
            None => crate::ssl::step::step(
                &self.spec,
                learner,
                theta,
                &mut self.state,
                &tasks[0].support_x,
                &tasks[0].query_x,
            ),
        };
        let stats = TaskStats {
            outer_loss: r.loss,
            inner_loss_before: f64::NAN,
            inner_loss_after: f64::NAN,
            kl: f64::NAN,
        };
        (r.grad, vec![stats])
    }

    fn eval_mode(&self) -> Mode {
        Mode::Proto
    }
}

//! What each training method is, one file per method (or per family that is one code path with a
//! flag): which tasks a meta-step needs, the step's gradient and loss statistics, the state it
//! carries between steps (checkpointed beside theta), and how it is evaluated. The meta-training
//! loop ([`crate::train`]) knows only the [`Method`] trait; [`for_config`] is the one place that
//! matches on [`TrainMethod`].
//!
//! | method | file | tasks | gradient | state |
//! |---|---|---|---|---|
//! | `bmssl`, `metassl` | `bmssl.rs` (one code path: the meta-spec's method picks eq. 3 or 2) | pseudo-labelled (4.1) | eq. (3) / eq. (2), [`crate::meta::outer`] | none |
//! | `maml` | `maml.rs` | labelled episodes | eq. (2) with CE | none |
//! | `protonet` | `protonet.rs` | labelled episodes | [`crate::baselines::protonet`] | none |
//! | `umtra` | `umtra.rs` | [`crate::baselines::umtra`] | eq. (2) with CE | none |
//! | `onelevel` | `onelevel.rs` | pseudo-labelled (4.1) | [`crate::baselines::onelevel`] | none |
//! | `scratch` | `scratch.rs` | none (no meta-step) | none | none |
//! | `simclr`, `moco`, `swav`, `barlowtwins`, `psco` | `ssl.rs` | two views of a batch (4.1 with K = 1) | [`crate::ssl::step`] (SwAV's multi-crop: [`crate::ssl::multicrop`]) | MoCo's and PsCo's momentum encoder and queue |
//! | `cactus-protonet`, `cactus-maml` | `cactus.rs` | [`crate::cactus`]'s clusters | ProtoNet's or MAML's | none (the partitions are a file of the run) |

mod bmssl;
mod cactus;
mod maml;
mod onelevel;
mod protonet;
mod scratch;
mod ssl;
mod umtra;

use crate::augment::Augmenter;
use crate::config::{TrainConfig, TrainMethod};
use crate::data::{Dataset, UnlabelledPool};
use crate::meta::outer::{TaskStats, TaskTensors};
use crate::model::Learner;
use crate::run_dir::RunDir;
use crate::settings::Mode;
use crate::tasks::{build_meta_batch, TaskShape};
use crate::train::{Observer, TrainingData};
use crate::{Error, Result};
use std::collections::BTreeMap;

/// One training method as the meta-training loop sees it: these tasks, this gradient, this state.
///
/// The loop calls, in order: [`init_state`](Method::init_state) (fresh run) or
/// [`restore_state`](Method::restore_state) (resumed run), [`prepare`](Method::prepare), then for
/// each meta-step [`tasks`](Method::tasks) and [`gradient`](Method::gradient); every checkpoint
/// stores [`state`](Method::state). Every random draw of a method is derived from the run's seed
/// and the step, so a resumed run computes the same bits as an uninterrupted one.
pub trait Method {
    /// The number of meta-steps the method trains for a configured budget (`scratch`: none).
    fn meta_steps(&self, configured: u64) -> u64 {
        configured
    }

    /// The state of a fresh run, from its initial parameters.
    fn init_state(&mut self, _learner: &Learner, _theta: &[f32]) {}

    /// The state as checkpoint tensors (`state/<name>`); empty for a method without state.
    fn state(&self) -> BTreeMap<String, Vec<f32>> {
        BTreeMap::new()
    }

    /// The state from a checkpoint's tensors; `false` when they do not fit the configuration.
    fn restore_state(&mut self, _tensors: &BTreeMap<String, Vec<f32>>, _learner: &Learner) -> bool {
        true
    }

    /// Work before the first meta-step of this session (CACTUs' partitions, SwAV's small crops).
    fn prepare(
        &mut self,
        _run: &RunDir,
        _data: &TrainingData,
        _learner: &Learner,
        _observer: &mut dyn Observer,
    ) -> Result<()> {
        Ok(())
    }

    /// The tasks of meta-step `step` (1-based).
    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>>;

    /// The gradient of meta-step `step` at `theta` on `tasks`, with each task's loss statistics
    /// (what `metrics.jsonl` records; NaN where the method has no such number).
    fn gradient(
        &mut self,
        learner: &Learner,
        theta: &[f32],
        tasks: &[TaskTensors<f32>],
        step: u64,
    ) -> (Vec<f32>, Vec<TaskStats>);

    /// How a few-shot episode scores the trained model: `adapt` (inner-loop fine-tuning from a
    /// fresh classifier) for a method that meta-learns an initialisation to adapt, `proto`
    /// (nearest prototype on frozen features) for one with no classifier to adapt.
    fn eval_mode(&self) -> Mode;
}

/// The method a configuration trains: the only `match` on [`TrainMethod`] that says what a
/// method computes.
pub fn for_config(cfg: &TrainConfig) -> Box<dyn Method> {
    match cfg.method {
        TrainMethod::Bmssl => Box::new(bmssl::Bmssl::new(cfg)),
        TrainMethod::Metassl => Box::new(bmssl::Bmssl::new(cfg)),
        TrainMethod::Maml => Box::new(maml::Maml::new(cfg)),
        TrainMethod::Protonet => Box::new(protonet::Protonet::new(cfg)),
        TrainMethod::Umtra => Box::new(umtra::Umtra::new(cfg)),
        TrainMethod::Scratch => Box::new(scratch::Scratch),
        TrainMethod::Onelevel => Box::new(onelevel::Onelevel::new(cfg)),
        TrainMethod::Simclr
        | TrainMethod::Moco
        | TrainMethod::Swav
        | TrainMethod::Barlowtwins
        | TrainMethod::Psco => Box::new(ssl::Ssl::new(cfg)),
        TrainMethod::CactusProtonet => Box::new(cactus::Cactus::new(
            cfg,
            Box::new(protonet::Protonet::new(cfg)),
        )),
        TrainMethod::CactusMaml => {
            Box::new(cactus::Cactus::new(cfg, Box::new(maml::Maml::new(cfg))))
        }
    }
}

/// The learner a configuration trains: the backbone and head every method shares, SwAV's
/// prototypes (also BMSSL's with the SwAV inner loss) and MoCo's and PsCo's predictor.
pub fn learner_for(cfg: &TrainConfig) -> Result<Learner> {
    Learner::new(crate::model::ArchSpec {
        backbone: cfg.outer.backbone,
        in_channels: cfg.data.channels,
        image_size: cfg.data.image_size,
        hidden: 64,
        proj_dim: 64,
        ways: cfg.ways(),
        prototypes: if cfg.method == TrainMethod::Swav
            || cfg.inner.inner_loss == crate::objective::ContrastiveLoss::Swav
        {
            cfg.ssl.prototypes
        } else {
            0
        },
        predictor: cfg.method.uses_queue() && cfg.ssl.predictor,
    })
}

/// The error of a method given the other kind of data.
fn wrong_data(method: &str, labelled: bool) -> Error {
    Error::config(
        "method",
        format!(
            "{method} needs {} data",
            if labelled { "labelled" } else { "unlabelled" }
        ),
    )
}

/// The unlabelled pool of a self-supervised method's data.
fn pool<'a>(method: &str, data: &'a TrainingData) -> Result<&'a UnlabelledPool> {
    match data {
        TrainingData::Unlabelled(pool) => Ok(pool),
        TrainingData::Labelled(_) => Err(wrong_data(method, false)),
    }
}

/// The labelled split of a supervised method's data.
fn split<'a>(method: &str, data: &'a TrainingData) -> Result<&'a dyn Dataset> {
    match data {
        TrainingData::Labelled(split) => Ok(split.as_ref()),
        TrainingData::Unlabelled(_) => Err(wrong_data(method, true)),
    }
}

/// Section 4.1's pseudo-labelled tasks of one meta-step, as a run configures them: N images of the
/// pool in M views, K blocks, M1 support and M2 query views per image. The self-supervised
/// baselines' batch is the same construction with K = 1, M1 = M2 = 1: the support views are the
/// first view of each image, the query views the second.
#[derive(Clone, Debug)]
struct PseudoLabelled {
    method: &'static str,
    shape: TaskShape,
    aug: Augmenter,
    seed: u64,
}

impl PseudoLabelled {
    fn new(cfg: &TrainConfig) -> Self {
        PseudoLabelled {
            method: cfg.method.as_str(),
            shape: cfg.task_shape(),
            aug: augmenter(cfg),
            seed: cfg.run.seed,
        }
    }

    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        let pool = pool(self.method, data)?;
        Ok(
            build_meta_batch(pool, &self.shape, &self.aug, self.seed, step - 1)?
                .tasks
                .into_iter()
                .map(TaskTensors::from)
                .collect(),
        )
    }
}

/// Supervised N-way episodes of the labelled split ([`crate::baselines::labelled_tasks`]): M1
/// support and M2 query images per class, `tasks_per_batch` episodes a step.
#[derive(Clone, Debug)]
struct Episodes {
    method: &'static str,
    ways: usize,
    shots: usize,
    queries: usize,
    tasks: usize,
    seed: u64,
}

impl Episodes {
    fn new(cfg: &TrainConfig) -> Self {
        Episodes {
            method: cfg.method.as_str(),
            ways: cfg.ways(),
            shots: cfg.task.support_views,
            queries: cfg.task.query_views,
            tasks: cfg.task.tasks_per_batch,
            seed: cfg.run.seed,
        }
    }

    fn tasks(&self, data: &TrainingData, step: u64) -> Result<Vec<TaskTensors<f32>>> {
        crate::baselines::labelled_tasks(
            split(self.method, data)?,
            self.ways,
            self.shots,
            self.queries,
            self.tasks,
            self.seed,
            step,
        )
    }
}

/// The run's augmenter (section 4.1's views at the configured level).
fn augmenter(cfg: &TrainConfig) -> Augmenter {
    Augmenter::from_level(cfg.task.augment, cfg.data.image_size, cfg.data.image_size)
}

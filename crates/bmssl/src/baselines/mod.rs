//! Baselines of the paper's Table 3 on the same backbone, data, run directory and evaluation:
//!
//! | method | labels | tasks | objective |
//! |---|---|---|---|
//! | MAML (Finn et al. 2017) | yes | N-way episodes of the training classes | CE of w_L on the queries, second order (or `--first-order`) |
//! | ProtoNet (Snell et al. 2017) | yes | N-way episodes | CE over negative squared Euclidean distances to class prototypes ([`protonet`]) |
//! | UMTRA (Khodadadeh et al. 2019) | no | N random unlabelled images; support = the image itself, query = an augmented copy ([`umtra`]) | MAML's |
//! | scratch | no | none | no meta-training: a random initialisation adapted on each test episode (Table 6's M1) |
//! | onelevel | no | BMSSL's pseudo-labelled tasks | the inner loss of theta itself on all views, no inner loop (Table 6's M2, [`onelevel`]) |
//! | CACTUs (Hsu et al. 2019) | no | N k-means clusters of an unsupervised embedding, from one of P partitions ([`crate::cactus`]) | ProtoNet's (`cactus-protonet`) or MAML's (`cactus-maml`) |
//!
//! MAML and UMTRA reuse the exact meta-gradient of [`crate::meta::outer`] with the cross-entropy
//! inner loss (the contrastive weight is forced to 0), so their second-order gradients carry the
//! same finite-difference and PyTorch checks as MetaSSL's.

pub mod onelevel;
pub mod protonet;
pub mod umtra;

use crate::data::Dataset;
use crate::episodes::sample_episode;
use crate::meta::outer::TaskTensors;
use crate::Result;

/// `tasks` supervised N-way episodes (shots support, queries query images per class) for
/// meta-step `step` (1-based), as task tensors. Episode indices never repeat across steps.
pub fn labelled_tasks(
    split: &dyn Dataset,
    ways: usize,
    shots: usize,
    queries: usize,
    tasks: usize,
    seed: u64,
    step: u64,
) -> Result<Vec<TaskTensors<f32>>> {
    (0..tasks as u64)
        .map(|k| {
            let e = sample_episode(
                split,
                ways,
                shots,
                queries,
                seed,
                (step - 1) * tasks as u64 + k,
            )?;
            Ok(TaskTensors::from(e))
        })
        .collect()
}

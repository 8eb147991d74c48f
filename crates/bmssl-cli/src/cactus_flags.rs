//! `bmssl train`'s flags of CACTUs' `[cactus]` keys (issue 21), flattened into the train flags.

use bmssl::cactus::Scaling;
use bmssl::config::TrainConfig;

/// CACTUs (`--method cactus-protonet|cactus-maml`): the keys of the `[cactus]` section.
#[derive(clap::Args, Default, Debug)]
pub struct CactusFlags {
    /// CACTUs: checkpoint whose backbone features are embedded and clustered (default: a SimCLR
    /// trained first in RUN_DIR/embedding for --embedding-steps steps).
    #[arg(long)]
    embedding: Option<String>,
    /// CACTUs: steps of the SimCLR embedding trained when no --embedding is given.
    #[arg(long)]
    embedding_steps: Option<u64>,
    /// CACTUs: P, k-means partitions of the embedding.
    #[arg(long)]
    partitions: Option<usize>,
    /// CACTUs: k, clusters per partition.
    #[arg(long)]
    clusters: Option<usize>,
    /// CACTUs: random (each partition its own random diagonal scaling) or none.
    #[arg(long)]
    cluster_scaling: Option<Scaling>,
    /// CACTUs: most Lloyd iterations per partition.
    #[arg(long)]
    kmeans_iterations: Option<usize>,
}

impl CactusFlags {
    /// Sets the keys given on the command line.
    pub fn apply(&self, cfg: &mut TrainConfig) {
        let c = &mut cfg.cactus;
        if let Some(v) = &self.embedding {
            c.embedding = Some(v.clone());
        }
        if let Some(v) = self.embedding_steps {
            c.embedding_steps = v;
        }
        if let Some(v) = self.partitions {
            c.partitions = v;
        }
        if let Some(v) = self.clusters {
            c.clusters = v;
        }
        if let Some(v) = self.cluster_scaling {
            c.scaling = v;
        }
        if let Some(v) = self.kmeans_iterations {
            c.iterations = v;
        }
    }
}

//! What a run trains: the paper's two methods or a baseline, and what each method implies (its
//! evaluation mode, whether it reads labels, its outer objective).

use crate::meta::Method;
use crate::ssl::step::SslMethod;
use serde::{Deserialize, Serialize};

/// What a run trains: the paper's two methods or a baseline of its Table 3
/// (see [`crate::baselines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainMethod {
    /// Paper eq. (3), unlabelled.
    Bmssl,
    /// Paper eq. (2), unlabelled.
    Metassl,
    /// Supervised MAML on labelled episodes of the training classes.
    Maml,
    /// Supervised prototypical networks.
    Protonet,
    /// Unsupervised: MAML on tasks of (image, augmented copy).
    Umtra,
    /// No meta-training: the random initialisation, adapted on each test episode (Table 6's M1).
    Scratch,
    /// SimCLR (Chen et al. 2020): NT-Xent between two views of each image of a batch.
    Simclr,
    /// MoCo v2 (Chen et al. 2020): InfoNCE against a momentum encoder's keys and a queue.
    Moco,
    /// SwAV (Caron et al. 2020): swapped prediction of Sinkhorn codes over prototypes.
    Swav,
    /// Barlow Twins (Zbontar et al. 2021): cross-correlation of two views towards the identity.
    Barlowtwins,
    /// PsCo (Jang et al. 2023): MoCo plus a pseudo-labelled few-shot task drawn from the queue.
    Psco,
    /// One-level optimisation (Table 6's M2): theta minimises the inner loss on all views of
    /// BMSSL's pseudo-labelled tasks directly, with no inner loop ([`crate::baselines::onelevel`]).
    Onelevel,
    /// CACTUs (Hsu et al. 2019) with ProtoNet: ProtoNet on tasks of k-means clusters of an
    /// unsupervised embedding ([`crate::cactus`]).
    #[serde(rename = "cactus-protonet")]
    CactusProtonet,
    /// CACTUs with MAML ([`crate::cactus`]).
    #[serde(rename = "cactus-maml")]
    CactusMaml,
}

impl TrainMethod {
    /// Every method, in the order of the paper's Table 3 (the ablation-only ones last). Code that
    /// must cover every method (the reproduction plan) iterates over this list.
    pub const ALL: &'static [TrainMethod] = &[
        TrainMethod::Bmssl,
        TrainMethod::Metassl,
        TrainMethod::Maml,
        TrainMethod::Protonet,
        TrainMethod::Umtra,
        TrainMethod::Scratch,
        TrainMethod::Simclr,
        TrainMethod::Moco,
        TrainMethod::Swav,
        TrainMethod::Barlowtwins,
        TrainMethod::Psco,
        TrainMethod::Onelevel,
        TrainMethod::CactusProtonet,
        TrainMethod::CactusMaml,
    ];

    /// The self-supervised baselines of [`crate::ssl`] (one batch of two views per step, no inner loop).
    pub fn is_ssl(self) -> bool {
        self.ssl_method().is_some()
    }

    /// The self-supervised baseline this method is, if it is one (see [`TrainMethod::is_ssl`]).
    pub fn ssl_method(self) -> Option<SslMethod> {
        match self {
            TrainMethod::Simclr => Some(SslMethod::Simclr),
            TrainMethod::Moco => Some(SslMethod::Moco),
            TrainMethod::Swav => Some(SslMethod::Swav),
            TrainMethod::Barlowtwins => Some(SslMethod::Barlowtwins),
            TrainMethod::Psco => Some(SslMethod::Psco),
            _ => None,
        }
    }

    /// Whether the method trains on CACTUs' tasks (and reads the `[cactus]` section).
    pub fn is_cactus(self) -> bool {
        matches!(self, TrainMethod::CactusProtonet | TrainMethod::CactusMaml)
    }

    /// Whether the method keeps a momentum encoder and a queue of keys.
    pub fn uses_queue(self) -> bool {
        self.ssl_method().is_some_and(SslMethod::uses_queue)
    }

    /// Whether the method is a row of the paper's Table 3 (every method but the ablation-only
    /// structure M2 of Table 6).
    pub fn in_comparison(self) -> bool {
        !matches!(self, TrainMethod::Onelevel)
    }

    /// How the method is evaluated on a few-shot episode (`adapt` or `proto`): each method's file
    /// under [`crate::methods`] says it ([`crate::methods::Method::eval_mode`]).
    pub fn eval_mode(self) -> crate::settings::Mode {
        crate::methods::for_config(&super::TrainConfig::for_method(self)).eval_mode()
    }

    /// Whether the method reads class labels (only the supervised baselines do).
    pub fn uses_labels(self) -> bool {
        matches!(self, TrainMethod::Maml | TrainMethod::Protonet)
    }
    /// The outer objective of the meta-gradient (MAML and UMTRA use MetaSSL's, with CE only).
    pub fn objective(self) -> Method {
        if self == TrainMethod::Bmssl {
            Method::Bmssl
        } else {
            Method::Metassl
        }
    }
    /// Name as in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            TrainMethod::Bmssl => "bmssl",
            TrainMethod::Metassl => "metassl",
            TrainMethod::Maml => "maml",
            TrainMethod::Protonet => "protonet",
            TrainMethod::Umtra => "umtra",
            TrainMethod::Scratch => "scratch",
            TrainMethod::Simclr => "simclr",
            TrainMethod::Moco => "moco",
            TrainMethod::Swav => "swav",
            TrainMethod::Barlowtwins => "barlowtwins",
            TrainMethod::Psco => "psco",
            TrainMethod::Onelevel => "onelevel",
            TrainMethod::CactusProtonet => "cactus-protonet",
            TrainMethod::CactusMaml => "cactus-maml",
        }
    }
}

//! The inner (task) loss's settings: lambda, tau and which self-supervised term stands beside
//! cross-entropy. Plain data, held by the run configuration, the meta-learning specs and every
//! checkpoint; [`crate::objective`] computes the loss from them.

/// The inner (task) loss of the paper: `CE(logits, y) + lambda * SupCon(z, y; tau)`, or, for the
/// paper's "-o" variants (Tables 1-2), another self-supervised objective in SupCon's place.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InnerLoss {
    /// lambda: weight of the contrastive term (0 turns the projection head off).
    pub contrastive_weight: f64,
    /// tau: temperature of the contrastive term.
    pub temperature: f64,
    /// Which self-supervised term (SupCon, the paper's, unless an "-o" variant is asked for).
    #[serde(default)]
    pub contrastive: ContrastiveLoss,
    /// Barlow Twins' off-diagonal weight (the "-o" variant only).
    #[serde(default = "default_redundancy_weight")]
    pub redundancy_weight: f64,
    /// Sinkhorn's regularisation and rounds (SwAV's "-o" variant only).
    #[serde(default = "default_sinkhorn_eps")]
    pub sinkhorn_eps: f64,
    #[serde(default = "default_sinkhorn_iters")]
    pub sinkhorn_iters: usize,
}

fn default_redundancy_weight() -> f64 {
    InnerLoss::PAPER.redundancy_weight
}
fn default_sinkhorn_eps() -> f64 {
    InnerLoss::PAPER.sinkhorn_eps
}
fn default_sinkhorn_iters() -> usize {
    InnerLoss::PAPER.sinkhorn_iters
}

impl InnerLoss {
    /// lambda = 1, tau = 0.5, SupCon; the self-supervised settings at their papers' values.
    pub const PAPER: InnerLoss = InnerLoss {
        contrastive_weight: 1.0,
        temperature: 0.5,
        contrastive: ContrastiveLoss::Supcon,
        redundancy_weight: 5e-3,
        sinkhorn_eps: 0.05,
        sinkhorn_iters: 3,
    };
}

/// The self-supervised term of the inner loss. Every choice but SupCon compares the first two
/// support views of each image (the "-o" variants need M1 >= 2):
///
/// | kind | term on the views (a, b) of the task's images |
/// |---|---|
/// | `supcon` | paper eq. (1) over all views, pseudo-labels as classes |
/// | `simclr` | NT-Xent over the 2 x (N/K) views (equal to SupCon when M1 = 2) |
/// | `moco` | InfoNCE of view a against the keys of view b, computed by the same fast weights under a stop-gradient (a momentum encoder over a 5-step inner loop would barely leave theta, and theta's keys would carry no information about the task); the other images' keys are the negatives (the task's queue) |
/// | `barlowtwins` | Barlow Twins' cross-correlation of views a and b over the task's images, divided by D (its sum over D dimensions would otherwise dwarf CE) |
/// | `swav` | SwAV's swapped prediction over the learner's `prototypes.weight` (meta-learned with theta) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContrastiveLoss {
    #[default]
    Supcon,
    Simclr,
    Moco,
    Barlowtwins,
    Swav,
}

impl ContrastiveLoss {
    /// Name as in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ContrastiveLoss::Supcon => "supcon",
            ContrastiveLoss::Simclr => "simclr",
            ContrastiveLoss::Moco => "moco",
            ContrastiveLoss::Barlowtwins => "barlowtwins",
            ContrastiveLoss::Swav => "swav",
        }
    }
}

//! The plain types that name how a few-shot evaluation is run: the scoring [`Mode`], the fresh
//! head's [`HeadInit`], the [`Features`] proto mode compares, and a (ways, shots) [`Setting`].
//!
//! They sit below both [`crate::config`] (a run's validation mode) and [`crate::eval`] (which
//! re-exports them, so `bmssl::eval::Mode` and the other public paths keep working), so that the
//! configuration does not import the evaluator.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How an episode is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inner-loop adaptation on the support set, then classify the queries (MAML-style).
    Adapt,
    /// Cosine nearest prototype on frozen features (PsCo-style).
    Proto,
}

/// How the fresh classifier head of an episode starts, in adapt mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadInit {
    /// Zero weights and bias: every class starts equal.
    Zero,
    /// Proto-MAML: `W_c = 2 mu_c`, `b_c = -|mu_c|^2`, `mu_c` the mean backbone feature of class c's
    /// support images (so the initial logits are the negative squared distances to the prototypes,
    /// up to a term common to all classes).
    Proto,
}

/// Which features proto mode compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Features {
    /// The flattened backbone output (`[N, F]`, F = 64 for Conv4 on 28x28).
    Backbone,
    /// The projection head's output (`[N, proj_dim]`).
    Projection,
}

macro_rules! from_str_lower {
    ($t:ty, $field:literal, $($name:literal => $v:expr),+) => {
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($v),)+
                    _ => Err(Error::config(
                        $field,
                        format!("`{s}` is not one of {}", [$($name),+].join(", ")),
                    )),
                }
            }
        }
    };
}
from_str_lower!(Mode, "mode", "adapt" => Mode::Adapt, "proto" => Mode::Proto);
from_str_lower!(HeadInit, "head", "zero" => HeadInit::Zero, "proto" => HeadInit::Proto);
from_str_lower!(Features, "features", "backbone" => Features::Backbone, "projection" => Features::Projection);

/// One (ways, shots) pair, written `5w1s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub ways: usize,
    pub shots: usize,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}w{}s", self.ways, self.shots)
    }
}

impl std::str::FromStr for Setting {
    type Err = Error;
    /// `5w1s`, `20w5s` (also `5-way-1-shot` style separators are not accepted: one spelling).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "setting",
                format!(
                    "`{}` is not of the form <ways>w<shots>s, e.g. 5w1s",
                    crate::limits::shorten(s)
                ),
            )
        };
        let lower = s.trim().to_ascii_lowercase();
        let (w, rest) = lower.split_once('w').ok_or_else(bad)?;
        let k = rest.strip_suffix('s').ok_or_else(bad)?;
        let ways: usize = w.parse().map_err(|_| bad())?;
        let shots: usize = k.parse().map_err(|_| bad())?;
        if ways > crate::limits::MAX_WAYS || shots > crate::limits::MAX_QUERIES {
            return Err(Error::config(
                "setting",
                format!(
                    "`{}`: at most {} ways and {} shots",
                    crate::limits::shorten(s),
                    crate::limits::MAX_WAYS,
                    crate::limits::MAX_QUERIES
                ),
            ));
        }
        if ways < 2 || shots == 0 {
            return Err(Error::config(
                "setting",
                format!("`{s}`: an episode needs at least 2 ways and 1 shot"),
            ));
        }
        Ok(Setting { ways, shots })
    }
}

//! What an evaluation writes: one [`EvalRecord`] per setting scored (its per-episode accuracies,
//! their summary, and the episodes they came from), in every file that holds test results:
//!
//! * `bmssl eval --json F` and `bmssl train`'s `RUN_DIR/eval.json`: an [`EvalReport`], the records
//!   of every setting and what was scored (`checkpoint_scored`, dataset, split, options);
//! * `reproduce`'s and `sweep`'s part records (`eval-5w1s.json`, `eval-val-5w1s-adapt.json`): one
//!   record each, so that any two over the same episodes pair up ([`paired_difference`]).
//!
//! One shape, written in one place ([`EvalRecord::measure`]): a figure from `train`, `eval`,
//! `reproduce` or `sweep` can be compared episode by episode with any other.

use super::{evaluate, EvalOptions, HeadInit, Mode, Model, Setting, Summary};
use crate::data::Dataset;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// One setting's evaluation: per-episode accuracies with their summary and the episodes' identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub setting: Setting,
    pub mode: Mode,
    pub episodes: u64,
    pub queries: usize,
    pub episode_seed: u64,
    /// Mean accuracy (fraction) and 95% half-width over the episodes.
    pub mean: f64,
    pub ci95: f64,
    pub std: f64,
    pub seconds: f64,
    /// Accuracy of each episode, in episode order (paired comparisons).
    pub accuracies: Vec<f64>,
    /// The split the episodes came from (absent: `test`, as every `reproduce` record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Adapt mode's head initialisation (absent: zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadInit>,
    /// The meta-step of the checkpoint evaluated (absent in `reproduce`'s records, whose
    /// directory fixes the budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_step: Option<u64>,
    /// `eval --tune-adapt`: the validation grid and the step size and steps chosen on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<serde_json::Value>,
    /// `train`'s yardstick: the untrained network on the same episodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrained: Option<Summary>,
    /// The paper's figure for this method and setting (Table 3), where it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<f64>,
}

impl EvalRecord {
    /// Evaluates `model` on `setting` with `opts` (episodes of `data`, the `split` split) and
    /// records it, timed; `on_episode` is called once per finished episode.
    pub fn measure(
        model: &Model,
        data: &dyn Dataset,
        split: &str,
        setting: Setting,
        opts: &EvalOptions,
        on_episode: &(dyn Fn() + Sync),
    ) -> Result<Self> {
        let t0 = Instant::now();
        let r = evaluate(model, data, setting, opts, on_episode)?;
        Ok(EvalRecord {
            setting,
            mode: opts.mode,
            episodes: opts.episodes,
            queries: opts.queries,
            episode_seed: opts.seed,
            mean: r.summary.mean,
            ci95: r.summary.ci95,
            std: r.summary.std,
            seconds: t0.elapsed().as_secs_f64(),
            accuracies: r.accuracies,
            split: Some(split.to_string()),
            head: (opts.mode == Mode::Adapt).then_some(opts.head),
            checkpoint_step: None,
            tuning: None,
            untrained: None,
            paper: None,
        })
    }

    /// The summary of the accuracies.
    pub fn summary(&self) -> Summary {
        Summary {
            mean: self.mean,
            std: self.std,
            ci95: self.ci95,
            episodes: self.episodes,
        }
    }
}

/// How every record's interval is computed (written into each [`EvalReport`]).
pub const INTERVAL: &str = "mean +- 1.96 * sample std (n - 1) / sqrt(episodes)";

/// An `eval.json`: what was scored, how, and one [`EvalRecord`] per setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The checkpoint file evaluated (`file`; `which`: `final` / `best`; `step`).
    pub checkpoint_scored: serde_json::Value,
    pub dataset: String,
    pub split: String,
    /// The options every setting was scored with (before `--tune-adapt`'s per-setting choice).
    pub options: EvalOptions,
    /// [`INTERVAL`].
    pub interval: String,
    /// Keys of the command that wrote it: `checkpoint`, `init_seed`, `rotations`, `threads`
    /// (`eval`); `meta_steps`, `untrained_init_seed` (`train`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub results: Vec<EvalRecord>,
}

impl EvalReport {
    /// Writes the report as pretty JSON, atomically (the previous file stays whole on failure).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| crate::Error::config("eval.json", e.to_string()))?
            + "\n";
        crate::io::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageShape, InMemoryDataset};
    use crate::model::ArchSpec;

    fn model() -> Model {
        Model::random(ArchSpec::conv4(1, 16, 3), 4).unwrap()
    }

    fn data() -> InMemoryDataset {
        let mut r = crate::rng::derive(2, &[7]);
        let bufs = (0..6)
            .map(|_| (0..6 * 256).map(|_| rand::Rng::gen::<u8>(&mut r)).collect())
            .collect();
        InMemoryDataset::from_classes("noise", ImageShape::new(1, 16, 16), bufs).unwrap()
    }

    #[test]
    fn a_measured_record_holds_exactly_what_evaluate_scores_and_where_its_episodes_came_from() {
        let (m, d) = (model(), data());
        let s = Setting { ways: 3, shots: 1 };
        let opts = EvalOptions {
            episodes: 5,
            queries: 2,
            ..EvalOptions::new(Mode::Adapt, &m)
        };
        let r = EvalRecord::measure(&m, &d, "val", s, &opts, &|| {}).unwrap();
        let e = evaluate(&m, &d, s, &opts, &|| {}).unwrap();
        assert_eq!(r.accuracies, e.accuracies);
        assert_eq!(r.summary(), e.summary);
        assert_eq!(
            (r.setting, r.mode, r.queries, r.episode_seed),
            (s, Mode::Adapt, 2, 0)
        );
        assert_eq!(r.split.as_deref(), Some("val"));
        assert_eq!(r.head, Some(HeadInit::Zero));
    }

    #[test]
    fn a_record_without_the_optional_keys_still_reads_as_reproduce_wrote_them() {
        let old = r#"{"setting":{"ways":5,"shots":1},"mode":"adapt","episodes":2,"queries":15,
            "episode_seed":0,"mean":0.5,"ci95":0.1,"std":0.05,"seconds":1.0,"accuracies":[0.4,0.6]}"#;
        let r: EvalRecord = serde_json::from_str(old).unwrap();
        assert!(r.split.is_none() && r.head.is_none() && r.tuning.is_none());
        assert!(r.untrained.is_none() && r.paper.is_none());
        // And writes back without them.
        let again = serde_json::to_value(&r).unwrap();
        assert!(again.get("tuning").is_none() && again.get("split").is_none());
    }
}

//! What `bmssl reproduce` runs: named parts (one training run and its test evaluations each),
//! grouped into the paper's tables, under a [`Budget`].
//!
//! A part is identified by its configuration (method, target, augmentation level, delta), so a
//! configuration that two tables need is trained and evaluated once: BMSSL with the default
//! settings is Table 3's BMSSL row, Table 6's M3 and Table 7's delta = 5 row; Table 3's scratch row
//! is Table 6's M1.
//!
//! Over 400 lines: the plan is mostly data (every part of Tables 3, 5, 6 and 7 under each budget),
//! kept in one file so that a table's parts and their shared configurations read together.

use crate::augment::AugmentLevel;
use crate::config::{TrainConfig, TrainMethod};
use crate::eval::{Mode, Setting};
use crate::meta::Target;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How much compute every part gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// `tiny`, `small` or `full`.
    pub name: String,
    /// Meta-steps of every training run.
    pub meta_steps: u64,
    /// Test episodes per (part, setting).
    pub eval_episodes: u64,
    /// Query images per class in a test episode.
    pub queries: usize,
    /// Validate every this many meta-steps (0: only at the end).
    pub validate_every: u64,
    /// Validation episodes (5-way 1-shot, proto mode, on the validation split).
    pub validation_episodes: usize,
    /// Checkpoint every this many meta-steps (a killed run resumes from the newest).
    pub checkpoint_every: u64,
}

impl Budget {
    /// Two meta-steps (the fewest that give a speed interval) and ten episodes per setting: checks the machinery in minutes, measures nothing.
    pub fn tiny() -> Self {
        Budget {
            name: "tiny".into(),
            meta_steps: 2,
            eval_episodes: 10,
            queries: 2,
            validate_every: 0,
            validation_episodes: 4,
            checkpoint_every: 1,
        }
    }
    /// Fits in 2.5 hours on the project's 2-core machine ([`super::estimate`]): 300 meta-steps per
    /// run, 500 test episodes per setting with the paper's 15 queries per class.
    pub fn small() -> Self {
        Budget {
            name: "small".into(),
            meta_steps: 300,
            eval_episodes: 500,
            queries: 15,
            validate_every: 100,
            validation_episodes: 100,
            checkpoint_every: 100,
        }
    }
    /// The protocol of `docs/results/omniglot-comparison-2026-11-25`: 1250 meta-steps per run and
    /// the paper's 2000 test episodes with 15 queries per class.
    pub fn full() -> Self {
        Budget {
            name: "full".into(),
            meta_steps: 1250,
            eval_episodes: 2000,
            queries: 15,
            validate_every: 250,
            validation_episodes: 200,
            checkpoint_every: 250,
        }
    }
    /// Fewest meta-steps and test episodes per setting from which the report states verdicts.
    pub const LEAST_TO_JUDGE: (u64, u64) = (100, 100);

    /// Whether this budget measures anything: below [`Self::LEAST_TO_JUDGE`] (the `tiny` budget, a
    /// check of the machinery) the report prints its figures but judges no claim.
    pub fn judges_claims(&self) -> bool {
        self.meta_steps >= Self::LEAST_TO_JUDGE.0 && self.eval_episodes >= Self::LEAST_TO_JUDGE.1
    }

    /// Why this budget's verdicts mean nothing, if they do not (one sentence).
    pub fn too_small_note(&self) -> Option<String> {
        (!self.judges_claims()).then(|| {
            format!(
                "budget `{}` ({} meta-steps, {} test episodes per setting) only checks that every part runs: its figures measure nothing, so no claim is judged (at least {} meta-steps and {} episodes are needed; `small` is the least budget that judges)",
                self.name,
                self.meta_steps,
                self.eval_episodes,
                Self::LEAST_TO_JUDGE.0,
                Self::LEAST_TO_JUDGE.1
            )
        })
    }

    /// The budget of this name.
    pub fn named(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "full" => Ok(Self::full()),
            _ => Err(Error::config(
                "budget",
                format!("`{name}` is not one of tiny, small, full"),
            )),
        }
    }
}

/// One training run and the test evaluations made of its final checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// Directory name under `OUT/parts/` (e.g. `bmssl-paper`, `bmssl-paper-delta10`, `maml`).
    pub id: String,
    pub config: TrainConfig,
    /// How test episodes are scored ([`TrainMethod::eval_mode`]).
    pub eval_mode: Mode,
    /// Test settings, in order.
    pub settings: Vec<Setting>,
}

/// One row of a table: a label and the part whose numbers fill it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What the row is (`bmssl (paper target)`, `A3`, `M2`, `delta = 10`).
    pub label: String,
    /// Key of the paper's value for this row ([`super::paper`]).
    pub paper_key: String,
    /// The part's id.
    pub part: String,
}

/// One of the paper's tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// `table3`, `table5`, `table6`, `table7`.
    pub id: String,
    pub title: String,
    /// Settings shown as columns.
    pub settings: Vec<Setting>,
    pub rows: Vec<Row>,
}

/// Everything a reproduction runs, in order; written to `OUT/plan.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub budget: Budget,
    pub options: PlanOptions,
    pub parts: Vec<Part>,
    pub tables: Vec<TableSpec>,
}

/// The choices besides the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Dataset name or image-folder path (as `TrainConfig::dataset`).
    pub dataset: String,
    /// Seed of every training run.
    pub seed: u64,
    /// Seed of the test episodes: every part is tested on the same episodes (paired comparisons).
    pub episode_seed: u64,
    /// The bootstrap target of the BMSSL runs of Tables 5-7 (Table 3 has a row for each target).
    pub ablation_target: Target,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            dataset: "omniglot".into(),
            seed: 0,
            episode_seed: 0,
            ablation_target: Target::Paper,
        }
    }
}

/// Table 7's bootstrap steps.
pub const DELTAS: [usize; 5] = [1, 5, 10, 15, 20];
/// Table 7's inner steps.
pub const TABLE7_INNER_STEPS: usize = 5;
/// Table 5's augmentation levels.
pub const AUGMENT_LEVELS: [AugmentLevel; 4] = [
    AugmentLevel::A1,
    AugmentLevel::A2,
    AugmentLevel::A3,
    AugmentLevel::A4,
];

fn setting(ways: usize, shots: usize) -> Setting {
    Setting { ways, shots }
}

/// The configuration-file name of a target.
pub fn target_name(t: Target) -> &'static str {
    match t {
        Target::Paper => "paper",
        Target::QueryStep => "query-step",
    }
}

/// The part id of a configuration: method, BMSSL's target, and every setting that differs from
/// the method's defaults among those the tables vary (augmentation level, L, delta).
pub fn part_id(cfg: &TrainConfig) -> String {
    let d = TrainConfig::for_method(cfg.method);
    let mut id = cfg.method.as_str().to_string();
    if cfg.method == TrainMethod::Bmssl {
        id.push('-');
        id.push_str(target_name(cfg.bootstrap.target));
    }
    if cfg.task.augment != d.task.augment {
        id.push('-');
        id.push_str(cfg.task.augment.as_str());
    }
    id.push_str(&horizon_suffix(cfg));
    if cfg.bootstrap.bootstrap_steps != d.bootstrap.bootstrap_steps
        && cfg.method == TrainMethod::Bmssl
    {
        id.push_str(&format!("-delta{}", cfg.bootstrap.bootstrap_steps));
    }
    id.push_str(&study_suffix(cfg));
    id
}

/// `-L<n>` when the inner horizon differs from the reference one: the paper's L = 5 for BMSSL and
/// MetaSSL (so the ids of reproductions made before their shipped default became L = 1 keep naming
/// the same configurations, and a shipped run says `-L1`), the method's default for the others.
pub fn horizon_suffix(cfg: &TrainConfig) -> String {
    let reference = match cfg.method {
        TrainMethod::Bmssl | TrainMethod::Metassl => TrainConfig::PAPER_INNER_STEPS,
        m => TrainConfig::for_method(m).inner.inner_steps,
    };
    if cfg.inner.inner_steps == reference {
        String::new()
    } else {
        format!("-L{}", cfg.inner.inner_steps)
    }
}

/// The bootstrap study's keys where they differ from the paper's reading (`""` for the literal
/// BMSSL, so the ids of earlier reproductions stay valid): `-additive-mu1`, `-zh`, `-T0.5`, ...
pub fn study_suffix(cfg: &TrainConfig) -> String {
    let paper = TrainConfig::default().with_paper_bootstrap();
    let mut s = String::new();
    if cfg.bootstrap.outer_loss != paper.bootstrap.outer_loss {
        s.push_str(&format!(
            "-{}-mu{}",
            cfg.bootstrap.outer_loss.as_str(),
            cfg.bootstrap.mu
        ));
    }
    if cfg.bootstrap.target_query_steps != paper.bootstrap.target_query_steps {
        s.push_str(&format!("-q{}", cfg.bootstrap.target_query_steps));
    }
    if let Some(lr) = cfg.bootstrap.target_lr {
        s.push_str(&format!("-tlr{lr}"));
    }
    if cfg.bootstrap.target_temperature != paper.bootstrap.target_temperature {
        s.push_str(&format!("-T{}", cfg.bootstrap.target_temperature));
    }
    if cfg.bootstrap.similarity_weight != paper.bootstrap.similarity_weight {
        s.push_str(&format!("-sim{}", cfg.bootstrap.similarity_weight));
    }
    if cfg.inner.zero_head {
        s.push_str("-zh");
    }
    s
}

impl Plan {
    /// The plan for a budget: Table 3 (every method of [`TrainMethod::ALL`] in the comparison,
    /// BMSSL with each target), Table 5 (A1-A4), Table 6 (M1, M2, M3), Table 7 (L = 5, each delta).
    pub fn new(budget: Budget, options: PlanOptions) -> Result<Self> {
        let mut plan = Plan {
            budget,
            options,
            parts: Vec::new(),
            tables: Vec::new(),
        };
        let all = vec![setting(5, 1), setting(5, 5), setting(20, 1)];
        let one = vec![setting(5, 1)];

        let mut t3 = Vec::new();
        for &m in TrainMethod::ALL.iter().filter(|m| m.in_comparison()) {
            // BMSSL gets a row for its shipped default (when it is not the paper's reading) and
            // one for each target as the paper's reading has it.
            let mut configs = vec![(m.as_str().to_string(), plan.base(m))];
            if m == TrainMethod::Bmssl {
                let shipped = plan.base(m);
                let paper = shipped.clone().with_paper_bootstrap();
                configs.clear();
                if shipped != paper {
                    configs.push(("bmssl (shipped default)".into(), shipped));
                }
                for t in [Target::Paper, Target::QueryStep] {
                    configs.push((format!("bmssl ({} target)", target_name(t)), {
                        let mut edited = paper.clone();
                        edited.bootstrap.target = t;
                        edited
                    }));
                }
            }
            for (label, cfg) in configs {
                let part = plan.add(cfg, &all)?;
                t3.push(Row {
                    label,
                    paper_key: m.as_str().to_string(),
                    part,
                });
            }
        }
        plan.table(
            "table3",
            "Table 3 (Omniglot): every method, same test episodes",
            &all,
            t3,
        );

        // The ablations vary the paper's method: its reading, with the chosen target.
        let bmssl = {
            let mut edited = plan.base(TrainMethod::Bmssl).with_paper_bootstrap();
            edited.bootstrap.target = plan.options.ablation_target;
            edited
        };
        let mut t5 = Vec::new();
        for level in AUGMENT_LEVELS {
            let part = plan.add(
                {
                    let mut edited = bmssl.clone();
                    edited.task.augment = level;
                    edited
                },
                &one,
            )?;
            t5.push(Row {
                label: level.as_str().to_uppercase(),
                paper_key: level.as_str().to_string(),
                part,
            });
        }
        plan.table("table5", "Table 5: augmentation levels (BMSSL)", &one, t5);

        let structures = [
            ("M1", plan.base(TrainMethod::Scratch)),
            ("M2", plan.base(TrainMethod::Onelevel)),
            ("M3", bmssl.clone()),
        ];
        let mut t6 = Vec::new();
        for (label, cfg) in structures {
            let part = plan.add(cfg, &one)?;
            t6.push(Row {
                label: label.into(),
                paper_key: label.to_lowercase(),
                part,
            });
        }
        plan.table("table6", "Table 6: learning structures", &one, t6);

        let mut t7 = Vec::new();
        for delta in DELTAS {
            let part = plan.add(
                {
                    let mut edited = bmssl.clone();
                    edited.inner.inner_steps = TABLE7_INNER_STEPS;
                    edited.bootstrap.bootstrap_steps = delta;
                    edited
                },
                &one,
            )?;
            t7.push(Row {
                label: format!("delta = {delta}"),
                paper_key: format!("delta{delta}"),
                part,
            });
        }
        plan.table(
            "table7",
            "Table 7: bootstrap steps delta (L = 5): accuracy and speed",
            &one,
            t7,
        );
        Ok(plan)
    }

    /// A method's configuration under this plan's budget and options.
    fn base(&self, method: TrainMethod) -> TrainConfig {
        let b = &self.budget;
        let mut cfg = TrainConfig::for_method(method);
        cfg.data.dataset = self.options.dataset.clone();
        cfg.run.seed = self.options.seed;
        cfg.outer.meta_steps = b.meta_steps;
        cfg.run.checkpoint_every = b.checkpoint_every;
        cfg.run.keep_checkpoints = 1;
        cfg.run.validate_every = b.validate_every;
        cfg.run.validation_episodes = b.validation_episodes;
        cfg.run.validation_mode = Mode::Proto;
        // CACTUs (issue 21): its embedding and clustering sized to the budget.
        crate::cactus::for_budget(cfg, b.meta_steps)
    }

    /// Adds a part (or, for a configuration already planned, the settings it lacks); returns its id.
    fn add(&mut self, cfg: TrainConfig, settings: &[Setting]) -> Result<String> {
        cfg.validate()?;
        let id = part_id(&cfg);
        if let Some(p) = self.parts.iter_mut().find(|p| p.id == id) {
            if p.config != cfg {
                return Err(Error::config(
                    "plan",
                    format!("two configurations share the part id {id}"),
                ));
            }
            for s in settings {
                if !p.settings.contains(s) {
                    p.settings.push(*s);
                }
            }
        } else {
            self.parts.push(Part {
                id: id.clone(),
                eval_mode: cfg.method.eval_mode(),
                config: cfg,
                settings: settings.to_vec(),
            });
        }
        Ok(id)
    }

    fn table(&mut self, id: &str, title: &str, settings: &[Setting], rows: Vec<Row>) {
        self.tables.push(TableSpec {
            id: id.into(),
            title: title.into(),
            settings: settings.to_vec(),
            rows,
        });
    }

    /// The part of this id.
    pub fn part(&self, id: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_budgets_of_a_hundred_steps_and_episodes_or_more_judge_claims() {
        assert!(Budget::tiny()
            .too_small_note()
            .unwrap()
            .contains("measure nothing"));
        assert!(Budget::small().judges_claims() && Budget::full().judges_claims());
        let b = Budget {
            eval_episodes: 99,
            ..Budget::small()
        };
        assert!(!b.judges_claims());
    }

    #[test]
    fn the_plan_covers_every_method_and_shares_configurations_between_tables() {
        let plan = Plan::new(Budget::small(), PlanOptions::default()).unwrap();
        let t3 = &plan.tables[0];
        for &m in TrainMethod::ALL.iter().filter(|m| m.in_comparison()) {
            assert!(
                t3.rows.iter().any(|r| r.paper_key == m.as_str()),
                "{m:?} missing from Table 3"
            );
        }
        let ids: Vec<&str> = plan.parts.iter().map(|p| p.id.as_str()).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        // M3 and delta = 5 are Table 3's BMSSL run; M1 is Table 3's scratch run.
        let t6 = &plan.tables[2];
        assert_eq!(t6.rows[0].part, "scratch");
        assert_eq!(t6.rows[2].part, "bmssl-paper");
        assert_eq!(plan.tables[3].rows[1].part, "bmssl-paper");
        assert_eq!(plan.tables[3].rows[4].part, "bmssl-paper-delta20");
        assert_eq!(plan.part("protonet").unwrap().eval_mode, Mode::Proto);
        assert_eq!(plan.part("bmssl-paper").unwrap().settings.len(), 3);
        assert!(Budget::named("huge")
            .unwrap_err()
            .to_string()
            .contains("budget"));
    }
}

//! `OUT/report.md`: each table beside the paper's numbers, a 95% interval for every figure, one
//! sentence per claim saying whether our numbers support it, links to the plots; plus
//! `OUT/claims.json` (the comparisons behind each sentence) and `OUT/results.json` (every part's
//! result, merged).
//!
//! The writer reads only `OUT/plan.json` and `OUT/parts/*/result.json`: every figure in the report
//! is a number of those files (or, for a claim, a difference of two of them, written to
//! `claims.json`). The paper's values come from [`super::paper`].
//!
//! Over 400 lines: every table, claim and verdict of the report is rendered from the same results,
//! so splitting the tables would scatter the claim logic that compares them.

use super::paper;
use super::plan::{target_name, Plan, Row, TableSpec};
use super::{
    paired_difference, plan_path, read_json, result_path, write_json, EvalRecord, Interval,
    PartResult,
};
use crate::eval::Setting;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the report links its plots (the CLI draws them; a missing file is not linked).
pub const PLOT_DELTA_ACCURACY: &str = "plots/delta-accuracy.png";
/// See [`PLOT_DELTA_ACCURACY`].
pub const PLOT_DELTA_SPEED: &str = "plots/delta-speed.png";
/// See [`PLOT_DELTA_ACCURACY`].
pub const PLOT_LEARNING_CURVES: &str = "plots/learning-curves.png";
/// See [`PLOT_DELTA_ACCURACY`].
pub const PLOT_LOSS_CURVES: &str = "plots/loss-curves.png";

/// "Matters little": the best and worst augmentation levels differ by less than this (accuracy,
/// as a fraction: 2 percentage points), with 95% confidence.
pub const LITTLE: f64 = 0.02;

/// Where and from what the report was made (printed in its header).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReportContext {
    pub date: String,
    pub machine: String,
    /// The commit the binary was built from (`-dirty` if its tree had uncommitted changes).
    pub commit: String,
    pub command: String,
}

/// The plan and every finished part's result of an output directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub plan: Plan,
    pub parts: BTreeMap<String, PartResult>,
}

impl Results {
    /// The evaluation of `setting` of the part behind `row`, if finished.
    pub fn eval(&self, row: &Row, setting: Setting) -> Option<&EvalRecord> {
        self.parts.get(&row.part)?.eval(setting)
    }
    fn table(&self, id: &str) -> Option<&TableSpec> {
        self.plan.tables.iter().find(|t| t.id == id)
    }
}

/// Reads `OUT/plan.json` and the `result.json` of every part that has one.
pub fn load(out: &Path) -> Result<Results> {
    let plan: Plan = read_json(&plan_path(out))?;
    let mut parts = BTreeMap::new();
    for p in &plan.parts {
        let path = result_path(out, &p.id);
        if path.exists() {
            parts.insert(p.id.clone(), read_json::<PartResult>(&path)?);
        }
    }
    Ok(Results { plan, parts })
}

/// Whether our numbers support a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Supported,
    Contradicted,
    Inconclusive,
    /// A part it needs has not finished.
    NotRun,
    /// Measured, but under a budget too small to judge ([`super::Budget::judges_claims`]).
    NotJudged,
}

impl Verdict {
    /// The verdict in words, as the report writes it.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Supported => "our numbers support it",
            Verdict::Contradicted => "our numbers contradict it",
            Verdict::Inconclusive => {
                "our numbers are inconclusive (the 95% intervals do not decide)"
            }
            Verdict::NotRun => "not measured (a part it needs has not finished)",
            Verdict::NotJudged => {
                "not judged (the budget is too small for its numbers to mean anything)"
            }
        }
    }
}

/// A difference of two measured figures with its 95% interval.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// e.g. `bmssl-paper - metassl, 5w1s`.
    pub what: String,
    /// `accuracy` (fraction; paired over the same test episodes) or `meta-steps/s` (independent).
    pub unit: String,
    pub diff: Interval,
}

/// One of the paper's claims, checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    pub claim: String,
    pub verdict: Verdict,
    pub comparisons: Vec<Comparison>,
}

/// Difference of two independent means.
fn independent(a: &Interval, b: &Interval) -> Interval {
    Interval {
        mean: a.mean - b.mean,
        ci95: (a.ci95 * a.ci95 + b.ci95 * b.ci95).sqrt(),
        n: a.n.min(b.n),
    }
}

fn accuracy_diff(r: &Results, a: &Row, b: &Row, s: Setting) -> Option<Comparison> {
    let diff = paired_difference(r.eval(a, s)?, r.eval(b, s)?)?;
    Some(Comparison {
        what: format!("{} - {}, {s}", a.label, b.label),
        unit: "accuracy".into(),
        diff,
    })
}

/// "greater than zero": supported if every interval lies above 0, contradicted if one lies below.
fn positive(cs: &[Comparison], needed: usize) -> Verdict {
    if cs.len() < needed || needed == 0 {
        Verdict::NotRun
    } else if cs.iter().all(|c| c.diff.mean - c.diff.ci95 > 0.0) {
        Verdict::Supported
    } else if cs.iter().any(|c| c.diff.mean + c.diff.ci95 < 0.0) {
        Verdict::Contradicted
    } else {
        Verdict::Inconclusive
    }
}

/// The four claims of the issue, checked against the results.
pub fn claims(r: &Results) -> Vec<Claim> {
    let mut out = judged_claims(r);
    if !r.plan.budget.judges_claims() {
        for c in &mut out {
            if c.verdict != Verdict::NotRun {
                c.verdict = Verdict::NotJudged;
            }
        }
    }
    out
}

fn judged_claims(r: &Results) -> Vec<Claim> {
    let mut out = Vec::new();
    let five_one = Setting { ways: 5, shots: 1 };

    // 1. BMSSL beats MetaSSL (Table 3), for each BMSSL row, every setting.
    if let Some(t3) = r.table("table3") {
        let metassl = t3.rows.iter().find(|row| row.paper_key == "metassl");
        for bm in t3.rows.iter().filter(|row| row.paper_key == "bmssl") {
            let cs: Vec<Comparison> = metassl
                .map(|m| {
                    t3.settings
                        .iter()
                        .filter_map(|&s| accuracy_diff(r, bm, m, s))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Claim {
                id: format!("{}-beats-metassl", bm.part),
                claim: format!("BMSSL beats MetaSSL ({} vs metassl, Table 3)", bm.label),
                verdict: positive(&cs, t3.settings.len()),
                comparisons: cs,
            });
        }
    }

    // 2. Larger delta helps accuracy and costs speed (Table 7): largest vs smallest delta.
    if let Some(t7) = r.table("table7") {
        let (lo, hi) = (t7.rows.first(), t7.rows.last());
        let mut cs = Vec::new();
        let mut verdict = Verdict::NotRun;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let acc = accuracy_diff(r, hi, lo, five_one);
            let speed = match (r.parts.get(&hi.part), r.parts.get(&lo.part)) {
                (Some(a), Some(b)) => match (&a.speed, &b.speed) {
                    (Some(x), Some(y)) => Some(Comparison {
                        what: format!("{} - {}, meta-steps/s", hi.label, lo.label),
                        unit: "meta-steps/s".into(),
                        diff: independent(x, y),
                    }),
                    _ => None,
                },
                _ => None,
            };
            if let (Some(acc), Some(speed)) = (acc, speed) {
                let helps = acc.diff.mean - acc.diff.ci95 > 0.0;
                let hurts = acc.diff.mean + acc.diff.ci95 < 0.0;
                let slower = speed.diff.mean + speed.diff.ci95 < 0.0;
                let faster = speed.diff.mean - speed.diff.ci95 > 0.0;
                verdict = if helps && slower {
                    Verdict::Supported
                } else if hurts || faster {
                    Verdict::Contradicted
                } else {
                    Verdict::Inconclusive
                };
                cs.push(acc);
                cs.push(speed);
            }
        }
        out.push(Claim {
            id: "larger-delta-helps-accuracy-and-costs-speed".into(),
            claim:
                "A larger delta helps accuracy and costs speed (Table 7, largest vs smallest delta)"
                    .into(),
            verdict,
            comparisons: cs,
        });
    }

    // 3. M1 < M2 < M3 (Table 6).
    if let Some(t6) = r.table("table6") {
        let cs: Vec<Comparison> = t6
            .rows
            .windows(2)
            .filter_map(|w| accuracy_diff(r, &w[1], &w[0], five_one))
            .collect();
        out.push(Claim {
            id: "m1-lt-m2-lt-m3".into(),
            claim: "M1 < M2 < M3: each learning structure beats the simpler one (Table 6)".into(),
            verdict: positive(&cs, t6.rows.len().saturating_sub(1)),
            comparisons: cs,
        });
    }

    // 4. Augmentation level matters little (Table 5): best vs worst level.
    if let Some(t5) = r.table("table5") {
        let measured: Vec<(&Row, &EvalRecord)> = t5
            .rows
            .iter()
            .filter_map(|row| Some((row, r.eval(row, five_one)?)))
            .collect();
        let mut cs = Vec::new();
        let mut verdict = Verdict::NotRun;
        if measured.len() == t5.rows.len() && measured.len() >= 2 {
            let best = measured
                .iter()
                .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
                .expect("non-empty");
            let worst = measured
                .iter()
                .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
                .expect("non-empty");
            if let Some(c) = accuracy_diff(r, best.0, worst.0, five_one) {
                verdict = if c.diff.mean + c.diff.ci95 < LITTLE {
                    Verdict::Supported
                } else if c.diff.mean - c.diff.ci95 > LITTLE {
                    Verdict::Contradicted
                } else {
                    Verdict::Inconclusive
                };
                cs.push(c);
            }
        }
        out.push(Claim {
            id: "augmentation-matters-little".into(),
            claim: format!(
                "The augmentation level matters little (Table 5: best - worst level below {:.0} percentage points)",
                100.0 * LITTLE
            ),
            verdict,
            comparisons: cs,
        });
    }
    out
}

fn acc(e: Option<&EvalRecord>) -> String {
    match e {
        Some(e) => format!("{:.2} ± {:.2}", 100.0 * e.mean, 100.0 * e.ci95),
        None => "not run".into(),
    }
}

fn speed(p: Option<&PartResult>) -> String {
    match p.and_then(|p| p.speed.as_ref()) {
        Some(s) => format!("{:.3} ± {:.3}", s.mean, s.ci95),
        None if p.is_some() => "(no training)".into(),
        None => "not run".into(),
    }
}

/// `x` with `decimals` decimals and a sign, `+0.00` for what rounds to zero (never `-0.00`).
pub fn signed(x: f64, decimals: usize) -> String {
    let text = format!("{x:+.decimals$}");
    if text[1..].chars().all(|c| c == '0' || c == '.') {
        format!("+{}", &text[1..])
    } else {
        text
    }
}

fn diff(c: &Comparison) -> String {
    if c.unit == "accuracy" {
        format!(
            "{} ± {:.2} percentage points",
            signed(100.0 * c.diff.mean, 2),
            100.0 * c.diff.ci95
        )
    } else {
        format!("{} ± {:.3} {}", signed(c.diff.mean, 3), c.diff.ci95, c.unit)
    }
}

fn paper_cell(v: Option<f64>) -> String {
    v.map_or("n/a*".into(), |v| format!("{v:.2}"))
}

/// The definitions of Table 6's structures, as run.
fn structure(label: &str) -> &'static str {
    match label {
        "M1" => "task-specific training from a random initialisation, no experience (`scratch`)",
        "M2" => "one level: theta minimises the inner loss on all pseudo-labelled views directly, no inner loop; used as experience (`onelevel`)",
        "M3" => "BMSSL's bi-level structure: inner loop + bootstrapped outer loop (`bmssl`)",
        _ => "",
    }
}

/// The report text.
pub fn render(r: &Results, ctx: &ReportContext, claims: &[Claim], plots: &[&str]) -> String {
    let b = &r.plan.budget;
    let o = &r.plan.options;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Reproduction report: BMSSL (arXiv 2308.14267), budget `{}`\n",
        b.name
    );
    let _ = writeln!(
        m,
        "Generated {} on {} by a binary built from commit {}: `{}`.\n",
        ctx.date, ctx.machine, ctx.commit, ctx.command
    );
    if let Some(note) = b.too_small_note() {
        let _ = writeln!(m, "> **Warning**: {note}.\n");
    }
    let _ = writeln!(
        m,
        "Dataset `{}`. Every training run: {} meta-steps, seed {}, validation {} on {} 5-way 1-shot episodes (proto mode, validation split). \
Every test figure: {} episodes per setting with {} queries per class from the test split, episode seed {}: every method sees the same episodes, so differences are paired. \
Every figure is a mean followed by the half-width of its 95% interval (1.96 s / sqrt(n), s the sample standard deviation over test episodes, or over training steps for meta-steps/s), accuracies in %. \
Parts finished: {} of {}.\n",
        o.dataset,
        b.meta_steps,
        o.seed,
        if b.validate_every == 0 {
            "at the end".to_string()
        } else {
            format!("every {} meta-steps", b.validate_every)
        },
        b.validation_episodes,
        b.eval_episodes,
        b.queries,
        o.episode_seed,
        r.parts.len(),
        r.plan.parts.len()
    );
    let _ = writeln!(
        m,
        "Raw numbers: `parts/<part>/result.json` (per-episode accuracies included), merged in `results.json`; the comparisons behind each claim in `claims.json`. \
*n/a: {}. The paper ran its ablations (Tables 5-7) on {} only: their paper columns are miniImageNet figures beside our Omniglot ones, so compare orderings and gaps, not values.\n",
        paper::NOT_AVAILABLE,
        paper::dataset_of("table5")
    );

    let _ = writeln!(m, "## Claims\n");
    for c in claims {
        let evidence: Vec<String> = c
            .comparisons
            .iter()
            .map(|x| format!("{} = {}", x.what, diff(x)))
            .collect();
        let _ = write!(m, "- **{}**: {}.", c.claim, c.verdict.words());
        if !evidence.is_empty() {
            let _ = write!(m, " {}.", evidence.join("; "));
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m);

    for t in &r.plan.tables {
        let _ = writeln!(m, "## {}\n", t.title);
        match t.id.as_str() {
            "table3" => {
                let mut head = "| method |".to_string();
                let mut rule = "|---|".to_string();
                for s in &t.settings {
                    let _ = write!(head, " {s} (ours) | {s} (paper) |");
                    rule.push_str("---|---|");
                }
                let _ = writeln!(
                    m,
                    "{head} eval mode | meta-steps | meta-steps/s | part |\n{rule}---|---|---|---|"
                );
                for row in &t.rows {
                    let p = r.parts.get(&row.part);
                    let _ = write!(m, "| {} |", row.label);
                    for &s in &t.settings {
                        let _ = write!(
                            m,
                            " {} | {} |",
                            acc(r.eval(row, s)),
                            paper_cell(paper::table3(&row.paper_key, s))
                        );
                    }
                    let mode = r
                        .plan
                        .part(&row.part)
                        .map_or("?".into(), |p| format!("{:?}", p.eval_mode).to_lowercase());
                    let steps = p.map_or("not run".into(), |p| p.meta_steps.to_string());
                    let _ = writeln!(m, " {mode} | {steps} | {} | `{}` |", speed(p), row.part);
                }
            }
            "table7" => {
                let _ = writeln!(m, "| delta | 5w1s (ours, Omniglot) | paper, miniImageNet (\"Top-5 ACC\") | meta-steps/s (ours) | steps/s (paper, V100) | part |\n|---|---|---|---|---|---|");
                for row in &t.rows {
                    let s = t.settings[0];
                    let _ = writeln!(
                        m,
                        "| {} | {} | {} | {} | {} | `{}` |",
                        row.label,
                        acc(r.eval(row, s)),
                        paper_cell(paper::ablation(&t.id, &row.paper_key, "accuracy")),
                        speed(r.parts.get(&row.part)),
                        paper_cell(paper::ablation(&t.id, &row.paper_key, "speed")),
                        row.part
                    );
                }
            }
            _ => {
                let s = t.settings[0];
                let six = t.id == "table6";
                let _ = writeln!(
                    m,
                    "| {} |{} {s} (ours, Omniglot) | top-1 (paper, miniImageNet) | part |\n|---|{}---|---|---|",
                    if six { "structure" } else { "level" },
                    if six { " definition |" } else { "" },
                    if six { "---|" } else { "" }
                );
                for row in &t.rows {
                    let def = if six {
                        format!(" {} |", structure(&row.label))
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        m,
                        "| {} |{def} {} | {} | `{}` |",
                        row.label,
                        acc(r.eval(row, s)),
                        paper_cell(paper::ablation(&t.id, &row.paper_key, "accuracy")),
                        row.part
                    );
                }
            }
        }
        let _ = writeln!(m);
    }

    let _ = writeln!(m, "## Plots\n");
    if plots.is_empty() {
        let _ = writeln!(m, "(none drawn)\n");
    }
    for p in plots {
        let _ = writeln!(m, "![{p}]({p})\n");
    }
    let _ = writeln!(
        m,
        "## How to read this\n\n\
- Table 3 evaluates each method as it is meant to be used: `adapt` (L inner steps from the checkpoint with a fresh zero classifier) for the methods that meta-learn an initialisation, `proto` (nearest cosine prototype on frozen backbone features) for ProtoNet. \
Both BMSSL targets are rows: `paper` (delta more steps on the support views, as the paper writes it) and `query-step` (then one step on the query views; see docs/training.md). \
Tables 5-7 use the `{}` target.\n\
- meta-steps/s is wall-clock speed on the machine named above, mean over the run's meta-steps; other processes running at the same time slow it down, so compare speeds within one report.\n\
- A claim is *supported* when every interval of its comparisons lies on the claimed side, *contradicted* when one lies on the other side, *inconclusive* otherwise. \
\"Matters little\" means the best and worst augmentation levels differ by less than {:.0} percentage points.\n\
- The budget is far below the paper's: absolute accuracies are not comparable with the paper's column, orderings are what these numbers can test. See docs/reproduce.md.",
        target_name(o.ablation_target),
        100.0 * LITTLE
    );
    m
}

/// Writes `report.md`, `claims.json` and `results.json` in `out` from the JSON there; returns the
/// report's path.
pub fn write(out: &Path, ctx: &ReportContext) -> Result<PathBuf> {
    let results = load(out)?;
    let claims = claims(&results);
    write_json(&out.join("claims.json"), &claims)?;
    write_json(&out.join("results.json"), &results)?;
    let plots: Vec<&str> = [
        PLOT_DELTA_ACCURACY,
        PLOT_DELTA_SPEED,
        PLOT_LEARNING_CURVES,
        PLOT_LOSS_CURVES,
    ]
    .into_iter()
    .filter(|p| out.join(p).exists())
    .collect();
    let path = out.join("report.md");
    crate::io::write_atomic(&path, render(&results, ctx, &claims, &plots).as_bytes())?;
    Ok(path)
}

/// (delta, 5w1s accuracy, meta-steps/s) of one Table 7 row.
pub type DeltaPoint = (f64, Option<Interval>, Option<Interval>);

/// Table 7's points for plotting: (delta, 5w1s accuracy, meta-steps/s), finished parts only.
pub fn delta_points(r: &Results) -> Vec<DeltaPoint> {
    let Some(t7) = r.table("table7") else {
        return Vec::new();
    };
    t7.rows
        .iter()
        .filter_map(|row| {
            let p = r.parts.get(&row.part)?;
            let delta = r.plan.part(&row.part)?.config.bootstrap.bootstrap_steps as f64;
            let a = p.eval(t7.settings[0]).map(|e| Interval {
                mean: e.mean,
                ci95: e.ci95,
                n: e.episodes,
            });
            Some((delta, a, p.speed))
        })
        .collect()
}

/// One part's curves: its id, validation accuracy (step, fraction) and outer loss (step, loss).
pub type Curves = (String, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// Learning curves of the trained parts of Tables 3 and 6: (label, validation points (step,
/// accuracy), outer-loss points (step, loss)).
pub fn learning_curves(r: &Results) -> Vec<Curves> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for t in r
        .plan
        .tables
        .iter()
        .filter(|t| t.id == "table3" || t.id == "table6")
    {
        for row in &t.rows {
            if seen.contains(&row.part) {
                continue;
            }
            seen.push(row.part.clone());
            let Some(p) = r.parts.get(&row.part) else {
                continue;
            };
            if p.meta_steps == 0 {
                continue;
            }
            out.push((
                row.part.clone(),
                p.validation
                    .iter()
                    .map(|v| (v.step as f64, v.val_accuracy))
                    .collect(),
                p.loss_curve.iter().map(|c| (c[0], c[1])).collect(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(mean: f64, ci95: f64) -> Comparison {
        Comparison {
            what: "a - b".into(),
            unit: "accuracy".into(),
            diff: Interval { mean, ci95, n: 10 },
        }
    }

    #[test]
    fn a_claim_is_supported_only_when_every_interval_is_on_its_side() {
        assert_eq!(positive(&[comparison(0.05, 0.01)], 1), Verdict::Supported);
        assert_eq!(
            positive(&[comparison(0.05, 0.01), comparison(0.01, 0.02)], 2),
            Verdict::Inconclusive
        );
        assert_eq!(
            positive(&[comparison(0.05, 0.01), comparison(-0.05, 0.02)], 2),
            Verdict::Contradicted
        );
        assert_eq!(positive(&[comparison(0.05, 0.01)], 2), Verdict::NotRun);
    }

    #[test]
    fn signed_figures_never_show_a_negative_zero() {
        assert_eq!(signed(-1e-17, 2), "+0.00");
        assert_eq!(signed(-0.004, 2), "+0.00");
        assert_eq!(signed(-0.006, 2), "-0.01");
        assert_eq!(signed(1.5, 3), "+1.500");
    }
}

//! `OUT/summary.md` and `OUT/summary.csv`: one row per part (the configuration keys that vary,
//! speed, wall time, every evaluation's accuracy with its 95% interval and its paired difference
//! to the baseline part), read only from the parts' `result.json` and `metrics.jsonl`; plus the
//! points the CLI plots.
//!
//! Over 400 lines: the markdown table, the CSV, the paired differences and the plot points are all
//! computed from the same rows, so they stay in one file (their tests are in `sweep/tests.rs`).

use super::{value_text, Spec, SweepPart};
use crate::reproduce::{
    paired_difference, part_dir, read_json, read_metrics, report::signed, result_path, EvalRecord,
    EvalSpec, Interval, PartResult,
};
use crate::train::ValidationRecord;
use crate::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Learning curves: training-time validation accuracy against meta-step.
pub const PLOT_LEARNING_CURVES: &str = "plots/learning-curves.png";
/// Outer loss against meta-step.
pub const PLOT_LOSS_CURVES: &str = "plots/loss-curves.png";

/// `plots/accuracy-vs-<axis>.png`.
pub fn axis_plot(axis: &str) -> String {
    format!("plots/accuracy-vs-{}.png", super::sanitize(axis))
}

/// One evaluation column: its spec and its name (`val-5w1s-adapt`).
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub spec: EvalSpec,
}

/// A measured accuracy and its paired difference to the baseline part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub accuracy: Interval,
    pub diff: Option<Interval>,
}

/// One part's row.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub variant: String,
    pub axis_values: Vec<(String, toml::Value)>,
    /// The values of [`Summary::varying`], in order.
    pub varying: Vec<String>,
    /// The part's result, if finished (and made with the spec's configuration).
    pub result: Option<PartResult>,
    /// One per [`Summary::columns`].
    pub cells: Vec<Option<Cell>>,
    /// The last training-time validation.
    pub final_validation: Option<ValidationRecord>,
    /// The training-time validation at the last validation within the baseline's training wall
    /// time, and the part's wall time then.
    pub equal_wall: Option<(ValidationRecord, f64)>,
}

/// Everything the summary files show.
#[derive(Clone, Debug)]
pub struct Summary {
    pub origin: String,
    pub baseline: String,
    /// The baseline's training wall seconds.
    pub baseline_wall: Option<f64>,
    /// The configuration keys whose values differ between parts.
    pub varying: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Parts with a result.json for another configuration (ignored).
    pub stale: Vec<String>,
}

fn config_table(p: &SweepPart) -> toml::Table {
    match toml::Value::try_from(&p.config) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// The configuration keys whose values differ between parts (`method` first).
pub fn varying_keys(spec: &Spec) -> Vec<String> {
    let tables: Vec<toml::Table> = spec.parts.iter().map(config_table).collect();
    let mut keys: Vec<String> = tables
        .first()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    keys.retain(|k| tables.iter().any(|t| t.get(k) != tables[0].get(k)));
    keys.sort_by_key(|k| (k != "method", k.clone()));
    keys
}

/// Reads whatever results exist in `out` (never trains).
pub fn collect(out: &Path, spec: &Spec) -> Result<Summary> {
    let mut columns: Vec<Column> = spec
        .validation
        .specs()
        .into_iter()
        .map(|s| Column {
            name: column_name(&s),
            spec: s,
        })
        .collect();
    if !spec.test_parts.is_empty() {
        columns.extend(spec.test.specs().into_iter().map(|s| Column {
            name: column_name(&s),
            spec: s,
        }));
    }
    let varying = varying_keys(spec);
    let mut stale = Vec::new();
    let mut results: Vec<Option<PartResult>> = Vec::new();
    for p in &spec.parts {
        let path = result_path(out, &p.id);
        let r = if path.exists() {
            let r: PartResult = read_json(&path)?;
            if crate::reproduce::config_matches(&r, &p.config) {
                Some(r)
            } else {
                stale.push(p.id.clone());
                None
            }
        } else {
            None
        };
        results.push(r);
    }
    let base_index = spec.parts.iter().position(|p| p.id == spec.baseline);
    let baseline: Option<&PartResult> = base_index.and_then(|i| results[i].as_ref());
    let baseline_wall = baseline
        .filter(|b| b.meta_steps > 0)
        .map(|b| b.train_seconds);
    let mut rows = Vec::new();
    for (p, r) in spec.parts.iter().zip(&results) {
        let table = config_table(p);
        let cells = columns
            .iter()
            .map(|c| {
                let e = r.as_ref()?.find(&c.spec)?;
                Some(Cell {
                    accuracy: accuracy(e),
                    diff: baseline
                        .and_then(|b| b.find(&c.spec))
                        .and_then(|b| paired_difference(e, b)),
                })
            })
            .collect();
        let equal_wall = match (r, baseline_wall) {
            (Some(r), Some(limit)) if !r.validation.is_empty() => {
                equal_wall(&part_dir(out, &p.id), limit)?
            }
            _ => None,
        };
        rows.push(Row {
            id: p.id.clone(),
            variant: p.variant.clone(),
            axis_values: p.axis_values.clone(),
            varying: varying
                .iter()
                .map(|k| table.get(k).map_or(String::new(), value_text))
                .collect(),
            final_validation: r.as_ref().and_then(|r| r.validation.last().cloned()),
            result: r.clone(),
            cells,
            equal_wall,
        });
    }
    Ok(Summary {
        origin: spec.origin.clone(),
        baseline: spec.baseline.clone(),
        baseline_wall,
        varying,
        columns,
        rows,
        stale,
    })
}

fn accuracy(e: &EvalRecord) -> Interval {
    Interval {
        mean: e.mean,
        ci95: e.ci95,
        n: e.episodes,
    }
}

/// `val-5w1s-adapt`, `test-20w1s-adapt-proto`.
pub fn column_name(s: &EvalSpec) -> String {
    s.file
        .trim_start_matches("eval-")
        .trim_end_matches(".json")
        .to_string()
}

/// The last training-time validation of the run in `dir` whose step was reached within `limit`
/// wall seconds (step records carry the wall time, validation records the step).
fn equal_wall(dir: &Path, limit: f64) -> Result<Option<(ValidationRecord, f64)>> {
    let (steps, vals) = read_metrics(&dir.join("metrics.jsonl"))?;
    Ok(vals
        .into_iter()
        .filter_map(|v| {
            let wall = steps.iter().find(|s| s.step == v.step)?.wall_s;
            (wall <= limit + 1e-9).then_some((v, wall))
        })
        .next_back())
}

fn pct(i: &Interval) -> String {
    format!("{:.2} ± {:.2}", 100.0 * i.mean, 100.0 * i.ci95)
}

fn pct_diff(i: &Interval) -> String {
    format!("{} ± {:.2}", signed(100.0 * i.mean, 2), 100.0 * i.ci95)
}

/// The summary as Markdown.
pub fn render_md(s: &Summary, spec: &Spec, plots: &[String]) -> String {
    let mut m = String::new();
    let finished = s.rows.iter().filter(|r| r.result.is_some()).count();
    let _ = writeln!(m, "# Sweep `{}`\n", s.origin);
    let _ = writeln!(
        m,
        "Parts finished: {finished} of {}. Baseline part: `{}`. Validation: {} episodes per setting, {} queries per class, episode seed {} (validation split, every part). {}\
Every accuracy is a mean ± the half-width of its 95% interval (1.96 s / sqrt(n)), in %; Δ is the paired difference to the baseline on the same episodes (mean of per-episode differences ± 1.96 sd / sqrt(n)), in percentage points. meta-steps/s is the mean over the run's steps; parts that ran side by side share the machine.\n",
        s.rows.len(),
        s.baseline,
        spec.validation.episodes,
        spec.validation.queries,
        spec.validation.seed,
        if spec.test_parts.is_empty() {
            String::new()
        } else {
            format!(
                "Test: {} episodes per setting, {} queries per class, episode seed {} (test split, parts {}). ",
                spec.test.episodes,
                spec.test.queries,
                spec.test.seed,
                spec.test_parts.join(", ")
            )
        }
    );
    if !s.stale.is_empty() {
        let _ = writeln!(
            m,
            "Ignored (their result.json is for another configuration): {}.\n",
            s.stale.join(", ")
        );
    }
    let mut head = "| part |".to_string();
    let mut rule = "|---|".to_string();
    for k in &s.varying {
        let _ = write!(head, " {k} |");
        rule.push_str("---|");
    }
    head.push_str(" meta-steps | meta-steps/s | train s | final validation (step) |");
    rule.push_str("---|---|---|---|");
    for c in &s.columns {
        let _ = write!(head, " {} | Δ {} |", c.name, s.baseline);
        rule.push_str("---|---|");
    }
    let _ = writeln!(m, "{head}\n{rule}");
    for r in &s.rows {
        let _ = write!(m, "| `{}` |", r.id);
        for v in &r.varying {
            let _ = write!(m, " {v} |");
        }
        match &r.result {
            Some(p) => {
                let _ = write!(
                    m,
                    " {} | {} | {:.1} | {} |",
                    p.meta_steps,
                    p.speed
                        .map_or("-".into(), |s| format!("{:.3} ± {:.3}", s.mean, s.ci95)),
                    p.train_seconds,
                    r.final_validation.as_ref().map_or("-".into(), |v| format!(
                        "{:.2} ± {:.2} ({})",
                        100.0 * v.val_accuracy,
                        100.0 * v.val_ci95,
                        v.step
                    ))
                );
            }
            None => {
                let _ = write!(m, " not run | | | |");
            }
        }
        for c in &r.cells {
            match c {
                Some(c) => {
                    let _ = write!(
                        m,
                        " {} | {} |",
                        pct(&c.accuracy),
                        c.diff.as_ref().map_or(String::new(), pct_diff)
                    );
                }
                None => m.push_str(" | |"),
            }
        }
        m.push('\n');
    }
    let _ = writeln!(m, "\n## At equal wall-clock\n");
    match s.baseline_wall {
        Some(w) => {
            let _ = writeln!(
                m,
                "Training-time validation accuracy of each part at its last validation reached within the baseline's training time ({w:.1} s). Wall times are measured on whatever machine ran each part, with whatever ran beside it.\n\n| part | step | validation accuracy | wall s |\n|---|---|---|---|"
            );
            for r in &s.rows {
                match &r.equal_wall {
                    Some((v, wall)) => {
                        let _ = writeln!(
                            m,
                            "| `{}` | {} | {:.2} ± {:.2} | {wall:.1} |",
                            r.id,
                            v.step,
                            100.0 * v.val_accuracy,
                            100.0 * v.val_ci95
                        );
                    }
                    None => {
                        let _ = writeln!(m, "| `{}` | - | - | - |", r.id);
                    }
                }
            }
        }
        None => {
            let _ = writeln!(m, "(the baseline has not finished a training run)");
        }
    }
    let _ = writeln!(m, "\n## Plots\n");
    if plots.is_empty() {
        let _ = writeln!(m, "(none drawn)");
    }
    for p in plots {
        let _ = writeln!(m, "![{p}]({p})\n");
    }
    m
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The summary as CSV: one row per part, accuracies and differences in percent, blank where not
/// measured.
pub fn render_csv(s: &Summary) -> String {
    let mut head: Vec<String> = vec!["id".into(), "variant".into()];
    head.extend(s.varying.iter().cloned());
    for h in [
        "meta_steps",
        "meta_steps_per_s",
        "meta_steps_per_s_ci95",
        "train_seconds",
        "final_val_step",
        "final_val_accuracy",
        "final_val_ci95",
    ] {
        head.push(h.into());
    }
    for c in &s.columns {
        for suffix in ["accuracy", "ci95", "diff", "diff_ci95"] {
            head.push(format!("{}_{suffix}", c.name));
        }
    }
    let mut out = head
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let num = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x}"));
    for r in &s.rows {
        let mut f: Vec<String> = vec![r.id.clone(), r.variant.clone()];
        f.extend(r.varying.iter().cloned());
        let p = r.result.as_ref();
        f.push(p.map_or(String::new(), |p| p.meta_steps.to_string()));
        f.push(num(p.and_then(|p| p.speed).map(|s| s.mean)));
        f.push(num(p.and_then(|p| p.speed).map(|s| s.ci95)));
        f.push(num(p.map(|p| p.train_seconds)));
        let v = r.final_validation.as_ref();
        f.push(v.map_or(String::new(), |v| v.step.to_string()));
        f.push(num(v.map(|v| 100.0 * v.val_accuracy)));
        f.push(num(v.map(|v| 100.0 * v.val_ci95)));
        for c in &r.cells {
            f.push(num(c.map(|c| 100.0 * c.accuracy.mean)));
            f.push(num(c.map(|c| 100.0 * c.accuracy.ci95)));
            f.push(num(c.and_then(|c| c.diff).map(|d| 100.0 * d.mean)));
            f.push(num(c.and_then(|c| c.diff).map(|d| 100.0 * d.ci95)));
        }
        out.push_str(&f.iter().map(|x| csv_field(x)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Every plot file a sweep of this spec may have (axis plots, then the curves).
pub fn plot_files(spec: &Spec) -> Vec<String> {
    let mut v: Vec<String> = spec.axes.iter().map(|(k, _)| axis_plot(k)).collect();
    v.push(PLOT_LEARNING_CURVES.into());
    v.push(PLOT_LOSS_CURVES.into());
    v
}

/// Writes `summary.md` (linking the plots that exist in `out`) and `summary.csv`; returns their
/// paths.
pub fn write(out: &Path, spec: &Spec, s: &Summary) -> Result<(PathBuf, PathBuf)> {
    let plots: Vec<String> = plot_files(spec)
        .into_iter()
        .filter(|p| out.join(p).exists())
        .collect();
    let md = out.join("summary.md");
    let csv = out.join("summary.csv");
    crate::io::write_atomic(&md, render_md(s, spec, &plots).as_bytes())?;
    crate::io::write_atomic(&csv, render_csv(s).as_bytes())?;
    Ok((md, csv))
}

/// One line of an accuracy-against-axis plot: its name and (x, mean %, 95% half-width %) points.
pub type AxisLine = (String, Vec<(f64, f64, f64)>);

/// An accuracy-against-axis plot.
#[derive(Clone, Debug)]
pub struct AxisPlot {
    pub axis: String,
    /// The column plotted (the first validation evaluation).
    pub column: String,
    /// For an axis of non-numbers: the value at x = 0, 1, 2...
    pub categories: Option<Vec<String>>,
    /// One line per variant (and combination of the other axes' values).
    pub lines: Vec<AxisLine>,
}

/// The validation accuracy (first validation setting and mode) against each axis.
pub fn axis_plots(s: &Summary, spec: &Spec) -> Vec<AxisPlot> {
    let Some(column) = s.columns.first() else {
        return Vec::new();
    };
    let mut plots = Vec::new();
    for (k, (axis, values)) in spec.axes.iter().enumerate() {
        let numeric: Option<Vec<f64>> = values
            .iter()
            .map(|v| match v {
                toml::Value::Float(f) => Some(*f),
                toml::Value::Integer(i) => Some(*i as f64),
                _ => None,
            })
            .collect();
        let categories = numeric
            .is_none()
            .then(|| values.iter().map(value_text).collect::<Vec<_>>());
        let mut lines: Vec<AxisLine> = Vec::new();
        for r in &s.rows {
            let Some(cell) = r.cells[0] else { continue };
            let Some((_, v)) = r.axis_values.get(k) else {
                continue;
            };
            let pos = values.iter().position(|x| x == v).unwrap_or(0);
            let x = numeric.as_ref().map_or(pos as f64, |n| n[pos]);
            let mut name = r.variant.clone();
            for (j, (key, val)) in r.axis_values.iter().enumerate() {
                if j != k {
                    let _ = write!(name, ", {key}={}", value_text(val));
                }
            }
            let point = (x, 100.0 * cell.accuracy.mean, 100.0 * cell.accuracy.ci95);
            match lines.iter_mut().find(|l| l.0 == name) {
                Some(l) => l.1.push(point),
                None => lines.push((name, vec![point])),
            }
        }
        for l in &mut lines {
            l.1.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        plots.push(AxisPlot {
            axis: axis.clone(),
            column: column.name.clone(),
            categories,
            lines,
        });
    }
    plots
}

/// Learning curves of the finished parts that trained: (id, validation (step, accuracy), outer
/// loss (step, loss)).
pub fn curves(s: &Summary) -> Vec<crate::reproduce::report::Curves> {
    s.rows
        .iter()
        .filter_map(|r| {
            let p = r.result.as_ref().filter(|p| p.meta_steps > 0)?;
            Some((
                r.id.clone(),
                p.validation
                    .iter()
                    .map(|v| (v.step as f64, v.val_accuracy))
                    .collect(),
                p.loss_curve.iter().map(|c| (c[0], c[1])).collect(),
            ))
        })
        .collect()
}

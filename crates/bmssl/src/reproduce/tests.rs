use super::report::{self, ReportContext};
use super::*;
use crate::data::{ImageShape, InMemoryDataset};
use std::collections::HashSet;

/// `classes` classes of `per_class` 28x28 random-stroke images each; `seed` makes the set.
fn synthetic(name: &str, classes: u64, per_class: u64, seed: u64) -> Arc<dyn Dataset> {
    let data = (0..classes)
        .map(|c| {
            (0..per_class)
                .flat_map(|i| {
                    crate::engine::gradcheck::test_values(784, seed * 10_000 + c * 100 + i)
                        .into_iter()
                        .map(|x| if x > 0.6 { 255u8 } else { 0 })
                        .collect::<Vec<u8>>()
                })
                .collect()
        })
        .collect();
    Arc::new(InMemoryDataset::from_classes(name, ImageShape::new(1, 28, 28), data).unwrap())
}

pub(super) fn splits() -> Splits {
    Splits {
        // 60 classes of 6: enough for ProtoNet's 60-way episodes of 1 + 5 images.
        train: synthetic("synthetic/train", 60, 6, 1),
        val: synthetic("synthetic/val", 8, 4, 2),
        // 5w5s with 2 queries needs 7 images per class; 20w1s needs 20 classes.
        test: synthetic("synthetic/test", 24, 7, 3),
    }
}

/// Every number of every JSON file in `dir` (recursively, `results.json` excepted: it only merges
/// the part results), formatted as the report formats accuracies (percent, 2 decimals) and speeds
/// (3 decimals).
fn json_numbers(dir: &Path, found: &mut HashSet<String>) {
    fn walk(v: &serde_json::Value, found: &mut HashSet<String>) {
        match v {
            serde_json::Value::Number(n) => {
                let x = n.as_f64().unwrap();
                // As the report writes them: `-0.00` is `0.00`.
                for f in [format!("{:.2}", 100.0 * x), format!("{x:.3}")] {
                    let zero = f.starts_with('-') && f[1..].chars().all(|c| c == '0' || c == '.');
                    found.insert(if zero { f[1..].to_string() } else { f });
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, found)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_numbers(&path, found);
        } else if path.extension().is_some_and(|e| e == "json")
            && path.file_name().is_some_and(|n| n != "results.json")
        {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            walk(&v, found);
        }
    }
}

/// Every `x ± y` figure of a text: (x without a leading `+`, y).
fn figures(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(" ± ") {
        let left: String = text[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+'))
            .collect::<Vec<char>>()
            .into_iter()
            .rev()
            .collect();
        let right: String = text[i + " ± ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        out.push((left.trim_start_matches('+').to_string(), right));
    }
    out
}

#[test]
fn a_tiny_reproduction_reports_every_table_with_numbers_from_its_own_runs_and_a_rerun_skips_every_part(
) {
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    let plan = Plan::new(
        Budget::tiny(),
        PlanOptions {
            dataset: "synthetic".into(),
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let data = splits();
    let first = run(out, &plan, &data, &mut Quiet).unwrap();
    assert_eq!(first.ran.len(), plan.parts.len());
    let path = report::write(out, &ReportContext::default()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();

    for t in &plan.tables {
        assert!(
            text.contains(&format!("## {}", t.title)),
            "{} missing",
            t.id
        );
        for row in &t.rows {
            assert!(
                text.contains(&format!("| {} |", row.label)),
                "{}",
                row.label
            );
        }
    }
    assert!(!text.contains("not run"), "{text}");
    assert!(text.contains(paper::NOT_AVAILABLE));
    assert!(
        text.contains("49.99") && text.contains("miniImageNet"),
        "Table 5's A2 is the paper's miniImageNet figure, marked as such"
    );
    assert!(
        text.contains("96.02"),
        "the paper's BMSSL 5w1s value is beside ours"
    );

    let mut known = HashSet::new();
    json_numbers(out, &mut known);
    let figs = figures(&text);
    // Table 3: 7 rows x 3 settings + speeds; Tables 5-7: 4 + 3 + 5 accuracies + 5 speeds.
    assert!(figs.len() >= 7 * 3 + 4 + 3 + 10, "{} figures", figs.len());
    for (x, y) in &figs {
        assert!(
            x.parse::<f64>().is_ok(),
            "a figure without a number: {x:?} ± {y:?}"
        );
        assert!(
            known.contains(x) && known.contains(y),
            "{x} ± {y} is not a number of the run's JSON files"
        );
    }
    // Each claim's differences are differences of two part results.
    let claims: Vec<report::Claim> = read_json(&out.join("claims.json")).unwrap();
    assert_eq!(
        claims.len(),
        6,
        "three BMSSL rows (shipped default, paper and query-step targets) + three ablation claims"
    );
    let results = report::load(out).unwrap();
    let m3 = &results.parts["bmssl-paper"];
    let m2 = &results.parts["onelevel"];
    let s = Setting { ways: 5, shots: 1 };
    let c = claims.iter().find(|c| c.id == "m1-lt-m2-lt-m3").unwrap();
    let want = m3.eval(s).unwrap().mean - m2.eval(s).unwrap().mean;
    assert!((c.comparisons[1].diff.mean - want).abs() < 1e-12);
    // Two meta-steps and ten episodes judge nothing, and the report says so first.
    assert!(
        claims
            .iter()
            .all(|c| c.verdict == report::Verdict::NotJudged),
        "{:?}",
        claims.iter().map(|c| c.verdict).collect::<Vec<_>>()
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("> **Warning**: budget `tiny`"), "{md}");

    let before: Vec<Vec<u8>> = plan
        .parts
        .iter()
        .map(|p| std::fs::read(result_path(out, &p.id)).unwrap())
        .collect();
    let second = run(out, &plan, &data, &mut Quiet).unwrap();
    assert!(second.ran.is_empty(), "re-ran {:?}", second.ran);
    assert_eq!(second.skipped.len(), plan.parts.len());
    let after: Vec<Vec<u8>> = plan
        .parts
        .iter()
        .map(|p| std::fs::read(result_path(out, &p.id)).unwrap())
        .collect();
    assert_eq!(before, after);

    // Another budget in the same directory is refused.
    let err = run(
        out,
        &Plan::new(Budget::small(), plan.options.clone()).unwrap(),
        &data,
        &mut Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("budget `tiny`") && err.contains("--out"),
        "{err}"
    );
}

#[test]
fn a_part_killed_after_training_resumes_without_retraining_and_keeps_finished_evaluations() {
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    let plan = Plan::new(Budget::tiny(), PlanOptions::default()).unwrap();
    let part = plan.part("onelevel").unwrap().clone();
    let one = Plan {
        parts: vec![part.clone()],
        ..plan
    };
    let data = splits();
    run(out, &one, &data, &mut Quiet).unwrap();
    // Lose the result (as a kill before its write would): the re-run trains nothing and reuses the
    // cached evaluation, giving the same result.
    let result = std::fs::read(result_path(out, &part.id)).unwrap();
    std::fs::remove_file(result_path(out, &part.id)).unwrap();
    let again = run(out, &one, &data, &mut Quiet).unwrap();
    assert_eq!(again.ran, vec![part.id.clone()]);
    let redone: PartResult = read_json(&result_path(out, &part.id)).unwrap();
    let first: PartResult = serde_json::from_slice(&result).unwrap();
    assert_eq!(redone.evals, first.evals);
    assert_eq!(redone.meta_steps, first.meta_steps);
}

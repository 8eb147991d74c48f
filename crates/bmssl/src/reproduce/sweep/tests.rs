//! Tests of `bmssl sweep`: spec parsing, part expansion, the configuration overlay, resume and the
//! summary. Over 400 lines because every case is its own test; no logic lives here.

use super::summary;
use super::*;
use crate::reproduce::tests::splits;
use crate::reproduce::EvalRecord;

/// A tiny sweep on the synthetic splits: 2 variants x 2 inner learning rates, 2 meta-steps each.
fn tiny_spec(test_parts: &str) -> String {
    format!(
        r#"
[sweep]
baseline = "metassl-inner_lr=0.4"
jobs = 2

[validation]
settings = ["5w1s"]
modes = ["adapt", "proto"]
episodes = 4
queries = 2

[test]
parts = [{test_parts}]
settings = ["5w1s"]
modes = ["adapt-proto"]
episodes = 4
queries = 2

[base]
dataset = "synthetic"
meta_steps = 2
checkpoint_every = 1
keep_checkpoints = 1
validate_every = 1
validation_episodes = 4
validation_mode = "proto"
images_per_batch = 10
tasks_per_batch = 2
inner_steps = 1
bootstrap_steps = 1

[axes]
inner_lr = [0.1, 0.4]

[variants.metassl]
method = "metassl"

[variants.bmssl-q]
target = "query-step"
# The shipped BMSSL's outer loss, spelled out as the paper's so that only the target varies.
outer_loss = "kl"
mu = 1.0
"#
    )
}

fn opts(jobs: usize) -> RunOptions {
    RunOptions {
        jobs,
        threads: 1,
        only: Vec::new(),
    }
}

fn refused(text: &str, key: &str) {
    let err = Spec::parse(text, "s.toml").unwrap_err().to_string();
    assert!(
        err.contains("s.toml") && err.contains(key),
        "expected an error naming `{key}`, got: {err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn variants_times_axes_give_the_parts_and_axis_beats_variant_beats_base() {
    let spec = Spec::parse(
        r#"
[base]
inner_lr = 0.2
outer_lr = 0.01
[axes]
target = ["paper", "query-step"]
inner_steps = [1, 2]
[variants.a]
[variants.b]
method = "protonet"
inner_lr = 0.3
"#,
        "s.toml",
    )
    .unwrap();
    let ids: Vec<&str> = spec.parts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "a-target=paper-inner_steps=1",
            "a-target=paper-inner_steps=2",
            "a-target=query-step-inner_steps=1",
            "a-target=query-step-inner_steps=2",
            "b-target=paper-inner_steps=1",
            "b-target=paper-inner_steps=2",
            "b-target=query-step-inner_steps=1",
            "b-target=query-step-inner_steps=2",
        ]
    );
    let a = spec.part("a-target=query-step-inner_steps=2").unwrap();
    assert_eq!(a.config.method, TrainMethod::Bmssl);
    assert_eq!(a.config.inner.inner_lr, 0.2, "base");
    assert_eq!(a.config.outer.outer_lr, 0.01, "base");
    assert_eq!(a.config.inner.inner_steps, 2, "axis");
    assert_eq!(
        a.config.bootstrap.target,
        crate::meta::Target::QueryStep,
        "axis"
    );
    let b = spec.part("b-target=paper-inner_steps=1").unwrap();
    assert_eq!(b.config.method, TrainMethod::Protonet);
    assert_eq!(b.config.inner.inner_lr, 0.3, "the variant beats the base");
    assert_eq!(
        b.config.task.images_per_batch, 60,
        "the method's own defaults under the overrides"
    );
    assert_eq!(
        spec.baseline, "a-target=paper-inner_steps=1",
        "the first part by default"
    );
    assert_eq!(spec.variants, ["a", "b"]);
    // The axis beats the variant.
    let spec = Spec::parse(
        "[axes]\ninner_lr = [0.5]\n[variants.v]\ninner_lr = 0.3\n",
        "s.toml",
    )
    .unwrap();
    assert_eq!(spec.parts[0].id, "v-inner_lr=0.5");
    assert_eq!(spec.parts[0].config.inner.inner_lr, 0.5);
    // Neither variants nor axes: one part, `base`, with the method's defaults.
    let spec = Spec::parse("[base]\nmeta_steps = 7\n", "s.toml").unwrap();
    assert_eq!(spec.parts.len(), 1);
    assert_eq!(spec.parts[0].id, "base");
    assert_eq!(spec.parts[0].config, {
        let mut edited = TrainConfig::for_method(TrainMethod::Bmssl);
        edited.outer.meta_steps = 7;
        edited
    });
    // Validation for every part, test only for the listed ones; cache names say split, setting, mode.
    let spec = Spec::parse(&tiny_spec("\"bmssl-q-inner_lr=0.1\""), "s.toml").unwrap();
    let files = |id: &str| -> Vec<String> {
        spec.part(id)
            .unwrap()
            .evals
            .iter()
            .map(|e| e.file.clone())
            .collect()
    };
    assert_eq!(
        files("bmssl-q-inner_lr=0.1"),
        [
            "eval-val-5w1s-adapt.json",
            "eval-val-5w1s-proto.json",
            "eval-test-5w1s-adapt-proto.json"
        ]
    );
    assert_eq!(files("metassl-inner_lr=0.1").len(), 2);
    assert_eq!(sanitize("a b/c=1.5"), "a_b_c=1.5");
}

#[test]
fn a_bad_spec_is_refused_before_anything_runs_naming_the_key() {
    refused("[base]\ninner_lrr = 0.1\n", "base.inner_lrr");
    refused("[base]\ninner_lrr = 0.1\n", "did you mean `inner_lr`");
    refused("[variants.v]\nouter_lrr = 0.1\n", "variants.v.outer_lrr");
    refused("[axes]\nstepz = [1]\n", "axes.stepz");
    refused("[axes]\ninner_lr = []\n", "axes.inner_lr");
    refused("[axes]\ninner_lr = 0.1\n", "axes.inner_lr");
    refused("[axes]\ninner_lr = [0.1, -1.0]\n", "axes.inner_lr");
    refused(
        "[axes]\ninner_lr = [0.1, -1.0]\n",
        "part `base-inner_lr=-1`",
    );
    refused(
        "[variants.v]\ninner_steps = \"five\"\n",
        "variants.v.inner_steps",
    );
    refused("[variants.v]\nmethod = \"mamll\"\n", "variants.v.method");
    refused("[base]\nsupport_views = 2\n", "views");
    refused("[sweep]\nbaseline = \"nope\"\n", "sweep.baseline");
    refused("[test]\nparts = [\"nope\"]\n", "test.parts");
    refused("[sweep]\nbasline = \"x\"\n", "basline");
    refused(
        "[validation]\nmodes = [\"adapt-zero\"]\n",
        "validation.modes",
    );
    refused(
        "[validation]\nsettings = [\"5way\"]\n",
        "validation.settings",
    );
    refused("[validation]\nepisodes = 1\n", "validation.episodes");
    refused("[test]\nepisodes = 0\n", "test.episodes");
    refused("[oops]\nx = 1\n", "oops");
    refused(
        "[axes]\nimage_size = [28, 32]\n",
        "`image_size` differs between parts",
    );
    // Two variants whose ids collide after sanitising.
    refused("[variants.\"a b\"]\n[variants.a_b]\n", "given twice");
}

/// (id, every cell) of a summary: the numbers that do not depend on timing.
fn cells(s: &summary::Summary) -> Vec<(String, Vec<Option<summary::Cell>>)> {
    s.rows
        .iter()
        .map(|r| (r.id.clone(), r.cells.clone()))
        .collect()
}

#[test]
fn a_tiny_sweep_runs_summarises_from_its_json_and_a_rerun_skips_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let spec = Spec::parse(&tiny_spec("\"metassl-inner_lr=0.4\""), "tiny.toml").unwrap();
    let data = splits();
    let first = run(out, &spec, &data, &opts(2), &QuietSweep).unwrap();
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.ran.len(), 4);
    assert_eq!(
        std::fs::read_to_string(spec_copy_path(out)).unwrap(),
        spec.text
    );
    let s = summary::collect(out, &spec).unwrap();
    summary::write(out, &spec, &s).unwrap();
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(s.varying, ["method", "inner_lr", "target"]);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with("id,variant,method,inner_lr,target,meta_steps,"),
        "{csv}"
    );
    assert!(md.contains("## At equal wall-clock"), "{md}");
    // Every accuracy shown is the part's evaluation record, every Δ a paired difference of two.
    let base: PartResult = read_json(&result_path(out, "metassl-inner_lr=0.4")).unwrap();
    for p in &spec.parts {
        let r: PartResult = read_json(&result_path(out, &p.id)).unwrap();
        assert_eq!(r.meta_steps, 2);
        let row = s.rows.iter().find(|row| row.id == p.id).unwrap();
        for (c, cell) in s.columns.iter().zip(&row.cells) {
            let e: Option<&EvalRecord> = r.find(&c.spec);
            let cached: Option<EvalRecord> =
                read_json(&part_dir(out, &p.id).join(&c.spec.file)).ok();
            assert_eq!(e, cached.as_ref(), "{} {}", p.id, c.name);
            match (e, cell) {
                (Some(e), Some(cell)) => {
                    assert_eq!(cell.accuracy.mean, e.mean);
                    let text = format!("{:.2} ± {:.2}", 100.0 * e.mean, 100.0 * e.ci95);
                    assert!(md.contains(&text), "{text} missing from {md}");
                    let b = base.find(&c.spec).unwrap();
                    let want: f64 = e
                        .accuracies
                        .iter()
                        .zip(&b.accuracies)
                        .map(|(x, y)| x - y)
                        .sum::<f64>()
                        / e.accuracies.len() as f64;
                    assert!((cell.diff.unwrap().mean - want).abs() < 1e-12);
                }
                (None, None) => assert_eq!(c.spec.split, "test"),
                other => panic!("{}: {other:?}", p.id),
            }
        }
        assert!(row.equal_wall.is_some() || p.id != spec.baseline);
    }
    assert_eq!(summary::curves(&s).len(), 4);
    let axis = summary::axis_plots(&s, &spec);
    assert_eq!(axis.len(), 1);
    assert_eq!(axis[0].lines.len(), 2, "one line per variant");
    assert_eq!(axis[0].lines[0].1.len(), 2);

    // A re-run trains and evaluates nothing.
    let files = |name: &str| -> Vec<Vec<u8>> {
        spec.parts
            .iter()
            .map(|p| std::fs::read(part_dir(out, &p.id).join(name)).unwrap())
            .collect()
    };
    let (results, metrics) = (files("result.json"), files("metrics.jsonl"));
    let second = run(out, &spec, &data, &opts(1), &QuietSweep).unwrap();
    assert!(second.ran.is_empty(), "{:?}", second.ran);
    assert_eq!(second.skipped.len(), 4);
    assert_eq!(files("result.json"), results);
    assert_eq!(files("metrics.jsonl"), metrics);

    // Split and collect: each part on its own, then the summary: the same numbers.
    let split_dir = tempfile::tempdir().unwrap();
    for p in &spec.parts {
        let r = run(
            split_dir.path(),
            &spec,
            &data,
            &RunOptions {
                only: vec![p.id.clone()],
                ..opts(1)
            },
            &QuietSweep,
        )
        .unwrap();
        assert_eq!(r.ran, vec![p.id.clone()]);
    }
    let collected = summary::collect(split_dir.path(), &spec).unwrap();
    assert_eq!(cells(&collected), cells(&s));

    // A part locked by another process is left alone.
    let changed = Spec::parse(
        &tiny_spec("\"metassl-inner_lr=0.4\", \"bmssl-q-inner_lr=0.1\""),
        "tiny.toml",
    )
    .unwrap();
    let lock = lock_part(&part_dir(out, "bmssl-q-inner_lr=0.1"))
        .unwrap()
        .unwrap();
    let r = run(out, &changed, &data, &opts(2), &QuietSweep).unwrap();
    assert_eq!(r.locked, ["bmssl-q-inner_lr=0.1"]);
    assert_eq!(r.skipped.len(), 3);
    drop(lock);

    // A part added to [test] later: only its test evaluation runs, nothing is retrained and its
    // validation evaluations are kept.
    let dir_b = part_dir(out, "bmssl-q-inner_lr=0.1");
    let val_before = std::fs::read(dir_b.join("eval-val-5w1s-adapt.json")).unwrap();
    let r = run(out, &changed, &data, &opts(2), &QuietSweep).unwrap();
    assert_eq!(r.ran, ["bmssl-q-inner_lr=0.1"]);
    assert_eq!(r.skipped.len(), 3);
    assert_eq!(files("metrics.jsonl"), metrics);
    assert_eq!(
        std::fs::read(dir_b.join("eval-val-5w1s-adapt.json")).unwrap(),
        val_before
    );
    assert!(dir_b.join("eval-test-5w1s-adapt-proto.json").exists());
    let s2 = summary::collect(out, &changed).unwrap();
    let row = s2
        .rows
        .iter()
        .find(|r| r.id == "bmssl-q-inner_lr=0.1")
        .unwrap();
    assert!(
        row.cells[2].unwrap().diff.is_some(),
        "paired with the baseline's test evaluation"
    );

    // A spec that changes an existing part's configuration is refused, naming the part.
    let other = tiny_spec("").replace("meta_steps = 2", "meta_steps = 3");
    let other = Spec::parse(&other, "tiny.toml").unwrap();
    let err = run(out, &other, &data, &opts(1), &QuietSweep)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metassl-inner_lr=0.1")
            && err.contains("meta_steps: 2 -> 3")
            && err.contains("--out"),
        "{err}"
    );
    assert!(err.contains("tiny.toml"), "{err}");
}

#[test]
fn a_part_pre_trained_with_bmssl_train_is_adopted_and_only_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let spec = Spec::parse(&tiny_spec(""), "tiny.toml").unwrap();
    let data = splits();
    prepare(out, &spec, true).unwrap();
    let part = &spec.parts[0];
    let pdir = part_dir(out, &part.id);
    // As `bmssl train --config OUT/parts/<id>/config.toml --run-dir OUT/parts/<id> --no-eval` does.
    let cfg = crate::train::RunDir { root: pdir.clone() }
        .load_config()
        .unwrap();
    assert_eq!(cfg, part.config);
    let run_dir = crate::train::RunDir::create(&pdir).unwrap();
    let pool = crate::data::UnlabelledPool::new(data.train.clone());
    crate::train::train(
        &run_dir,
        &cfg,
        &crate::train::TrainingData::Unlabelled(pool),
        None,
        &mut crate::train::Silent,
    )
    .unwrap();
    let metrics = std::fs::read(pdir.join("metrics.jsonl")).unwrap();
    let r = run(
        out,
        &spec,
        &data,
        &RunOptions {
            only: vec![part.id.clone()],
            ..opts(1)
        },
        &QuietSweep,
    )
    .unwrap();
    assert_eq!(r.ran, vec![part.id.clone()]);
    assert_eq!(
        std::fs::read(pdir.join("metrics.jsonl")).unwrap(),
        metrics,
        "nothing retrained"
    );
    let result = finished(out, part).unwrap();
    assert_eq!(result.meta_steps, 2);
    assert_eq!(result.evals.len(), 2);
    assert!(result.evals.iter().all(|e| e.checkpoint_step == Some(2)));
}

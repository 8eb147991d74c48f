//! `bmssl sweep` at the command line: one-line refusals naming the key, `--list`, and the
//! split-and-collect path (each part its own command, then `--summarize`) on a tiny image folder.
//! The sweep's semantics are tested in the library (`bmssl::reproduce::sweep`).

mod common;

use common::*;
use std::path::Path;

fn spec(dir: &Path, data: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[sweep]
baseline = "metassl-inner_lr=0.4"
jobs = 2

[validation]
settings = ["5w1s"]
modes = ["proto"]
episodes = 3
queries = 2

[base]
dataset = "{}"
split = "all"
rotations = false
images_per_batch = 6
tasks_per_batch = 2
views = 3
support_views = 1
query_views = 2
inner_steps = 1
bootstrap_steps = 1
meta_steps = 2
checkpoint_every = 1
validate_every = 1
validation_episodes = 2
validation_mode = "proto"

[axes]
inner_lr = [0.1, 0.4]

[variants.metassl]
method = "metassl"
{extra}
"#,
        data.display()
    );
    let path = dir.join("grid.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_spec_exits_non_zero_with_one_line_naming_the_key_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    let path = spec(dir.path(), &data, "[variants.b]\ninner_lrr = 0.1\n");
    let out = dir.path().join("out");
    let o = run(&[
        "sweep",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("grid.toml") && e.contains("variants.b.inner_lrr") && e.contains("inner_lr"),
        "{e}"
    );
    assert!(!out.exists());

    let path = spec(
        dir.path(),
        &data,
        "[variants.b]\n[test]\nparts = [\"b-inner_lr=9\"]\n",
    );
    let o = run(&["sweep", path.to_str().unwrap(), "--list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("test.parts"), "{}", stderr(&o));
}

#[test]
fn list_prints_the_parts_and_each_part_runs_alone_then_summarize_collects_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("images");
    image_folder(&data);
    let path = spec(dir.path(), &data, "[variants.bmssl]\n");
    let out = dir.path().join("out");
    let (spec_s, out_s) = (path.to_str().unwrap(), out.to_str().unwrap());
    let o = run(&["sweep", spec_s, "--out", out_s, "--list", "--ids"]);
    assert_ok(&o);
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        ids,
        [
            "metassl-inner_lr=0.1",
            "metassl-inner_lr=0.4",
            "bmssl-inner_lr=0.1",
            "bmssl-inner_lr=0.4"
        ]
    );
    let o = run(&["sweep", spec_s, "--out", out_s, "--list"]);
    assert_ok(&o);
    let listing = String::from_utf8_lossy(&o.stdout);
    for id in &ids {
        assert!(
            listing.contains(&format!("--part {id}")),
            "{id} missing from {listing}"
        );
    }
    assert!(!out.exists(), "--list writes nothing");

    for id in &ids {
        let o = run(&["sweep", spec_s, "--out", out_s, "--part", id, "--quiet"]);
        assert_ok(&o);
        assert!(out.join("parts").join(id).join("result.json").exists());
    }
    assert!(
        !out.join("summary.md").exists(),
        "a --part worker writes no summary"
    );
    let o = run(&["sweep", spec_s, "--out", out_s, "--summarize"]);
    assert_ok(&o);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("Parts finished: 4 of 4"), "{md}");
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    for p in [
        "plots/accuracy-vs-inner_lr.png",
        "plots/learning-curves.png",
        "plots/loss-curves.png",
    ] {
        assert!(out.join(p).exists(), "{p}");
        assert!(md.contains(p), "{p} not linked");
    }
    // The full command now finds every part finished.
    let o = run(&["sweep", spec_s, "--out", out_s, "--quiet"]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("0 parts ran, 4 were already finished"),
        "{}",
        stderr(&o)
    );
}

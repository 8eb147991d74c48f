//! `bmssl eval --tune-adapt`: adapt mode's step size and steps chosen on validation episodes,
//! recorded in eval.json, and refused where the choice would be made on the scored episodes.

mod common;

use common::*;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bmssl-eval-tuning")
        .tempdir()
        .unwrap()
}

#[test]
fn the_chosen_step_size_and_steps_are_scored_and_recorded_with_the_whole_grid() {
    let t = tmp();
    let (test, val) = (t.path().join("test"), t.path().join("val"));
    image_folder(&test);
    image_folder(&val);
    let json = t.path().join("eval.json");
    let out = run(&eval_args(
        test.to_str().unwrap(),
        &[
            "--tune-adapt",
            "--tune-dataset",
            val.to_str().unwrap(),
            "--tune-episodes",
            "3",
            "--tune-lrs",
            "0.4,0.1",
            "--tune-steps",
            "0,2",
            "--setting",
            "3w1s,2w2s",
            "--json",
            json.to_str().unwrap(),
        ],
    ));
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("chosen per setting on val"), "{stdout}");
    assert_eq!(stdout.matches("chosen on val").count(), 2, "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for r in doc["results"].as_array().unwrap() {
        let tuning = &r["tuning"];
        assert_eq!(tuning["episodes"], 3);
        assert_eq!(tuning["seed"], 1);
        let grid = tuning["grid"].as_array().unwrap();
        // Sorted: step sizes ascending outermost, steps ascending inside.
        let points: Vec<(f64, u64)> = grid
            .iter()
            .map(|p| (p["lr"].as_f64().unwrap(), p["steps"].as_u64().unwrap()))
            .collect();
        assert_eq!(points, vec![(0.1, 0), (0.1, 2), (0.4, 0), (0.4, 2)]);
        let best = grid
            .iter()
            .map(|p| p["mean"].as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let chosen = &tuning["chosen"];
        let at = grid
            .iter()
            .find(|p| p["lr"] == chosen["lr"] && p["steps"] == chosen["steps"])
            .unwrap();
        assert_eq!(at["mean"].as_f64().unwrap(), best);
        assert_eq!(r["accuracies"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn a_choice_that_would_be_made_on_the_scored_episodes_is_refused() {
    let t = tmp();
    let root = t.path().join("images");
    image_folder(&root);
    let r = root.to_str().unwrap();
    let refused = |extra: &[&str], expected: &[&str]| {
        let out = run(&eval_args(r, extra));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for e in expected {
            assert!(err.contains(e), "{extra:?}: expected {e:?} in {err}");
        }
    };
    refused(&["--tune-adapt"], &["image folder", "--tune-dataset"]);
    refused(
        &[
            "--tune-adapt",
            "--tune-dataset",
            "x",
            "--tune-episodes",
            "1",
        ],
        &["tune_episodes"],
    );
    refused(
        &["--tune-adapt", "--tune-dataset", r],
        &["image folder", "--tune-dataset"],
    );
    refused(
        &["--tune-adapt", "--mode", "proto", "--tune-dataset", "x"],
        &["--mode adapt"],
    );
    // Omniglot's validation split, scored and chosen on with the same episode seed (refused
    // before any data is read).
    let out = run(&[
        "eval",
        "--checkpoint",
        "random",
        "--split",
        "val",
        "--tune-adapt",
        "--seed",
        "1",
        "--data-dir",
        t.path().join("no-data").to_str().unwrap(),
        "--quiet",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("very episodes it scores"), "{err}");
    // Usage errors (clap: exit 2): a grid value without --tune-adapt, or with --adapt-lr.
    let out = run(&eval_args(r, &["--tune-lrs", "0.1"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&eval_args(r, &["--tune-adapt", "--adapt-lr", "0.1"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

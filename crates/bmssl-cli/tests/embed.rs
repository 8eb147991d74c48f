//! `bmssl embed` and `--checkpoint RUN_DIR` end to end on a tiny trained run.

mod common;

use common::*;
use std::path::Path;

fn npy_shape(path: &Path) -> (usize, usize, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    let dims = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = dims
        .split(',')
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let vals = b[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (dims[0], dims[1], vals)
}

#[test]
fn embed_and_eval_take_a_run_directory_and_embed_reads_folders_as_the_loaders_do() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("images");
    image_folder(&data);
    let run_dir = t.path().join("run");
    let out = run(&tiny_train_args(&data, &run_dir));
    assert!(out.status.success(), "{}", stderr(&out));

    // --images: the class folders' files, through adapt's reading (no inversion here: the
    // strokes are white on black).
    let a = t.path().join("a.npy");
    let out = run(&[
        "embed",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--images",
        data.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
        "--batch-size",
        "16",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("final checkpoint") && err.contains("step-0000012.safetensors"),
        "{err}"
    );
    let (n, dim, rows) = npy_shape(&a);
    assert_eq!((n, dim), (40, 64));
    let labels = std::fs::read_to_string(t.path().join("a.npy.labels.csv")).unwrap();
    let lines: Vec<&str> = labels.lines().collect();
    assert_eq!(lines.len(), 41);
    assert_eq!(lines[0], "row,class_index,class,image");
    assert!(
        lines[5].starts_with("4,1,class01,") && lines[5].ends_with("class01/0.png"),
        "{}",
        lines[5]
    );

    // --dataset on the same folder: the same images, the same pipeline, the same bits.
    let b = t.path().join("b.npy");
    let out = run(&[
        "embed",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
        "--batch-size",
        "16",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, _, rows_b) = npy_shape(&b);
    let d = rows
        .iter()
        .zip(&rows_b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert_eq!(d, 0.0, "--images vs --dataset");

    // eval on the run directory records which checkpoint it scored.
    let json = t.path().join("eval.json");
    let out = run(&[
        "eval",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--episodes",
        "4",
        "--queries",
        "2",
        "--mode",
        "proto",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scored = &doc["checkpoint_scored"];
    assert_eq!(scored["which"], "final");
    assert_eq!(scored["step"], 12);
    assert!(scored["file"]
        .as_str()
        .unwrap()
        .ends_with("step-0000012.safetensors"));
}

#[test]
fn embed_errors_are_one_line() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("images");
    image_folder(&data);
    for (args, expected) in [
        (
            vec!["--checkpoint", "random", "--out", "x.txt"],
            "unknown extension",
        ),
        (
            vec!["--checkpoint", t.path().to_str().unwrap(), "--out", "x.npy"],
            "without a usable checkpoint",
        ),
    ] {
        let mut a = vec!["embed", "--images", data.to_str().unwrap()];
        a.extend(args);
        let out = run(&a);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{err}"
        );
    }
}

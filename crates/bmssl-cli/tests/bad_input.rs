//! Issue 11, bad input catalogue: every case makes `bmssl` exit with status 1 (2 for a
//! command-line usage error) and print ONE line on stderr, starting with `error: ` and naming the
//! file, field or value at fault; never a panic, never a silently skipped image.

mod common;

use common::*;
use std::path::Path;

/// Runs `bmssl args`, expects `code` and exactly one stderr line `error: ...` containing every
/// `expected` text; returns that line.
fn fails_with(args: &[&str], code: i32, expected: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "bmssl {args:?}: {err}");
    assert!(!err.contains("panicked"), "bmssl {args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "bmssl {args:?}: not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for e in expected {
        assert!(
            lines[0].contains(e),
            "bmssl {args:?}: expected {e:?} in: {err}"
        );
    }
    // The OS error (if any) is printed once.
    assert!(lines[0].matches("(os error").count() <= 1, "{err}");
    lines[0].to_string()
}

const TINY: &str =
    "--channels 1 --image-size 28 --images-per-batch 6 --tasks-per-batch 2 --views 3 \
     --support-views 1 --query-views 2 --inner-steps 1 --bootstrap-steps 1 --meta-steps 2 \
     --validation-episodes 0 --no-eval --quiet";

/// `bmssl train` on `dataset` with the tiny configuration, plus `extra` arguments.
fn train_fails(dataset: &Path, run_dir: &Path, extra: &[&str], expected: &[&str]) -> String {
    let mut args = vec!["train", "--dataset", dataset.to_str().unwrap()];
    args.extend(TINY.split_whitespace());
    args.extend(["--run-dir", run_dir.to_str().unwrap()]);
    args.extend(extra);
    fails_with(&args, 1, expected)
}

fn tmp(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("bmssl-reliability-{tag}"))
        .tempdir()
        .unwrap()
}

/// A valid folder plus one bad file `class03/<name>` holding `bytes`.
fn folder_with(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let root = dir.join("images");
    image_folder(&root);
    std::fs::write(root.join("class03").join(name), bytes).unwrap();
    root
}

#[test]
fn a_missing_dataset_path_is_named() {
    let t = tmp("missing");
    let missing = t.path().join("no-such-folder");
    train_fails(
        &missing,
        &t.path().join("run"),
        &[],
        &["no-such-folder", "is neither `omniglot`"],
    );
    fails_with(
        &[
            "eval",
            "--checkpoint",
            "random",
            "--dataset",
            missing.to_str().unwrap(),
            "--quiet",
        ],
        1,
        &["no-such-folder", "existing image folder"],
    );
}

#[test]
fn an_empty_class_folder_is_named() {
    let t = tmp("empty");
    let root = t.path().join("images");
    image_folder(&root);
    std::fs::create_dir(root.join("class99")).unwrap();
    train_fails(
        &root,
        &t.path().join("run"),
        &[],
        &["class99", "empty class folder"],
    );
}

#[test]
fn corrupt_png_and_jpeg_files_are_named() {
    let t = tmp("corrupt");
    let root = folder_with(
        t.path(),
        "bad.png",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage",
    );
    train_fails(
        &root,
        &t.path().join("run"),
        &[],
        &["class03/bad.png", "not a readable image"],
    );
    let t = tmp("corrupt-jpeg");
    let root = folder_with(
        t.path(),
        "bad.jpg",
        b"\xff\xd8\xff\xe0\0\x10JFIF\0 truncated",
    );
    train_fails(
        &root,
        &t.path().join("run"),
        &[],
        &["class03/bad.jpg", "not a readable image"],
    );
}

#[test]
fn a_text_file_named_png_is_named() {
    let t = tmp("text");
    let root = folder_with(
        t.path(),
        "notes.png",
        b"these are my notes, not a picture\n",
    );
    train_fails(
        &root,
        &t.path().join("run"),
        &[],
        &["class03/notes.png", "not a readable image"],
    );
}

/// CRC-32 (IEEE), for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn an_image_too_large_to_decode_safely_is_refused_naming_the_limit() {
    let t = tmp("huge");
    // A PNG whose header claims 100000 x 100000 grey pixels (10 GB decoded).
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // A few bytes of (not enough) image data, and the end.
    for (kind, data) in [(&b"IDAT"[..], &b"\x78\x9c\x63\x00\x00"[..]), (b"IEND", b"")] {
        let chunk: Vec<u8> = kind.iter().chain(data).copied().collect();
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    let root = folder_with(t.path(), "huge.png", &png);
    train_fails(
        &root,
        &t.path().join("run"),
        &[],
        &[
            "class03/huge.png",
            "100000x100000",
            "over the decoding limit (16384x16384 pixels, 512 MiB)",
        ],
    );
}

#[test]
fn a_zip_entry_escaping_its_folder_is_refused() {
    use std::io::Write;
    let t = tmp("zip");
    let omni = t.path().join("omniglot");
    std::fs::create_dir_all(&omni).unwrap();
    let mut w =
        zip::ZipWriter::new(std::fs::File::create(omni.join("images_background.zip")).unwrap());
    w.start_file("../../evil.png", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"payload").unwrap();
    w.finish().unwrap();
    fails_with(
        &[
            "eval",
            "--checkpoint",
            "random",
            "--data-dir",
            t.path().to_str().unwrap(),
            "--quiet",
        ],
        1,
        &[
            "images_background.zip",
            "../../evil.png",
            "escapes its folder",
        ],
    );
}

#[test]
fn impossible_task_shapes_are_refused_before_any_evaluation() {
    let t = tmp("shapes");
    let root = t.path().join("images");
    image_folder(&root);
    let eval = |setting: &str, expected: &[&str]| {
        let args = [
            "eval",
            "--checkpoint",
            "random",
            "--dataset",
            root.to_str().unwrap(),
            "--channels",
            "1",
            "--image-size",
            "28",
            "--episodes",
            "4",
            "--queries",
            "1",
            "--quiet",
            "--setting",
            setting,
        ];
        let out = run(&args);
        // Nothing evaluated: the valid first setting printed no result.
        assert!(!String::from_utf8_lossy(&out.stdout).contains("-way"));
        fails_with(&args, 1, expected)
    };
    eval(
        "5w1s,20w1s",
        &["setting 20w1s", "20 is more than the 10 classes"],
    );
    eval(
        "5w1s,5w4s",
        &[
            "setting 5w4s",
            "4 + 1 = 5 images per class",
            "largest class has 4",
        ],
    );
}

#[test]
fn configuration_mistakes_name_the_key() {
    let t = tmp("config");
    let cfg = t.path().join("run.toml");
    std::fs::write(&cfg, "method = \"bmssl\"\ninner_lrr = 0.1\n").unwrap();
    let c = cfg.to_str().unwrap();
    fails_with(
        &["train", "--config", c, "--no-eval"],
        1,
        &[
            "run.toml",
            "line 2 (`inner_lrr = 0.1`)",
            "unknown key `inner_lrr`; did you mean `inner_lr`?",
        ],
    );
    std::fs::write(&cfg, "inner_steps = \"five\"\n").unwrap();
    fails_with(
        &["train", "--config", c, "--no-eval"],
        1,
        &[
            "run.toml",
            "line 1 (`inner_steps = \"five\"`)",
            "invalid type: string \"five\"",
        ],
    );
    std::fs::write(&cfg, "inner_lr = 0.4\ninner_lr = 0.5\n[[").unwrap();
    fails_with(
        &["train", "--config", c, "--no-eval"],
        1,
        &["run.toml", "line "],
    );
    // Flags: a wrong type is a usage error (status 2), still one line.
    fails_with(
        &["train", "--inner-steps", "five"],
        2,
        &[
            "invalid value 'five' for '--inner-steps <INNER_STEPS>'",
            "see --help",
        ],
    );
    fails_with(
        &["train", "--inner-lrr", "0.1"],
        2,
        &["--inner-lrr", "--inner-lr"],
    );
    // SwAV's multi-crop belongs to SwAV, and its small crops must fit the backbone.
    fails_with(
        &[
            "train",
            "--method",
            "simclr",
            "--small-crops",
            "6",
            "--no-eval",
        ],
        1,
        &["multicrop", "--method swav"],
    );
    fails_with(
        &[
            "train",
            "--method",
            "swav",
            "--small-crops",
            "6",
            "--small-crop-size",
            "12",
            "--no-eval",
        ],
        1,
        &["multicrop.size", "12 pixels"],
    );
}

#[test]
fn a_nan_learning_rate_is_refused() {
    let t = tmp("nan");
    let root = t.path().join("images");
    image_folder(&root);
    train_fails(
        &root,
        &t.path().join("run"),
        &["--inner-lr", "NaN"],
        &["`inner_lr`", "must be a positive finite number, got NaN"],
    );
    train_fails(
        &root,
        &t.path().join("run"),
        &["--outer-lr", "inf"],
        &["`outer_lr`", "got inf"],
    );
}

#[test]
fn an_unwritable_run_directory_is_named_once() {
    let t = tmp("unwritable");
    let root = t.path().join("images");
    image_folder(&root);
    let line = train_fails(
        &root,
        Path::new("/proc/forbidden/run"),
        &[],
        &["creating run directory /proc/forbidden/run", "(os error"],
    );
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    // A run directory under a regular file.
    let file = t.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    train_fails(
        &root,
        &file.join("run"),
        &[],
        &["a-file/run", "Not a directory (os error 20)"],
    );
    // Nothing to resume.
    fails_with(
        &[
            "train",
            "--resume",
            t.path().join("nothing").to_str().unwrap(),
        ],
        1,
        &[
            "resuming",
            "nothing/config.toml: No such file or directory (os error 2)",
        ],
    );
}

#[test]
fn a_corrupt_checkpoint_is_named() {
    let t = tmp("ckpt");
    let ckpt = t.path().join("model.safetensors");
    std::fs::write(&ckpt, b"\x10\0\0\0\0\0\0\0{\"a\":1}").unwrap();
    fails_with(
        &["eval", "--checkpoint", ckpt.to_str().unwrap(), "--quiet"],
        1,
        &["model.safetensors", "not a safetensors file"],
    );
}

// ---- Issue 19: nothing lost to a late failure, no input that panics or hangs. ----

/// `bmssl train` on `dataset` with the tiny configuration, `extra` replacing its flags of the same
/// names (`--eval` drops `--no-eval`).
fn train_args<'a>(dataset: &'a Path, run_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--dataset", dataset.to_str().unwrap()];
    let mut tiny = TINY.split_whitespace().peekable();
    while let Some(flag) = tiny.next() {
        let has_value = !matches!(flag, "--no-eval" | "--quiet");
        let value = if has_value { tiny.next() } else { None };
        if extra.contains(&flag) || (flag == "--no-eval" && extra.contains(&"--eval")) {
            continue;
        }
        args.push(flag);
        args.extend(value);
    }
    args.extend(["--run-dir", run_dir.to_str().unwrap()]);
    args.extend(extra.iter().filter(|a| **a != "--eval"));
    args
}

#[test]
fn validation_and_test_settings_are_checked_before_the_first_meta_step() {
    let t = tmp("late");
    let root = t.path().join("images");
    image_folder(&root); // 4 images per class: too few for 15 queries
    let run_dir = t.path().join("run");
    // Validation (5w1s with 15 queries) cannot be drawn.
    fails_with(
        &train_args(&root, &run_dir, &["--validation-episodes", "2"]),
        1,
        &["validation (5w1s, 15 queries per class", "images per class"],
    );
    assert!(!run_dir.join("metrics.jsonl").exists(), "trained anyway");
    // Test settings: the first impossible one is named, nothing trained.
    let args = train_args(
        &root,
        &run_dir,
        &["--eval", "--eval-settings", "5w1s,5w5s,20w1s"],
    );
    fails_with(&args, 1, &["test setting 5w1s (--eval-settings)"]);
    assert!(!run_dir.join("metrics.jsonl").exists(), "trained anyway");
    assert!(!step_checkpoint(&run_dir, 2).exists());
    // One validation episode is no interval: refused, not silently ignored.
    fails_with(
        &train_args(&root, &run_dir, &["--validation-episodes", "1"]),
        1,
        &["`validation_episodes`", "use 0 to turn validation off"],
    );
}

#[test]
fn output_paths_are_checked_before_any_episode_and_written_atomically() {
    let t = tmp("outputs");
    let root = t.path().join("images");
    image_folder(&root);
    let r = root.to_str().unwrap();
    let missing = t.path().join("no-such-dir/x.json");
    let m = missing.to_str().unwrap();
    // --episodes 1000000 would take minutes: the error must come before any of them.
    let t0 = std::time::Instant::now();
    let mut a = eval_args(r, &["--json", m]);
    let at = a.iter().position(|x| *x == "--episodes").unwrap();
    a[at + 1] = "1000000";
    fails_with(
        &a,
        1,
        &["--json", "no-such-dir/x.json", "No such file or directory"],
    );
    assert!(t0.elapsed().as_secs() < 20);
    // A good --json is whole; an unwritable one leaves the previous file as it was.
    let json = t.path().join("eval.json");
    let j = json.to_str().unwrap();
    let out = run(&eval_args(r, &["--json", j]));
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["results"][0]["episodes"], 4);
    assert_eq!(v["results"][0]["accuracies"].as_array().unwrap().len(), 4);
    assert_eq!(temp_files(t.path()), Vec::<String>::new());
    // adapt --out into a missing directory: refused before reading anything.
    fails_with(
        &[
            "adapt",
            "--checkpoint",
            "random",
            "--support",
            r,
            "--predict",
            root.join("class00").to_str().unwrap(),
            "--out",
            m,
        ],
        1,
        &["--out", "no-such-dir/x.json"],
    );
}

#[test]
fn adapt_settings_that_are_not_positive_finite_numbers_are_refused() {
    let t = tmp("adapt-lr");
    let root = t.path().join("images");
    image_folder(&root);
    let r = root.to_str().unwrap();
    let class0 = root.join("class00");
    for lr in ["nan", "inf", "-5", "0"] {
        fails_with(
            &eval_args(r, &[&format!("--adapt-lr={lr}")]),
            1,
            &["`adapt_lr`", "positive finite"],
        );
        fails_with(
            &[
                "adapt",
                "--checkpoint",
                "random",
                "--support",
                r,
                "--predict",
                class0.to_str().unwrap(),
                &format!("--adapt-lr={lr}"),
            ],
            1,
            &["`adapt_lr`", "positive finite"],
        );
    }
    fails_with(
        &eval_args(r, &["--adapt-steps", "1000000000"]),
        1,
        &["`adapt_steps`", "at most 10000"],
    );
}

#[test]
fn absurd_sizes_are_refused_naming_the_field_and_64_bit_values_never_panic() {
    let t = tmp("sizes");
    let root = t.path().join("images");
    image_folder(&root);
    let run_dir = t.path().join("run");
    for (flag, value, field) in [
        ("--image-size", "100000", "`image_size`"),
        ("--image-size", "4294967324", "`image_size`"),
        ("--inner-steps", "1000000", "`inner_steps`"),
        ("--meta-steps", "9223372036854775808", "`meta_steps`"),
        (
            "--checkpoint-every",
            "18446744073709551615",
            "`checkpoint_every`",
        ),
        (
            "--validate-every",
            "9223372036854775808",
            "`validate_every`",
        ),
    ] {
        fails_with(&train_args(&root, &run_dir, &[flag, value]), 1, &[field]);
    }
    let line = fails_with(
        &train_args(
            &root,
            &run_dir,
            &["--views", "3000000000", "--query-views", "2999999999"],
        ),
        1,
        &["`views`"],
    );
    assert!(line.len() < 300, "{line}");
    // A seed >= 2^63 is a valid seed: it trains and resumes.
    assert_ok(&run(&train_args(
        &root,
        &run_dir,
        &["--seed", "18446744073709551615"],
    )));
    let cfg = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(cfg.contains("seed = \"18446744073709551615\""), "{cfg}");
    assert_ok(&run(&resume_args(&run_dir)));
    // Eval and bench bounds.
    let r = root.to_str().unwrap();
    fails_with(
        &eval_args(r, &["--threads", "100000"]),
        1,
        &["`threads`", "at most 1024"],
    );
    fails_with(
        &[
            "eval",
            "--checkpoint",
            "random",
            "--image-size",
            "100000",
            "--quiet",
        ],
        1,
        &["`image_size`", "at most 4096"],
    );
    fails_with(
        &[
            "data",
            "tasks",
            "--dataset",
            r,
            "--bench",
            "--bench-seconds",
            "1e30",
        ],
        1,
        &["`bench-seconds`"],
    );
}

#[test]
fn a_huge_value_is_not_echoed_whole() {
    let huge = "x".repeat(100_000); // one argument may have at most 128 KiB
    let out = run(&[
        "eval",
        "--checkpoint",
        "random",
        "--quiet",
        "--dataset",
        &huge,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", &err[..err.len().min(300)]);
    assert_eq!(err.lines().count(), 1);
    assert!(err.len() < 2000, "{} bytes", err.len());
    assert!(err.contains("characters left out"), "{err}");
    let out = run(&["eval", "--checkpoint", "random", "--setting", &huge]);
    assert!(stderr(&out).len() < 2000);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdout_closed_or_full_never_panics_and_loses_nothing() {
    use std::process::{Command, Stdio};
    let t = tmp("stdout");
    let root = t.path().join("images");
    image_folder(&root);
    let r = root.to_str().unwrap();
    let json = t.path().join("eval.json");
    let args = eval_args(r, &["--json", json.to_str().unwrap()]);
    // A closed pipe: quiet, exit 0, the JSON written.
    let mut child = Command::new(bin())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(json.exists());
    // A full device: one error line, exit 1, the JSON still written.
    std::fs::remove_file(&json).unwrap();
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(bin())
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: writing to standard output: No space left on device"),
            "{err}"
        );
        assert!(json.exists());
    }
    // `train ... | true`: the test results are still written (16 images per class for 15 queries).
    let big = t.path().join("big");
    for c in 0..3 {
        let dir = big.join(format!("c{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..16u32 {
            image::GrayImage::from_fn(28, 28, |x, y| {
                image::Luma([if (x * 7 + y * 3 + i * 5 + c) % 5 == 0 {
                    255
                } else {
                    0
                }])
            })
            .save(dir.join(format!("{i}.png")))
            .unwrap();
        }
    }
    let run_dir = t.path().join("run");
    let a = train_args(
        &big,
        &run_dir,
        &["--eval", "--eval-settings", "2w1s", "--eval-episodes", "2"],
    );
    let mut child = Command::new(bin())
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // train's eval.json holds the record `eval --json` writes, every episode included.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("eval.json")).unwrap()).unwrap();
    let rec = &v["results"][0];
    assert_eq!(rec["setting"], serde_json::json!({ "ways": 2, "shots": 1 }));
    assert_eq!(rec["accuracies"].as_array().unwrap().len(), 2);
    assert_eq!(v["split"], "test");
    // adapt with standard output not open at all: refused, not "success, nothing written".
    let out = Command::new(bin())
        .args([
            "adapt",
            "--checkpoint",
            "random",
            "--support",
            r,
            "--predict",
            root.join("class00").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&out); // /dev/null is open: fine
}

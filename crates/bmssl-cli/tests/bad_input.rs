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

//! Helpers shared by the CLI integration tests: a tiny image-folder dataset, the tiny training
//! configuration, and running the built `bmssl` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `bmssl` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bmssl"))
}

/// A small deterministic generator (splitmix64), so the tests need no RNG crate.
pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `root/class00..class09/{0..3}.png`: 28x28 grey random strokes.
pub fn image_folder(root: &Path) {
    let mut rng = SplitMix(7);
    for c in 0..10 {
        let dir = root.join(format!("class{c:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4 {
            let img = image::GrayImage::from_fn(28, 28, |_, _| {
                image::Luma([if rng.unit() < 0.2 { 255 } else { 0 }])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// The tiny training run of the reliability tests (about a second per session).
pub fn tiny_train_args(dataset: &Path, run_dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into(), "--dataset".into()];
    a.push(dataset.display().to_string());
    for s in [
        "--channels 1 --image-size 28 --images-per-batch 6 --tasks-per-batch 2 --views 3",
        "--support-views 1 --query-views 2 --inner-steps 1 --bootstrap-steps 1 --meta-steps 12",
        "--checkpoint-every 2 --validation-episodes 0 --no-eval --quiet --run-dir",
    ] {
        a.extend(s.split_whitespace().map(String::from));
    }
    a.push(run_dir.display().to_string());
    a
}

/// Arguments that resume the run in `run_dir`.
pub fn resume_args(run_dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into(), "--resume".into()];
    a.push(run_dir.display().to_string());
    a.extend(
        "--no-eval --quiet --validation-episodes 0"
            .split_whitespace()
            .map(String::from),
    );
    a
}

/// Runs `bmssl args...` to completion.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a run succeeded, showing its stderr otherwise.
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "bmssl failed: {}", stderr(o));
}

/// The checkpoint written at `step`.
pub fn step_checkpoint(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("step-{step:07}.safetensors"))
}

/// Names of the temporary files (`.name.tmp-pid`) in the run directory and its checkpoints/.
pub fn temp_files(run_dir: &Path) -> Vec<String> {
    [run_dir.to_path_buf(), run_dir.join("checkpoints")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// `bmssl eval --checkpoint random` (one channel, 4 episodes, 1 query) on the image folder `root`,
/// with `extra` arguments.
pub fn eval_args<'a>(root: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "eval",
        "--checkpoint",
        "random",
        "--dataset",
        root,
        "--channels",
        "1",
        "--episodes",
        "4",
        "--queries",
        "1",
        "--quiet",
    ];
    a.extend(extra);
    a
}

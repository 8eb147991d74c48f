//! Issue 11, "nothing lost": a training run killed with SIGKILL at random moments (also in the
//! middle of a checkpoint write), a run whose newest checkpoints are corrupt, and a run whose
//! checkpoint write fails (file-size limit, as a full disk) all end, once resumed, with the same
//! final checkpoint bytes as a run that was never interrupted.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The dataset and the final checkpoint of one uninterrupted run (computed once, shared by the
/// tests of this file), and how long that run took.
struct Reference {
    _dir: tempfile::TempDir,
    dataset: PathBuf,
    final_bytes: Vec<u8>,
    seconds: f64,
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("bmssl-reliability-ref")
            .tempdir()
            .unwrap();
        let dataset = dir.path().join("images");
        image_folder(&dataset);
        let run_dir = dir.path().join("run");
        let t0 = Instant::now();
        assert_ok(&run(&tiny_train_args(&dataset, &run_dir)));
        let seconds = t0.elapsed().as_secs_f64();
        let final_bytes = std::fs::read(step_checkpoint(&run_dir, 12)).unwrap();
        Reference {
            _dir: dir,
            dataset,
            final_bytes,
            seconds,
        }
    })
}

/// A fresh directory with the tiny run of [`reference`]'s dataset trained to `steps` meta-steps
/// (checkpoints every 2): the first half of the resume tests. Returns the directory (kept alive by
/// the caller) and the run directory in it.
fn first_half(prefix: &str, steps: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut first = tiny_train_args(&reference().dataset, &run_dir);
    let i = first.iter().position(|a| a == "--meta-steps").unwrap();
    first[i + 1] = steps.to_string();
    assert_ok(&run(&first));
    (dir, run_dir)
}

fn spawn(args: &[String]) -> Child {
    Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills `child` once a checkpoint temporary file appears (or after `limit`); returns whether the
/// process was still running when killed.
fn kill_during_checkpoint_write(child: &mut Child, run_dir: &Path, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if temp_files(run_dir).iter().any(|n| n.starts_with(".step-")) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap_or(()); // SIGKILL on Unix
    child.wait().unwrap();
    alive
}

#[test]
fn a_run_killed_at_random_moments_and_resumed_ends_with_the_bytes_of_an_uninterrupted_run() {
    let r = reference();
    let dir = tempfile::Builder::new()
        .prefix("bmssl-reliability-kill")
        .tempdir()
        .unwrap();
    let run_dir = dir.path().join("run");
    let mut rng = SplitMix(11);
    let (mut attempts, mut kills, mut mid_write_leftovers) = (0, 0, 0);
    let budget = Instant::now();
    // Six kills: every third attempt waits for a checkpoint's temporary file, the others kill
    // after a random delay within the length of a whole run.
    while kills < 6 && budget.elapsed() < Duration::from_secs(40) {
        // Killed before config.toml exists, there is nothing to resume: the first command again.
        let args = if run_dir.join("config.toml").exists() {
            resume_args(&run_dir)
        } else {
            tiny_train_args(&r.dataset, &run_dir)
        };
        let mut child = spawn(&args);
        // By attempt, not by kill: a machine where the poll never sees the temporary file still
        // gets its random kills.
        attempts += 1;
        let killed = if attempts % 3 == 1 {
            let k = kill_during_checkpoint_write(&mut child, &run_dir, Duration::from_secs(10));
            if k && temp_files(&run_dir).iter().any(|n| n.starts_with(".step-")) {
                mid_write_leftovers += 1;
            }
            k
        } else {
            std::thread::sleep(Duration::from_secs_f64(rng.unit() * r.seconds));
            let alive = child.try_wait().unwrap().is_none();
            child.kill().unwrap_or(());
            child.wait().unwrap();
            alive
        };
        if killed {
            kills += 1;
        }
        if step_checkpoint(&run_dir, 12).exists() {
            // Finished before the kill landed: start over, so that the kills hit a live run.
            std::fs::remove_dir_all(&run_dir).unwrap();
        }
    }
    assert!(kills >= 5, "only {kills} kills landed");
    eprintln!(
        "{kills} kills in {attempts} attempts, {mid_write_leftovers} left a half-written checkpoint behind"
    );
    let args = if run_dir.join("config.toml").exists() {
        resume_args(&run_dir)
    } else {
        tiny_train_args(&r.dataset, &run_dir)
    };
    assert_ok(&run(&args));
    assert!(
        std::fs::read(step_checkpoint(&run_dir, 12)).unwrap() == r.final_bytes,
        "the resumed run's final checkpoint differs from the uninterrupted run's"
    );
    assert_eq!(
        temp_files(&run_dir),
        Vec::<String>::new(),
        "stale temp files"
    );
    // metrics.jsonl: each of the 12 steps exactly once, in order, whatever was cut mid-line.
    let steps: Vec<u64> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
}

#[test]
fn corrupt_newest_checkpoints_are_skipped_with_a_warning_and_the_run_resumes_from_the_last_good_one(
) {
    let r = reference();
    let (_dir, run_dir) = first_half("bmssl-reliability-corrupt", 6);
    // step 6 truncated (a crash of the file system), step 4 with one flipped bit: back to step 2.
    let six = step_checkpoint(&run_dir, 6);
    let bytes = std::fs::read(&six).unwrap();
    std::fs::write(&six, &bytes[..bytes.len() / 2]).unwrap();
    let four = step_checkpoint(&run_dir, 4);
    let mut bytes = std::fs::read(&four).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x04;
    std::fs::write(&four, &bytes).unwrap();

    let mut resume = resume_args(&run_dir);
    resume.extend(["--meta-steps".into(), "12".into()]);
    let out = run(&resume);
    assert_ok(&out);
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].starts_with("warning: skipping unusable checkpoint: ")
            && warnings[0].contains("step-0000006.safetensors: not a safetensors file"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("step-0000004.safetensors: checksum mismatch"),
        "{}",
        warnings[1]
    );
    assert!(
        std::fs::read(step_checkpoint(&run_dir, 12)).unwrap() == r.final_bytes,
        "the run resumed from step 2 differs from the uninterrupted run"
    );
}

#[test]
fn a_failed_checkpoint_write_stops_the_run_keeps_the_previous_checkpoint_and_loses_nothing() {
    let r = reference();
    let (_dir, run_dir) = first_half("bmssl-reliability-fsize", 4);
    // A file-size limit of 128 KiB: writing the next (1.4 MB) checkpoint fails with EFBIG, as on
    // a full disk. SIGXFSZ is ignored so that the write returns the error instead of killing.
    let mut resume = resume_args(&run_dir);
    resume.extend(["--meta-steps".into(), "12".into()]);
    let script = "trap '' XFSZ; ulimit -f 256; exec \"$0\" \"$@\"";
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .args(&resume)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ")
            && last.contains("step-0000006.safetensors")
            && last.contains("File too large"),
        "{err}"
    );
    assert_eq!(last.matches("os error").count(), 1, "{last}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing half-written, the previous checkpoint intact.
    assert!(!step_checkpoint(&run_dir, 6).exists());
    assert_eq!(temp_files(&run_dir), Vec::<String>::new());
    let c = bmssl::checkpoint::load(&step_checkpoint(&run_dir, 4)).unwrap();
    assert_eq!(c.step, 4);
    // With room again, the run resumes from step 4 and ends as if nothing had happened.
    let out = run(&resume);
    assert_ok(&out);
    assert!(stderr(&out).lines().all(|l| !l.starts_with("warning:")));
    assert!(
        std::fs::read(step_checkpoint(&run_dir, 12)).unwrap() == r.final_bytes,
        "the run resumed after the failed write differs from the uninterrupted run"
    );
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Issue 19: a second `train` on a run directory that a process is training, and a `--resume` of
/// it, are refused with one line naming the holder's PID; the first run (paused meanwhile with
/// SIGSTOP, so the refusals surely land while it runs) ends with the bytes of a run alone and its
/// metrics once each.
#[test]
fn a_second_training_or_a_resume_of_a_directory_in_use_is_refused_and_the_first_run_is_untouched() {
    let r = reference();
    let dir = tempfile::Builder::new()
        .prefix("bmssl-reliability-lock")
        .tempdir()
        .unwrap();
    let run_dir = dir.path().join("run");
    let args = tiny_train_args(&r.dataset, &run_dir);
    let mut landed = false;
    for _attempt in 0..5 {
        let _ = std::fs::remove_dir_all(&run_dir);
        let mut first = spawn(&args);
        // Wait for its first metric line (lock held, config.toml written), then pause it.
        let t0 = Instant::now();
        while !run_dir.join("metrics.jsonl").exists() && t0.elapsed() < Duration::from_secs(30) {
            if first.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        signal(&first, "-STOP");
        if first.try_wait().unwrap().is_some() || step_checkpoint(&run_dir, 12).exists() {
            signal(&first, "-CONT");
            first.wait().unwrap();
            continue; // finished before the pause: try again
        }
        let pid = first.id();
        let lock = std::fs::read_to_string(run_dir.join(".lock")).unwrap();
        assert_eq!(lock.trim(), pid.to_string());
        for (what, a) in [("train", args.clone()), ("resume", resume_args(&run_dir))] {
            let out = run(&a);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert!(
                err.starts_with("error: ")
                    && err.contains(&format!("is in use by process {pid}"))
                    && err.contains("run"),
                "{what}: {err}"
            );
        }
        signal(&first, "-CONT");
        let status = first.wait().unwrap();
        assert!(status.success(), "the first run failed: {status}");
        landed = true;
        break;
    }
    assert!(
        landed,
        "the first run always finished before it could be paused"
    );
    assert!(
        std::fs::read(step_checkpoint(&run_dir, 12)).unwrap() == r.final_bytes,
        "the first run's final checkpoint differs from a run alone"
    );
    let steps: Vec<u64> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
    assert_eq!(
        temp_files(&run_dir),
        Vec::<String>::new(),
        "stale temp files"
    );
}

#[test]
fn a_resume_keeps_the_runs_no_eval_and_a_rerun_of_a_finished_run_says_it_trained_nothing() {
    let (_dir, run_dir) = first_half("bmssl-reliability-plan", 4);
    // `--resume` without `--no-eval`: the run's own choice holds, no test is run.
    let mut resume: Vec<String> = vec!["train".into(), "--resume".into()];
    resume.push(run_dir.display().to_string());
    resume.extend(["--meta-steps".into(), "6".into(), "--quiet".into()]);
    let out = run(&resume);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("resumed from the checkpoint of step 4"),
        "{err}"
    );
    assert!(err.contains("test skipped (--no-eval)"), "{err}");
    assert!(!run_dir.join("eval.json").exists());
    // The same command again: nothing to train, and it says so.
    let out = run(&resume);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("already held this run, finished (6 meta-steps): nothing to train"),
        "{err}"
    );
}

//! A training run's directory: where `train` writes and `--resume`, `eval`, `plot`, `reproduce`
//! and `sweep` read.
//! ```text
//! RUN_DIR/config.toml                  the resolved configuration
//! RUN_DIR/metrics.jsonl                one JSON object per meta-step and per validation
//! RUN_DIR/checkpoints/step-0000100.safetensors   the last `keep_checkpoints` step checkpoints
//! RUN_DIR/checkpoints/best.safetensors best validation accuracy so far (+ best.json)
//! ```
//! (`bmssl train` adds `test-plan.json`, `eval.json` and `plots/`: docs/training.md.)

use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

/// `checkpoints/best.json`: the step and validation accuracy of `best.safetensors`.
#[derive(Serialize, Deserialize)]
struct Best {
    step: u64,
    accuracy: f64,
}

impl RunDir {
    /// Opens (creating if needed) a run directory; fails with a clear message if it cannot be written.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("checkpoints")).map_err(|e| Error::io(root, e))?;
        let probe = root.join(".write-test");
        std::fs::write(&probe, b"").map_err(|e| Error::io(root, e))?;
        let _ = std::fs::remove_file(probe);
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }
    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// The checkpoint written after `step` meta-steps.
    pub fn step_checkpoint(&self, step: u64) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("step-{step:07}.safetensors"))
    }
    /// `best.safetensors`.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.root.join("checkpoints").join("best.safetensors")
    }
    /// Step checkpoints present, newest first.
    pub fn step_checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(self.root.join("checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name
                    .strip_prefix("step-")?
                    .strip_suffix(".safetensors")?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found
    }
    /// The newest checkpoint that loads and verifies; corrupt ones are reported and skipped, so
    /// a crash during a write falls back to the previous good checkpoint.
    pub fn latest_good(&self, warn: &mut dyn FnMut(&str)) -> Option<(Checkpoint, PathBuf)> {
        for (_, path) in self.step_checkpoints() {
            match checkpoint::load(&path) {
                Ok(c) => return Some((c, path)),
                Err(e) => warn(&format!("skipping unusable checkpoint: {e}")),
            }
        }
        None
    }
    /// Removes temporary files left by a process killed in the middle of an atomic write
    /// (`.<name>.tmp-<pid>`, never read: the file they were to replace is intact).
    pub(crate) fn remove_stale_temp_files(&self) {
        for dir in [self.root.clone(), self.root.join("checkpoints")] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if crate::io::is_temp_name(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    /// The configuration saved in the run directory.
    pub fn load_config(&self) -> Result<TrainConfig> {
        let p = self.config_path();
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        TrainConfig::from_toml(&text, &p.display().to_string())
    }
    /// Appends one line to `metrics.jsonl`.
    pub(crate) fn append_metrics(&self, line: &str) -> Result<()> {
        let p = self.metrics_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        // One `write` per line (`O_APPEND`): a line is never split from its newline, nor
        // interleaved with another writer's.
        let mut whole = String::with_capacity(line.len() + 1);
        whole.push_str(line);
        whole.push('\n');
        f.write_all(whole.as_bytes()).map_err(|e| Error::io(&p, e))
    }
    /// Drops metric lines past `step` (left by a run that died after its last checkpoint), and
    /// returns the wall time recorded up to `step`.
    pub(crate) fn truncate_metrics(&self, step: u64) -> Result<f64> {
        let p = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Ok(0.0);
        };
        let mut wall: f64 = 0.0;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                let s = v.get("step").and_then(|s| s.as_u64()).unwrap_or(u64::MAX);
                if s <= step {
                    if let Some(w) = v.get("wall_s").and_then(|w| w.as_f64()) {
                        wall = wall.max(w);
                    }
                }
                s <= step
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        crate::io::write_atomic(&p, out.as_bytes())?;
        Ok(wall)
    }
    /// The best validation so far as `best.json` records it, if at or before `step` (a resumed
    /// run forgets a best recorded after the checkpoint it resumes from).
    pub fn read_best(&self, step: u64) -> Option<(u64, f64)> {
        std::fs::read_to_string(self.best_json())
            .ok()
            .and_then(|t| serde_json::from_str::<Best>(&t).ok())
            .filter(|b| b.step <= step)
            .map(|b| (b.step, b.accuracy))
    }
    /// Records `best.safetensors`' step and accuracy in `best.json` (atomically).
    pub(crate) fn write_best(&self, step: u64, accuracy: f64) -> Result<()> {
        let json = serde_json::to_string(&Best { step, accuracy }).unwrap_or_default();
        crate::io::write_atomic(&self.best_json(), json.as_bytes())
    }
    fn best_json(&self) -> PathBuf {
        self.root.join("checkpoints").join("best.json")
    }
}

//! `bmssl sweep`: a grid of training runs from a spec file, every combination a resumable part,
//! run through the same machinery as `reproduce` ([`super::run_part`]).
//!
//! A [`Spec`] (TOML) holds a base configuration, axes of values and named variants; each part is
//! one variant with one combination of axis values. Its configuration is
//! `TrainConfig::for_method(method)` overlaid with `[base]`, then the variant's keys, then the axis
//! values, read through `TrainConfig`'s own TOML (so every key `TrainConfig` has, now or later, is
//! a sweep key). The layout is `reproduce`'s:
//!
//! ```text
//! OUT/spec.toml                              a copy of the spec
//! OUT/parts/<id>/                            an ordinary `bmssl train` run directory
//! OUT/parts/<id>/eval-<split>-<setting>-<mode>.json   one cached evaluation (per-episode accuracies)
//! OUT/parts/<id>/result.json                 the part is finished (a [`PartResult`])
//! OUT/parts/<id>/.lock                       held (advisory lock) while a process runs the part
//! OUT/summary.md, summary.csv, plots/        written by [`summary::write`] from the JSON above
//! ```
//!
//! See `docs/sweep.md`.
//!
//! Over 400 lines: spec parsing (ordered axes, variants), part expansion, configuration overlay and
//! its checks, and the runner; issue 16 plans to move it, with `reproduce`, into `experiments/`.

pub mod summary;

use super::{
    config_matches, part_dir, read_json, result_path, run_part, write_json, EvalSpec, PartJob,
    PartProgress, PartResult, Splits,
};
use crate::config::{config_keys, nearest_key, TrainConfig, TrainMethod};
use crate::eval::{HeadInit, Mode, Setting};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How an evaluation scores an episode: `adapt` (zero head), `adapt-proto` (adapt mode with the
/// Proto-MAML head) or `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalMode {
    Adapt,
    AdaptProto,
    Proto,
}

impl EvalMode {
    /// The name in a spec and in cache file names.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalMode::Adapt => "adapt",
            EvalMode::AdaptProto => "adapt-proto",
            EvalMode::Proto => "proto",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [EvalMode::Adapt, EvalMode::AdaptProto, EvalMode::Proto]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
    /// The evaluator's mode and head.
    pub fn mode_head(self) -> (Mode, HeadInit) {
        match self {
            EvalMode::Adapt => (Mode::Adapt, HeadInit::Zero),
            EvalMode::AdaptProto => (Mode::Adapt, HeadInit::Proto),
            EvalMode::Proto => (Mode::Proto, HeadInit::Zero),
        }
    }
}

/// The evaluations of one split: every setting in every mode, on the same episodes for every part.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalSet {
    /// `val` or `test`.
    pub split: String,
    pub settings: Vec<Setting>,
    pub modes: Vec<EvalMode>,
    pub episodes: u64,
    pub queries: usize,
    pub seed: u64,
}

impl EvalSet {
    /// One [`EvalSpec`] per (setting, mode), settings outermost.
    pub fn specs(&self) -> Vec<EvalSpec> {
        let mut out = Vec::new();
        for &s in &self.settings {
            for &m in &self.modes {
                let (mode, head) = m.mode_head();
                out.push(EvalSpec {
                    file: format!("eval-{}-{s}-{}.json", self.split, m.as_str()),
                    split: self.split.clone(),
                    setting: s,
                    mode,
                    head,
                    episodes: self.episodes,
                    queries: self.queries,
                    seed: self.seed,
                    extended: true,
                });
            }
        }
        out
    }
}

/// One part of a sweep: a variant with one combination of axis values.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPart {
    /// `variant-key=value-...`, the directory name under `OUT/parts/`.
    pub id: String,
    pub variant: String,
    /// The axis values of this part, in spec order.
    pub axis_values: Vec<(String, toml::Value)>,
    pub config: TrainConfig,
    /// Validation evaluations, then test evaluations (for the parts `[test] parts` lists).
    pub evals: Vec<EvalSpec>,
}

/// A parsed and validated sweep spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The spec file's name (named in every error).
    pub origin: String,
    /// The spec's text (copied to `OUT/spec.toml`).
    pub text: String,
    pub baseline: String,
    /// Parts run side by side (the CLI's `--jobs` overrides).
    pub jobs: usize,
    /// Data directory (the CLI's `--data-dir` is the fallback).
    pub dataset_dir: Option<PathBuf>,
    pub validation: EvalSet,
    pub test: EvalSet,
    /// Ids of the parts evaluated on the test split.
    pub test_parts: Vec<String>,
    pub axes: Vec<(String, Vec<toml::Value>)>,
    /// Variant names, in spec order.
    pub variants: Vec<String>,
    pub parts: Vec<SweepPart>,
}

/// A TOML table that keeps its keys in file order.
#[derive(Clone, Debug, Default)]
struct Ordered(Vec<(String, toml::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    baseline: Option<String>,
    jobs: Option<usize>,
    dataset_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvalSet {
    parts: Option<Vec<String>>,
    settings: Option<Vec<String>>,
    modes: Option<Vec<String>>,
    episodes: Option<u64>,
    queries: Option<usize>,
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    sweep: RawSweep,
    validation: Option<RawEvalSet>,
    test: Option<RawEvalSet>,
    #[serde(default)]
    base: Ordered,
    #[serde(default)]
    axes: Ordered,
    #[serde(default)]
    variants: Ordered,
}

/// The keys of a run's configuration that select the data: every part of a sweep shares them
/// (one set of splits is loaded).
pub const DATA_KEYS: [&str; 5] = ["dataset", "split", "rotations", "image_size", "channels"];

/// An axis or override value as it appears in a part id: strings bare, numbers as written.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// `s` with every character outside `[A-Za-z0-9._=-]` replaced by `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Spec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a spec; every error names `origin` and the key at fault (and the part,
    /// for a configuration that fails validation).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let err = |key: &str, reason: String| Error::config(format!("{origin}: {key}"), reason);
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            let at = e
                .span()
                .filter(|s| s.start <= text.len())
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let content: String = text
                        .lines()
                        .nth(line - 1)
                        .unwrap_or("")
                        .trim()
                        .chars()
                        .take(80)
                        .collect();
                    format!("line {line} (`{content}`): ")
                })
                .unwrap_or_default();
            Error::config(origin, format!("{at}{message}"))
        })?;

        let keys = config_keys();
        let check_key = |section: &str, key: &str| -> Result<()> {
            if keys.iter().any(|k| k == key) {
                return Ok(());
            }
            let hint = match nearest_key(key) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => String::new(),
            };
            Err(err(
                &format!("{section}.{key}"),
                format!("unknown configuration key `{key}`{hint}"),
            ))
        };
        for (k, _) in &raw.base.0 {
            check_key("base", k)?;
        }
        let mut axes = Vec::new();
        for (k, v) in &raw.axes.0 {
            check_key("axes", k)?;
            let values = match v {
                toml::Value::Array(a) if !a.is_empty() => a.clone(),
                toml::Value::Array(_) => {
                    return Err(err(
                        &format!("axes.{k}"),
                        "is empty: give at least one value".into(),
                    ))
                }
                _ => {
                    return Err(err(
                        &format!("axes.{k}"),
                        "must be an array of values, e.g. [0.1, 0.4]".into(),
                    ))
                }
            };
            axes.push((k.clone(), values));
        }
        let mut variants: Vec<(String, Vec<(String, toml::Value)>)> = Vec::new();
        for (name, v) in &raw.variants.0 {
            let toml::Value::Table(t) = v else {
                return Err(err(
                    &format!("variants.{name}"),
                    "must be a table of configuration keys ([variants.NAME])".into(),
                ));
            };
            let section = format!("variants.{name}");
            for k in t.keys() {
                check_key(&section, k)?;
            }
            variants.push((
                name.clone(),
                t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ));
        }
        if variants.is_empty() {
            variants.push(("base".into(), Vec::new()));
        }

        let eval_set = |raw: Option<&RawEvalSet>,
                        section: &str,
                        split: &str,
                        settings: &[&str],
                        episodes: u64|
         -> Result<EvalSet> {
            let settings: Vec<String> = raw
                .and_then(|r| r.settings.clone())
                .unwrap_or_else(|| settings.iter().map(|s| s.to_string()).collect());
            let modes: Vec<String> = raw
                .and_then(|r| r.modes.clone())
                .unwrap_or_else(|| vec!["adapt".into()]);
            let key = |k: &str| format!("{section}.{k}");
            if settings.is_empty() {
                return Err(err(&key("settings"), "is empty".into()));
            }
            if modes.is_empty() {
                return Err(err(&key("modes"), "is empty".into()));
            }
            let settings = settings
                .iter()
                .map(|s| {
                    s.parse::<Setting>().map_err(|e| match e {
                        Error::Config { reason, .. } => err(&key("settings"), reason),
                        e => e,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let modes = modes
                .iter()
                .map(|m| {
                    EvalMode::parse(m).ok_or_else(|| {
                        err(
                            &key("modes"),
                            format!("`{m}` is not one of adapt, adapt-proto, proto"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let episodes = raw.and_then(|r| r.episodes).unwrap_or(episodes);
            if episodes < 2 {
                return Err(err(
                    &key("episodes"),
                    format!("{episodes} is too few for a confidence interval (need at least 2)"),
                ));
            }
            let queries = raw.and_then(|r| r.queries).unwrap_or(15);
            if queries == 0 {
                return Err(err(&key("queries"), "must be at least 1".into()));
            }
            Ok(EvalSet {
                split: split.into(),
                settings,
                modes,
                episodes,
                queries,
                seed: raw.and_then(|r| r.seed).unwrap_or(0),
            })
        };
        if raw.validation.as_ref().is_some_and(|v| v.parts.is_some()) {
            return Err(err(
                "validation.parts",
                "every part is evaluated on the validation split; `parts` belongs in [test]".into(),
            ));
        }
        let validation = eval_set(raw.validation.as_ref(), "validation", "val", &["5w1s"], 500)?;
        let test = eval_set(
            raw.test.as_ref(),
            "test",
            "test",
            &["5w1s", "5w5s", "20w1s"],
            2000,
        )?;
        let test_parts = raw
            .test
            .as_ref()
            .and_then(|t| t.parts.clone())
            .unwrap_or_default();

        // Every combination of axis values, the first axis outermost.
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (k, values) in &axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((k.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }

        let test_specs = test.specs();
        let mut parts: Vec<SweepPart> = Vec::new();
        for (name, overrides) in &variants {
            for combo in &combos {
                let mut id = name.clone();
                for (k, v) in combo {
                    id.push_str(&format!("-{k}={}", value_text(v)));
                }
                let id = sanitize(&id);
                let layers: [(String, &[(String, toml::Value)]); 3] = [
                    ("base".into(), &raw.base.0),
                    (format!("variants.{name}"), overrides),
                    ("axes".into(), combo),
                ];
                let config = part_config(&id, &layers, &err)?;
                if let Some(other) = parts.iter().find(|p| p.id == id) {
                    return Err(err(
                        &format!("variants.{name}"),
                        format!(
                            "part id `{id}` is given twice (variants `{}` and `{name}`): rename a variant",
                            other.variant
                        ),
                    ));
                }
                parts.push(SweepPart {
                    id,
                    variant: name.clone(),
                    axis_values: combo.clone(),
                    config,
                    evals: validation.specs(),
                });
            }
        }
        for t in &test_parts {
            match parts.iter_mut().find(|p| &p.id == t) {
                Some(p) => {
                    for s in &test_specs {
                        if !p.evals.contains(s) {
                            p.evals.push(s.clone());
                        }
                    }
                }
                None => {
                    return Err(err(
                        "test.parts",
                        format!("`{t}` is not a part of this sweep (parts: {})", ids(&parts)),
                    ))
                }
            }
        }
        let baseline = raw
            .sweep
            .baseline
            .clone()
            .unwrap_or_else(|| parts[0].id.clone());
        if !parts.iter().any(|p| p.id == baseline) {
            return Err(err(
                "sweep.baseline",
                format!(
                    "`{baseline}` is not a part of this sweep (parts: {})",
                    ids(&parts)
                ),
            ));
        }
        let jobs = raw.sweep.jobs.unwrap_or(1);
        if jobs == 0 {
            return Err(err("sweep.jobs", "must be at least 1".into()));
        }
        // One set of splits serves every part.
        let first = toml::Value::try_from(&parts[0].config).ok();
        for p in &parts[1..] {
            let this = toml::Value::try_from(&p.config).ok();
            for k in DATA_KEYS {
                let get = |v: &Option<toml::Value>| v.as_ref().and_then(|v| v.get(k).cloned());
                if get(&first) != get(&this) {
                    return Err(err(
                        k,
                        format!(
                            "every part of a sweep reads the same data, but `{k}` differs between parts `{}` and `{}`",
                            parts[0].id, p.id
                        ),
                    ));
                }
            }
        }
        Ok(Spec {
            origin: origin.to_string(),
            text: text.to_string(),
            baseline,
            jobs,
            dataset_dir: raw.sweep.dataset_dir,
            validation,
            test,
            test_parts,
            axes,
            variants: variants.into_iter().map(|(n, _)| n).collect(),
            parts,
        })
    }

    /// The part of this id.
    pub fn part(&self, id: &str) -> Option<&SweepPart> {
        self.parts.iter().find(|p| p.id == id)
    }
}

fn ids(parts: &[SweepPart]) -> String {
    parts
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A part's configuration: `for_method(method)` as a TOML table, overlaid with each layer in
/// turn, read back through `TrainConfig` (unknown keys and wrong types refused) and validated.
fn part_config(
    id: &str,
    layers: &[(String, &[(String, toml::Value)]); 3],
    err: &dyn Fn(&str, String) -> Error,
) -> Result<TrainConfig> {
    // Where each key was last set (the spec key named by an error).
    let set_by = |key: &str| -> Option<String> {
        layers
            .iter()
            .rev()
            .find(|(_, kv)| kv.iter().any(|(k, _)| k == key))
            .map(|(section, _)| format!("{section}.{key}"))
    };
    let method = layers
        .iter()
        .rev()
        .find_map(|(_, kv)| kv.iter().find(|(k, _)| k == "method").map(|(_, v)| v));
    let method = match method {
        None => TrainMethod::Bmssl,
        Some(v) => {
            let name = v.as_str().unwrap_or("");
            name.parse::<TrainMethod>().map_err(|e| {
                let reason = match e {
                    Error::Config { reason, .. } => reason,
                    e => e.to_string(),
                };
                err(
                    &set_by("method").unwrap_or_else(|| "method".into()),
                    format!("part `{id}`: {reason}"),
                )
            })?
        }
    };
    let toml::Value::Table(mut table) = toml::Value::try_from(TrainConfig::for_method(method))
        .map_err(|e| Error::config("config", e.to_string()))?
    else {
        return Err(Error::config("config", "does not serialise to a table"));
    };
    let defaults = table.clone();
    for (_, kv) in layers {
        for (k, v) in kv.iter() {
            table.insert(k.clone(), v.clone());
        }
    }
    let config: TrainConfig =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let message = e.message().trim().replace('\n', " ");
                // The deserializer does not name the key: find the value that fails on its own.
                let key = layers.iter().rev().find_map(|(section, kv)| {
                    kv.iter().find_map(|(k, v)| {
                        let mut one = defaults.clone();
                        one.insert(k.clone(), v.clone());
                        toml::Value::Table(one)
                            .try_into::<TrainConfig>()
                            .is_err()
                            .then(|| format!("{section}.{k}"))
                    })
                });
                err(
                    &key.unwrap_or_else(|| "configuration".into()),
                    format!("part `{id}`: {message}"),
                )
            })?;
    config.validate().map_err(|e| match e {
        Error::Config { field, reason } => err(
            &set_by(&field).unwrap_or(field),
            format!("part `{id}`: {reason}"),
        ),
        e => e,
    })?;
    Ok(config)
}

/// `OUT/spec.toml`.
pub fn spec_copy_path(out: &Path) -> PathBuf {
    out.join("spec.toml")
}

/// Refuses parts whose directory already holds a run of another configuration (compared parsed:
/// a key added to the toolkit later reads as its default). Such a part would otherwise resume
/// another configuration's training or keep its stale results.
pub fn check_existing(out: &Path, spec: &Spec) -> Result<()> {
    let mut stale = Vec::new();
    for p in &spec.parts {
        let path = part_dir(out, &p.id).join("config.toml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match TrainConfig::from_toml(&text, &path.display().to_string()) {
            Ok(c) if c == p.config => {}
            Ok(c) => stale.push(format!("`{}` ({})", p.id, differences(&c, &p.config))),
            Err(e) => stale.push(format!("`{}` ({e})", p.id)),
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    Err(Error::config(
        format!("{}: parts", spec.origin),
        format!(
            "{} already holds other configurations for {}: use another --out, or remove those part directories to re-run them",
            out.display(),
            stale.join(", ")
        ),
    ))
}

/// `key: old -> new` for every key that differs.
fn differences(old: &TrainConfig, new: &TrainConfig) -> String {
    let (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) =
        (toml::Value::try_from(old), toml::Value::try_from(new))
    else {
        return "differs".into();
    };
    let d: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {} -> {}",
                a.get(k).map_or("(none)".into(), value_text),
                value_text(v)
            )
        })
        .collect();
    d.join(", ")
}

/// Writes `OUT/spec.toml` and each part's `config.toml` that is not there yet (so that a part can
/// be pre-trained with `bmssl train --config OUT/parts/<id>/config.toml --run-dir OUT/parts/<id>`),
/// after [`check_existing`].
pub fn prepare(out: &Path, spec: &Spec, write_configs: bool) -> Result<()> {
    check_existing(out, spec)?;
    std::fs::create_dir_all(out.join("parts")).map_err(|e| Error::io(out, e))?;
    crate::io::write_atomic(&spec_copy_path(out), spec.text.as_bytes())?;
    if write_configs {
        for p in &spec.parts {
            let dir = part_dir(out, &p.id);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let path = dir.join("config.toml");
            if !path.exists() {
                crate::io::write_atomic(&path, p.config.to_toml().as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Whether a stored result is the finished work of `part`: same configuration (parsed) and every
/// evaluation the spec asks of it present.
pub fn is_done(result: &PartResult, part: &SweepPart) -> bool {
    config_matches(result, &part.config) && part.evals.iter().all(|s| result.find(s).is_some())
}

/// The finished result of `part` in `out`, if there is one.
pub fn finished(out: &Path, part: &SweepPart) -> Option<PartResult> {
    read_json::<PartResult>(&result_path(out, &part.id))
        .ok()
        .filter(|r| is_done(r, part))
}

/// What happened to one part.
#[derive(Debug)]
pub enum PartStatus {
    /// Trained (or resumed) and evaluated now.
    Ran(Box<PartResult>),
    /// Finished earlier.
    Skipped,
    /// Another process holds the part's lock.
    Locked,
    Failed(Error),
}

/// What a sweep reports as it goes (called from the worker threads).
pub trait SweepProgress: Sync {
    /// Part `index` of `total` is starting; returns its training and evaluation progress.
    fn started<'a>(
        &'a self,
        index: usize,
        total: usize,
        part: &'a SweepPart,
    ) -> Box<dyn PartProgress + 'a>;
    /// Part `index` of `total` ended so.
    fn ended(&self, index: usize, total: usize, part: &SweepPart, status: &PartStatus);
}

/// A progress display that shows nothing.
pub struct QuietSweep;
struct QuietPart;
impl crate::train::Observer for QuietPart {}
impl PartProgress for QuietPart {}
impl SweepProgress for QuietSweep {
    fn started<'a>(&'a self, _: usize, _: usize, _: &'a SweepPart) -> Box<dyn PartProgress + 'a> {
        Box::new(QuietPart)
    }
    fn ended(&self, _: usize, _: usize, _: &SweepPart, _: &PartStatus) {}
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Parts run side by side.
    pub jobs: usize,
    /// Threads of each part's own thread pool.
    pub threads: usize,
    /// Run only these part ids (`--part`); all when empty.
    pub only: Vec<String>,
}

/// Which parts ran, were skipped (finished earlier), were locked by another process, or failed
/// (with their errors, in part order); parts not started after a failure are in none.
#[derive(Debug, Default)]
pub struct SweepRun {
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub locked: Vec<String>,
    pub failed: Vec<(String, Error)>,
}

/// Runs the unfinished parts of `spec` in `out` (all, or `opts.only`), `opts.jobs` at a time,
/// each in its own thread pool. The first failure stops new parts from starting; running ones
/// finish. Refuses, before anything runs, a part directory holding another configuration.
pub fn run(
    out: &Path,
    spec: &Spec,
    splits: &Splits,
    opts: &RunOptions,
    progress: &dyn SweepProgress,
) -> Result<SweepRun> {
    for id in &opts.only {
        if spec.part(id).is_none() {
            return Err(Error::config(
                "--part",
                format!(
                    "`{id}` is not a part of {} (parts: {})",
                    spec.origin,
                    ids(&spec.parts)
                ),
            ));
        }
    }
    prepare(out, spec, false)?;
    let todo: Vec<(usize, &SweepPart)> = spec
        .parts
        .iter()
        .enumerate()
        .filter(|(_, p)| opts.only.is_empty() || opts.only.contains(&p.id))
        .collect();
    let total = spec.parts.len();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let statuses: Mutex<Vec<(usize, String, PartStatus)>> = Mutex::new(Vec::new());
    let workers = opts.jobs.max(1).min(todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(opts.threads.max(1))
                    .build();
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(index, part)) = todo.get(i) else {
                        break;
                    };
                    let status = match &pool {
                        Ok(pool) => {
                            pool.install(|| run_one(out, spec, index, part, splits, progress))
                        }
                        Err(e) => PartStatus::Failed(Error::config(
                            "threads",
                            format!("cannot start a thread pool: {e}"),
                        )),
                    };
                    if matches!(status, PartStatus::Failed(_)) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    progress.ended(index, total, part, &status);
                    statuses.lock().unwrap_or_else(|e| e.into_inner()).push((
                        index,
                        part.id.clone(),
                        status,
                    ));
                }
            });
        }
    });
    let mut statuses = statuses.into_inner().unwrap_or_else(|e| e.into_inner());
    statuses.sort_by_key(|s| s.0);
    let mut r = SweepRun::default();
    for (_, id, status) in statuses {
        match status {
            PartStatus::Ran(_) => r.ran.push(id),
            PartStatus::Skipped => r.skipped.push(id),
            PartStatus::Locked => r.locked.push(id),
            PartStatus::Failed(e) => r.failed.push((id, e)),
        }
    }
    Ok(r)
}

/// The advisory lock of a part directory, held while the returned file is open; None when
/// another process holds it.
fn lock_part(dir: &Path) -> Result<Option<crate::lock::DirLock>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(crate::lock::try_lock(dir)?.ok())
}

fn run_one(
    out: &Path,
    spec: &Spec,
    index: usize,
    part: &SweepPart,
    splits: &Splits,
    progress: &dyn SweepProgress,
) -> PartStatus {
    if finished(out, part).is_some() {
        return PartStatus::Skipped;
    }
    let dir = part_dir(out, &part.id);
    let _lock = match lock_part(&dir) {
        Ok(Some(f)) => f,
        Ok(None) => return PartStatus::Locked,
        Err(e) => return PartStatus::Failed(e),
    };
    // Another process may have finished it while we looked.
    if finished(out, part).is_some() {
        return PartStatus::Skipped;
    }
    let job = PartJob {
        id: &part.id,
        config: &part.config,
        budget: "sweep",
        curve_queries: spec.validation.queries,
        evals: &part.evals,
    };
    let mut p = progress.started(index, spec.parts.len(), part);
    let result = run_part(&dir, &job, splits, p.as_mut()).and_then(|mut r| {
        // Keep evaluations an earlier spec asked for (e.g. a part dropped from [test]).
        if let Ok(old) = read_json::<PartResult>(&result_path(out, &part.id)) {
            if config_matches(&old, &part.config) {
                for e in old.evals {
                    if !r.evals.iter().any(|x| same_eval(x, &e)) {
                        r.evals.push(e);
                    }
                }
            }
        }
        write_json(&result_path(out, &part.id), &r)?;
        Ok(r)
    });
    drop(p);
    match result {
        Ok(r) => PartStatus::Ran(Box::new(r)),
        Err(e) => PartStatus::Failed(e),
    }
}

fn same_eval(a: &super::EvalRecord, b: &super::EvalRecord) -> bool {
    a.split == b.split
        && a.setting == b.setting
        && a.mode == b.mode
        && a.head == b.head
        && a.episodes == b.episodes
        && a.queries == b.queries
        && a.episode_seed == b.episode_seed
}

/// Threads per part for `jobs` parts side by side on `cores` cores (at least 1).
pub fn threads_per_part(cores: usize, jobs: usize) -> usize {
    (cores / jobs.max(1)).max(1)
}

#[cfg(test)]
mod tests;

//! Checkpoints: safetensors files that PyTorch can read (`safetensors.torch.load_file`).
//!
//! Tensors: every parameter under the reference's name (`conv0.weight`, ..., `classifier.bias`),
//! and the outer optimiser's moments as `optimizer.m/<name>`, `optimizer.v/<name>`. Metadata
//! (strings): format version, architecture, adaptation settings, method, step, seed, optimiser
//! scalars, the resolved run configuration, its hash, and a SHA-256 checksum over all of it, so a
//! truncated or corrupted file is detected rather than trusted.
//!
//! Files are written atomically ([`crate::io::write_atomic`]): a temporary file in the same
//! directory, flushed to disk, then renamed over the target, so a crash mid-write leaves the
//! previous checkpoint intact.
//!
//! Over 400 lines: the format (write, read, verify every field and the checksum) and finding the
//! checkpoint in a run directory belong together; about 190 lines are tests.

use crate::meta::InnerLoop;
use crate::model::{ArchSpec, Learner};
use crate::optim::{Optimizer, OptimizerKind};
use crate::{Error, Result};
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Format tag stored in every checkpoint.
pub const FORMAT: &str = "bmssl-checkpoint-v1";

/// Everything a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub arch: ArchSpec,
    /// Flat parameters in the learner's layout.
    pub params: Vec<f32>,
    /// How the learner adapts to a new task: the inner loop it was meta-trained with.
    pub adapt: InnerLoop,
    /// Training method that produced it (`bmssl`, `metassl`, ...; `random` for an untrained init).
    pub method: String,
    /// Meta-steps completed.
    pub step: u64,
    /// Run seed: with `step`, the whole random state (every draw is derived from both).
    pub seed: u64,
    pub optimizer: Option<Optimizer>,
    /// The resolved run configuration (TOML), empty when not from a training run.
    pub config_toml: String,
    /// Training state outside the learner (the self-supervised baselines' momentum encoder and
    /// queue), stored as 1-D tensors `state/<name>`, so that a resumed run is bit-identical.
    pub state: BTreeMap<String, Vec<f32>>,
}

#[derive(Serialize, Deserialize)]
struct OptimizerScalars {
    kind: OptimizerKind,
    lr: f64,
    t: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    momentum: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    weight_decay: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// SHA-256 over the metadata (sorted, without the checksum) and the tensors (sorted by name).
fn checksum(
    meta: &BTreeMap<String, String>,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
) -> String {
    let mut h = Sha256::new();
    for (k, v) in meta.iter().filter(|(k, _)| k.as_str() != "checksum") {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    for (name, (shape, bytes)) in tensors {
        h.update(name.as_bytes());
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a configuration text, short form, for "is this the same run?" checks.
pub fn config_hash(config_toml: &str) -> String {
    Sha256::digest(config_toml.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serialises a checkpoint to bytes.
pub fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    let learner = Learner::new(ckpt.arch.clone())?;
    if ckpt.params.len() != learner.num_params() {
        return Err(Error::shape(
            "checkpoint",
            format!(
                "{} parameters for a layout of {}",
                ckpt.params.len(),
                learner.num_params()
            ),
        ));
    }
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for e in &learner.layout.entries {
        tensors.insert(
            e.name.clone(),
            (e.shape.clone(), f32_bytes(&ckpt.params[e.range()])),
        );
        if let Some(o) = ckpt.optimizer.as_ref() {
            if o.m.len() == ckpt.params.len() {
                tensors.insert(
                    format!("optimizer.m/{}", e.name),
                    (e.shape.clone(), f32_bytes(&o.m[e.range()])),
                );
            }
            if o.v.len() == ckpt.params.len() {
                tensors.insert(
                    format!("optimizer.v/{}", e.name),
                    (e.shape.clone(), f32_bytes(&o.v[e.range()])),
                );
            }
        }
    }
    for (name, v) in &ckpt.state {
        tensors.insert(format!("state/{name}"), (vec![v.len()], f32_bytes(v)));
    }
    let json = |v: &dyn erased::Json| v.to_json();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("arch".to_string(), json(&ckpt.arch));
    meta.insert("adapt".to_string(), json(&ckpt.adapt));
    meta.insert("method".to_string(), ckpt.method.clone());
    meta.insert("step".to_string(), ckpt.step.to_string());
    meta.insert("seed".to_string(), ckpt.seed.to_string());
    meta.insert("config_toml".to_string(), ckpt.config_toml.clone());
    meta.insert("config_hash".to_string(), config_hash(&ckpt.config_toml));
    if let Some(o) = &ckpt.optimizer {
        meta.insert(
            "optimizer".to_string(),
            json(&OptimizerScalars {
                kind: o.kind,
                lr: o.lr,
                t: o.t,
                momentum: o.momentum,
                weight_decay: o.weight_decay,
            }),
        );
    }
    meta.insert("checksum".to_string(), checksum(&meta, &tensors));
    Ok(serialize_sorted(&meta, &tensors))
}

/// The safetensors layout (8-byte little-endian header length, JSON header padded with spaces to
/// a multiple of 8, then the raw data), written with sorted keys so that the same checkpoint is
/// always the same bytes (the `safetensors` crate's writer orders metadata by a hash map).
fn serialize_sorted(
    meta: &BTreeMap<String, String>,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(meta).expect("strings serialise"),
    );
    let mut offset = 0usize;
    for (name, (shape, bytes)) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()] }),
        );
        offset += bytes.len();
    }
    let mut text = serde_json::to_string(&header).expect("JSON values serialise");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
    for (_, bytes) in tensors.values() {
        out.extend(bytes);
    }
    out
}

mod erased {
    /// Object-safe JSON serialisation for the metadata helper.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).expect("metadata types always serialise")
        }
    }
}

/// Writes a checkpoint atomically (temporary file, fsync, rename, fsync of the directory).
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let bytes = to_bytes(ckpt)?;
    crate::io::write_atomic(path, &bytes)
}

/// Reads and verifies a checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes).map_err(|reason| Error::corrupt(path, reason))
}

/// A checkpoint found from what a user passed: a file, or a run directory.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The checkpoint file.
    pub path: std::path::PathBuf,
    /// The checkpoint, loaded and verified.
    pub checkpoint: Checkpoint,
    /// `Some("final")` when `path` came from a run directory (its newest good step checkpoint,
    /// what `bmssl train` evaluates), `Some("best")` when the run directory held only
    /// `best.safetensors`; `None` for a file.
    pub which: Option<&'static str>,
    /// A sentence for people saying which checkpoint was chosen and what else is there
    /// (empty for a file).
    pub note: String,
}

/// Loads `path`: a checkpoint file, or a run directory (`RUN_DIR` or `RUN_DIR/checkpoints`),
/// in which case its final checkpoint (the newest step checkpoint that verifies; corrupt ones
/// are skipped, as `--resume` skips them) is used, or `best.safetensors` when there is no step
/// checkpoint. Errors name the path.
pub fn resolve(path: &Path) -> Result<Resolved> {
    if !path.is_dir() {
        return Ok(Resolved {
            checkpoint: load(path)?,
            path: path.to_path_buf(),
            which: None,
            note: String::new(),
        });
    }
    let root = if path.join("checkpoints").is_dir() {
        path.to_path_buf()
    } else if path.file_name().is_some_and(|n| n == "checkpoints") {
        path.parent().unwrap_or(path).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let run = crate::train::RunDir { root: root.clone() };
    let best = run.best_checkpoint();
    let best_step = || {
        std::fs::read_to_string(root.join("checkpoints/best.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
    };
    let mut skipped = Vec::new();
    if let Some((checkpoint, file)) = run.latest_good(&mut |w| skipped.push(w.to_string())) {
        let mut note = format!(
            "run directory {}: using its final checkpoint {} (step {})",
            root.display(),
            file.display(),
            checkpoint.step
        );
        if best.is_file() {
            note.push_str(&format!(
                "; its best validation checkpoint{} is {}",
                best_step()
                    .map(|s| format!(" (step {s})"))
                    .unwrap_or_default(),
                best.display()
            ));
        }
        for w in skipped {
            note.push_str(&format!("; {w}"));
        }
        return Ok(Resolved {
            path: file,
            checkpoint,
            which: Some("final"),
            note,
        });
    }
    if best.is_file() {
        return Ok(Resolved {
            checkpoint: load(&best)?,
            note: format!(
                "run directory {}: no step checkpoint, using its best validation checkpoint {}",
                root.display(),
                best.display()
            ),
            path: best,
            which: Some("best"),
        });
    }
    Err(Error::dataset(
        path.display().to_string(),
        "is a directory without a usable checkpoint (expected a checkpoint file, or a run \
         directory holding checkpoints/step-*.safetensors or checkpoints/best.safetensors)",
    ))
}

/// Parses and verifies checkpoint bytes; the error says what is wrong.
pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a safetensors file ({e})"))?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a safetensors file ({e})"))?;
    // The checksum covers the header's content, not its layout: the padding after the JSON must be
    // spaces (as the format says), so that no byte of the file can change unnoticed.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as usize;
    let header_bytes = &bytes[8..8 + header_len];
    let json_end = header_bytes.iter().rposition(|&b| b == b'}').unwrap_or(0);
    if header_bytes[json_end + 1..].iter().any(|&b| b != b' ') {
        return Err(
            "the header is padded with something other than spaces: the file is corrupt".into(),
        );
    }
    let meta: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| format!("checkpoint metadata has no {k:?} (not a bmssl checkpoint?)"))
    };
    if get("format")? != FORMAT {
        return Err(format!(
            "unsupported checkpoint format {:?} (expected {FORMAT})",
            get("format")?
        ));
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
        }
        tensors.insert(name, (view.shape().to_vec(), view.data().to_vec()));
    }
    if checksum(&meta, &tensors) != *get("checksum")? {
        return Err("checksum mismatch: the file is corrupt or was modified".into());
    }
    let parse = |k: &str| -> std::result::Result<u64, String> {
        get(k)?
            .parse()
            .map_err(|_| format!("metadata {k} is not a number"))
    };
    let arch: ArchSpec =
        serde_json::from_str(get("arch")?).map_err(|e| format!("metadata arch: {e}"))?;
    let adapt: InnerLoop =
        serde_json::from_str(get("adapt")?).map_err(|e| format!("metadata adapt: {e}"))?;
    // The checksum proves integrity, not sanity: absurd sizes would allocate without bound, an
    // absurd inner loop would never end.
    crate::limits::check_arch(&arch).map_err(|e| format!("metadata arch: {e}"))?;
    crate::limits::check_adapt("inner_lr", adapt.inner_lr, "inner_steps", adapt.inner_steps)
        .map_err(|e| format!("metadata adapt: {e}"))?;
    let learner = Learner::new(arch.clone()).map_err(|e| e.to_string())?;
    let floats = |name: &str, shape: &[usize]| -> std::result::Result<Vec<f32>, String> {
        let (s, b) = tensors
            .get(name)
            .ok_or_else(|| format!("missing tensor {name}"))?;
        if s != shape {
            return Err(format!(
                "tensor {name} has shape {s:?}, the architecture needs {shape:?}"
            ));
        }
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let mut params = vec![0.0f32; learner.num_params()];
    for e in &learner.layout.entries {
        params[e.range()].copy_from_slice(&floats(&e.name, &e.shape)?);
        if let Some(v) = params[e.range()].iter().find(|v| !v.is_finite()) {
            return Err(format!(
                "tensor {} holds a non-finite value ({v}): the model is unusable",
                e.name
            ));
        }
    }
    let optimizer = match meta.get("optimizer") {
        None => None,
        Some(s) => {
            let sc: OptimizerScalars =
                serde_json::from_str(s).map_err(|e| format!("metadata optimizer: {e}"))?;
            let mut o = Optimizer::new(sc.kind, sc.lr, params.len())
                .with_options(sc.momentum, sc.weight_decay);
            o.t = sc.t;
            if o.momentum > 0.0 && o.t > 0 {
                o.m = vec![0.0; params.len()];
                for e in &learner.layout.entries {
                    o.m[e.range()]
                        .copy_from_slice(&floats(&format!("optimizer.m/{}", e.name), &e.shape)?);
                }
            }
            if sc.kind == OptimizerKind::Adam {
                for e in &learner.layout.entries {
                    o.m[e.range()]
                        .copy_from_slice(&floats(&format!("optimizer.m/{}", e.name), &e.shape)?);
                    o.v[e.range()]
                        .copy_from_slice(&floats(&format!("optimizer.v/{}", e.name), &e.shape)?);
                }
            }
            Some(o)
        }
    };
    Ok(Checkpoint {
        arch,
        params,
        adapt,
        method: get("method")?.clone(),
        step: parse("step")?,
        seed: parse("seed")?,
        optimizer,
        config_toml: get("config_toml")?.clone(),
        state: tensors
            .iter()
            .filter_map(|(name, (shape, bytes))| {
                let name = name.strip_prefix("state/")?;
                (shape.len() == 1).then(|| {
                    (
                        name.to_string(),
                        bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    )
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::InnerLoss;

    fn sample() -> Checkpoint {
        let arch = ArchSpec {
            hidden: 4,
            proj_dim: 3,
            ..ArchSpec::conv4(1, 16, 5)
        };
        let l = Learner::new(arch.clone()).unwrap();
        let params = l.init(&mut crate::rng::derive(1, &[crate::rng::STREAM_INIT]));
        let mut optimizer = Optimizer::new(OptimizerKind::Adam, 1e-3, params.len());
        let mut p2 = params.clone();
        optimizer.step(&mut p2, &params);
        Checkpoint {
            arch,
            params: p2,
            adapt: InnerLoop {
                inner_lr: 0.4,
                inner_steps: 5,
                inner_loss: InnerLoss {
                    contrastive_weight: 1.0,
                    temperature: 0.5,
                    ..InnerLoss::PAPER
                },
            },
            method: "bmssl".into(),
            step: 7,
            seed: 3,
            optimizer: Some(optimizer),
            config_toml: "method = \"bmssl\"\n".into(),
            state: Default::default(),
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bmssl-ckpt-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("c.safetensors")
    }

    #[test]
    fn a_saved_checkpoint_loads_back_identically() {
        let path = temp("roundtrip");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
    }

    #[test]
    fn serialisation_is_deterministic() {
        assert_eq!(to_bytes(&sample()).unwrap(), to_bytes(&sample()).unwrap());
    }

    #[test]
    fn a_flipped_byte_is_detected_by_the_checksum() {
        let mut bytes = to_bytes(&sample()).unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x40;
        assert!(from_bytes(&bytes).unwrap_err().contains("checksum"));
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_the_file() {
        let path = temp("truncated");
        let bytes = to_bytes(&sample()).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
    }

    #[test]
    fn a_run_directory_resolves_to_its_final_checkpoint_and_names_the_best() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let ck = run.join("checkpoints");
        std::fs::create_dir_all(&ck).unwrap();
        let err = resolve(&run).unwrap_err().to_string();
        assert!(err.contains("without a usable checkpoint"), "{err}");
        let mut c = sample();
        c.step = 20;
        save(&ck.join("best.safetensors"), &c).unwrap();
        std::fs::write(ck.join("best.json"), r#"{"step": 20, "accuracy": 0.5}"#).unwrap();
        let r = resolve(&run).unwrap();
        assert_eq!((r.which, r.checkpoint.step), (Some("best"), 20));
        for step in [10, 30] {
            c.step = step;
            save(&ck.join(format!("step-{step:07}.safetensors")), &c).unwrap();
        }
        // The newest step checkpoint is corrupt: skipped, the previous one is used.
        std::fs::write(ck.join("step-0000040.safetensors"), b"garbage").unwrap();
        for dir in [&run, &ck] {
            let r = resolve(dir).unwrap();
            assert_eq!((r.which, r.checkpoint.step), (Some("final"), 30));
            assert!(r.path.ends_with("step-0000030.safetensors"));
            assert!(
                r.note.contains("final checkpoint")
                    && r.note.contains("best validation checkpoint (step 20)")
                    && r.note.contains("step-0000040"),
                "{}",
                r.note
            );
        }
        let file = resolve(&ck.join("step-0000010.safetensors")).unwrap();
        assert_eq!((file.which, file.checkpoint.step), (None, 10));
    }

    /// The sample checkpoint with its metadata or tensors edited and its checksum recomputed: a
    /// file whose integrity is fine but whose content is absurd.
    fn resealed(
        edit: impl FnOnce(&mut BTreeMap<String, String>, &mut BTreeMap<String, (Vec<usize>, Vec<u8>)>),
    ) -> Vec<u8> {
        let bytes = to_bytes(&sample()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta: BTreeMap<String, String> =
            header.metadata().clone().unwrap().into_iter().collect();
        let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
            .collect();
        edit(&mut meta, &mut tensors);
        let sum = checksum(&meta, &tensors);
        meta.insert("checksum".into(), sum);
        serialize_sorted(&meta, &tensors)
    }

    fn with_json(key: &'static str, field: &'static str, value: serde_json::Value) -> Vec<u8> {
        resealed(|meta, _| {
            let mut v: serde_json::Value = serde_json::from_str(&meta[key]).unwrap();
            v[field] = value;
            meta.insert(key.into(), v.to_string());
        })
    }

    #[test]
    fn absurd_metadata_with_a_valid_checksum_is_refused_naming_the_field() {
        for (key, field, value) in [
            ("arch", "image_size", serde_json::json!(1_000_000_000u64)),
            ("arch", "hidden", serde_json::json!(1u64 << 62)),
            ("arch", "ways", serde_json::json!(1_000_000_000_000u64)),
            ("arch", "in_channels", serde_json::json!(u64::MAX)),
            (
                "adapt",
                "inner_steps",
                serde_json::json!(1_000_000_000_000u64),
            ),
            ("adapt", "inner_lr", serde_json::json!(-5.0)),
            ("adapt", "inner_lr", serde_json::json!(0.0)),
        ] {
            let err = from_bytes(&with_json(key, field, value.clone())).unwrap_err();
            assert!(
                err.contains(&format!("metadata {key}")) && err.contains(field),
                "{key}.{field} = {value}: {err}"
            );
        }
    }

    #[test]
    fn non_finite_parameters_are_refused_naming_the_tensor() {
        for bad in [f32::NAN, f32::INFINITY] {
            let bytes = resealed(|_, tensors| {
                tensors.get_mut("conv1.weight").unwrap().1[..4].copy_from_slice(&bad.to_le_bytes());
            });
            let err = from_bytes(&bytes).unwrap_err();
            assert!(
                err.contains("conv1.weight") && err.contains("non-finite"),
                "{err}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Any numbers in the architecture and adaptation metadata: refused or loaded, never a
        /// panic, an abort or an endless allocation.
        #[test]
        fn fuzz_checkpoint_metadata_never_panics(
            field in proptest::sample::select(vec![
                ("arch", "image_size"), ("arch", "hidden"), ("arch", "proj_dim"), ("arch", "ways"),
                ("arch", "in_channels"), ("arch", "prototypes"), ("adapt", "inner_steps"),
            ]),
            v in proptest::prelude::any::<u64>(),
            shift in 0u32..64,
        ) {
            let _ = from_bytes(&with_json(field.0, field.1, serde_json::json!(v >> shift)));
        }
    }
}

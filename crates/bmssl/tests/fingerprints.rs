//! Fingerprints: every training method (and BMSSL's targets, orders and study variants) trains 3
//! meta-steps from a fixed seed on synthetic images; the SHA-256 of its final checkpoint's tensors,
//! of its metrics lines (timings left out) and of a 50-episode evaluation's per-episode accuracies
//! must equal the ones recorded in `fingerprints.txt` beside this file.
//!
//! Why: a refactoring (issue 16's redesign, a faster kernel) must not change a single bit of what a
//! run computes. A fingerprint may change only when a change is *meant* to change results (a fixed
//! bug, a new default); then regenerate the file and say why in the commit:
//!
//! ```sh
//! BMSSL_UPDATE_FINGERPRINTS=1 cargo test -p bmssl --test fingerprints
//! ```
//!
//! The recorded bits are those of the default build on any x86-64 CPU with AVX2 + FMA, with or
//! without AVX-512 (the kernels' AVX2 builds, the convolution products' AVX2 or AVX-512 builds,
//! which compute the same bits, and gemm's AVX2 matrix products). The `avx512` feature swaps in
//! gemm's AVX-512 products, which round differently, so under it the comparison with the file is
//! skipped (the one-versus-two-threads test still runs).

use bmssl::checkpoint;
use bmssl::config::{TrainConfig, TrainMethod};
use bmssl::data::{Dataset, ImageShape, InMemoryDataset, UnlabelledPool};
use bmssl::eval::{self, EvalOptions, Model};
use bmssl::meta::{OuterLoss, Target};
use bmssl::objective::ContrastiveLoss;
use bmssl::train::{self, RunDir, Silent, TrainingData};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `classes` classes of `per_class` 28x28 binary images from a fixed generator (no data files, so the
/// fingerprints do not depend on `../shared`).
fn synthetic(name: &str, classes: usize, per_class: usize, seed: u64) -> Arc<dyn Dataset> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let data = (0..classes)
        .map(|_| {
            // A class is a random stroke pattern; its images are that pattern with 8% of pixels flipped.
            let proto: Vec<bool> = (0..784).map(|_| next() % 100 < 30).collect();
            (0..per_class)
                .flat_map(|_| {
                    proto
                        .iter()
                        .map(|&on| if on ^ (next() % 100 < 8) { 255u8 } else { 0 })
                        .collect::<Vec<u8>>()
                })
                .collect()
        })
        .collect();
    Arc::new(InMemoryDataset::from_classes(name, ImageShape::new(1, 28, 28), data).unwrap())
}

/// The configurations fingerprinted, by name: every method with small batches (the fingerprint is
/// of the code, not of a benchmark), BMSSL's two targets in both orders, the "-o" variant, and the
/// bootstrap study's knobs.
fn configurations() -> Vec<(&'static str, TrainConfig)> {
    let base = |m: TrainMethod| {
        let mut edited = TrainConfig::for_method(m);
        edited.outer.meta_steps = 3;
        edited.run.checkpoint_every = 3;
        edited.run.validate_every = 0;
        edited.run.seed = 7;
        edited
    };
    let small_ssl = |m: TrainMethod| {
        let mut edited = base(m);
        edited.task.images_per_batch = 16;
        edited.ssl.queue_size = 32;
        edited.ssl.prototypes = 8;
        edited
    };
    // The paper's reading, spelled out (the shipped default is fingerprinted apart).
    let bmssl = base(TrainMethod::Bmssl).with_paper_bootstrap();
    let query_step = {
        let mut edited = bmssl.clone();
        edited.bootstrap.target = Target::QueryStep;
        edited
    };
    vec![
        ("bmssl-paper", bmssl.clone()),
        ("bmssl-shipped-default", base(TrainMethod::Bmssl)),
        ("bmssl-query-step", query_step.clone()),
        ("bmssl-paper-first-order", {
            let mut edited = bmssl.clone();
            edited.outer.first_order = true;
            edited
        }),
        ("bmssl-query-step-first-order", {
            let mut edited = query_step.clone();
            edited.outer.first_order = true;
            edited
        }),
        ("bmssl-additive-zero-head", {
            let mut edited = query_step.clone();
            edited.bootstrap.outer_loss = OuterLoss::Additive;
            edited.bootstrap.mu = 0.5;
            edited.inner.zero_head = true;
            edited
        }),
        ("bmssl-sharp-similarity", {
            let mut edited = query_step.clone();
            edited.bootstrap.target_temperature = 0.5;
            edited.bootstrap.target_query_steps = 2;
            edited.bootstrap.target_lr = Some(0.2);
            edited.bootstrap.similarity_weight = 1.0;
            edited
        }),
        ("bmssl-o-simclr", {
            let mut edited = bmssl.clone();
            edited.inner.inner_loss = ContrastiveLoss::Simclr;
            edited.task.views = 4;
            edited.task.support_views = 2;
            edited.task.query_views = 2;
            edited
        }),
        ("metassl", {
            let mut edited = base(TrainMethod::Metassl);
            edited.inner.zero_head = false;
            edited.inner.inner_steps = TrainConfig::PAPER_INNER_STEPS;
            edited
        }),
        ("metassl-zero-head", {
            let mut edited = base(TrainMethod::Metassl);
            edited.inner.zero_head = true;
            edited.inner.inner_steps = TrainConfig::PAPER_INNER_STEPS;
            edited
        }),
        ("metassl-shipped-default", base(TrainMethod::Metassl)),
        ("maml", {
            let mut edited = base(TrainMethod::Maml);
            edited.task.images_per_batch = 20;
            edited.task.tasks_per_batch = 4;
            edited
        }),
        ("protonet", {
            let mut edited = base(TrainMethod::Protonet);
            edited.task.images_per_batch = 10;
            edited
        }),
        ("umtra", {
            let mut edited = base(TrainMethod::Umtra);
            edited.task.images_per_batch = 20;
            edited.task.tasks_per_batch = 4;
            edited
        }),
        ("scratch", base(TrainMethod::Scratch)),
        ("onelevel", base(TrainMethod::Onelevel)),
        ("simclr", small_ssl(TrainMethod::Simclr)),
        ("moco", small_ssl(TrainMethod::Moco)),
        ("swav", small_ssl(TrainMethod::Swav)),
        // SwAV's multi-crop (issue 21): two small 16-pixel crops per image besides the full views.
        ("swav-multicrop", {
            let mut edited = small_ssl(TrainMethod::Swav);
            edited.multicrop.crops = 2;
            edited
        }),
        ("barlowtwins", small_ssl(TrainMethod::Barlowtwins)),
        ("psco", small_ssl(TrainMethod::Psco)),
        // CACTUs (issue 21): a 2-step SimCLR embedding, 2 partitions of 12 clusters.
        ("cactus-protonet", {
            let mut edited = base(TrainMethod::CactusProtonet);
            edited.task.images_per_batch = 5;
            edited.cactus = small_cactus();
            edited
        }),
        ("cactus-maml", {
            let mut edited = base(TrainMethod::CactusMaml);
            edited.task.images_per_batch = 20;
            edited.task.tasks_per_batch = 4;
            edited.cactus = small_cactus();
            edited
        }),
    ]
}

fn small_cactus() -> bmssl::config::CactusConfig {
    bmssl::config::CactusConfig {
        partitions: 2,
        clusters: 12,
        iterations: 5,
        embedding_steps: 2,
        ..Default::default()
    }
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..16]
        .to_string()
}

/// The safetensors file's tensors: its header without the metadata (which holds the configuration
/// text, free to gain keys) and its data bytes.
fn tensor_hash(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.remove("__metadata__");
    let mut h = serde_json::to_vec(&header).unwrap();
    h.extend_from_slice(&bytes[8 + n..]);
    hex(h)
}

/// The metrics lines with the timing fields left out.
fn metrics_hash(path: &Path) -> String {
    let mut out = String::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let mut v: BTreeMap<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        v.remove("meta_steps_per_s");
        v.remove("wall_s");
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    hex(out)
}

fn fingerprint(name: &str, cfg: &TrainConfig, dir: &Path) -> String {
    let train_set = synthetic("synthetic/train", 24, 6, 1);
    let test_set = synthetic("synthetic/test", 10, 6, 2);
    let data = if cfg.method.uses_labels() {
        TrainingData::Labelled(train_set)
    } else {
        TrainingData::Unlabelled(UnlabelledPool::new(train_set))
    };
    let run = RunDir::create(&dir.join(name)).unwrap();
    let outcome =
        train::train(&run, cfg, &data, None, &mut Silent).unwrap_or_else(|e| panic!("{name}: {e}"));
    let model =
        Model::from_checkpoint(&checkpoint::load(&outcome.final_checkpoint).unwrap()).unwrap();
    let opts = EvalOptions {
        episodes: 50,
        queries: 3,
        ..EvalOptions::new(cfg.method.eval_mode(), &model)
    };
    let r = eval::evaluate(
        &model,
        test_set.as_ref(),
        "5w1s".parse().unwrap(),
        &opts,
        &|| {},
    )
    .unwrap();
    let accuracies: Vec<String> = r.accuracies.iter().map(|a| format!("{a:e}")).collect();
    format!(
        "{name} checkpoint={} metrics={} eval={}",
        tensor_hash(&outcome.final_checkpoint),
        metrics_hash(&run.metrics_path()),
        hex(accuracies.join(","))
    )
}

#[test]
#[cfg_attr(
    feature = "avx512",
    ignore = "the recorded bits are the AVX2 build's; the avx512 feature rounds differently"
)]
fn every_method_computes_the_bits_it_computed_when_the_fingerprints_were_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let got: Vec<String> = configurations()
        .iter()
        .map(|(name, cfg)| fingerprint(name, cfg, dir.path()))
        .collect();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fingerprints.txt");
    if std::env::var_os("BMSSL_UPDATE_FINGERPRINTS").is_some() {
        let text = format!(
            "# Written by `BMSSL_UPDATE_FINGERPRINTS=1 cargo test -p bmssl --test fingerprints`\n# (see tests/fingerprints.rs for what each hash covers and when it may change).\n{}\n",
            got.join("\n")
        );
        std::fs::write(&file, text).unwrap();
        return;
    }
    let expected: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let changed: Vec<String> = got
        .iter()
        .filter(|g| !expected.contains(g))
        .cloned()
        .collect();
    assert!(
        changed.is_empty() && got.len() == expected.len(),
        "fingerprints changed (expected {} lines, got {}):\n{}\nIf the change is meant, regenerate with BMSSL_UPDATE_FINGERPRINTS=1 and say why in the commit.",
        expected.len(),
        got.len(),
        changed.join("\n")
    );
}

#[test]
fn fingerprints_are_the_same_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (name, cfg) = configurations().swap_remove(1);
    let run = |threads: usize, sub: &str| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| fingerprint(name, &cfg, &dir.path().join(sub)))
    };
    assert_eq!(run(1, "one"), run(2, "two"));
}

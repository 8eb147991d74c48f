//! CACTUs inside the training loop: the partitions are computed once, kept in the run directory
//! and reused on resume.

use super::*;
use crate::data::{ImageShape, InMemoryDataset};
use crate::train::{train, Silent};
use std::sync::Arc;

/// 8 classes of 6 noisy copies of a random stroke pattern (48 images), labels dropped.
fn pool() -> UnlabelledPool {
    let classes = (0..8u64)
        .map(|c| {
            let proto = crate::engine::gradcheck::test_values(784, 300 + c);
            (0..6u64)
                .flat_map(|k| {
                    let noise = crate::engine::gradcheck::test_values(784, 1000 + 8 * c + k);
                    proto
                        .iter()
                        .zip(noise)
                        .map(|(p, n)| if (*p > 0.5) ^ (n > 0.9) { 255u8 } else { 0 })
                        .collect::<Vec<u8>>()
                })
                .collect()
        })
        .collect();
    UnlabelledPool::new(Arc::new(
        InMemoryDataset::from_classes("synthetic", ImageShape::new(1, 28, 28), classes).unwrap(),
    ))
}

fn config(method: TrainMethod) -> TrainConfig {
    let mut cfg = TrainConfig::for_method(method);
    cfg.task.images_per_batch = 3;
    cfg.task.tasks_per_batch = 1;
    cfg.task.views = 3;
    cfg.task.support_views = 1;
    cfg.task.query_views = 2;
    cfg.outer.meta_steps = 4;
    cfg.run.checkpoint_every = 2;
    cfg.run.validate_every = 0;
    cfg.cactus = CactusConfig {
        partitions: 3,
        clusters: 6,
        iterations: 5,
        embedding_steps: 2,
        ..CactusConfig::default()
    };
    cfg
}

/// `cfg` trained for `meta_steps` steps.
fn with_steps(cfg: &TrainConfig, meta_steps: u64) -> TrainConfig {
    let mut cfg = cfg.clone();
    cfg.outer.meta_steps = meta_steps;
    cfg
}

fn temp_run(dir: &tempfile::TempDir, name: &str) -> RunDir {
    RunDir::create(&dir.path().join(name)).unwrap()
}

#[test]
fn a_resumed_run_reuses_the_saved_partitions_and_ends_with_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TrainMethod::CactusProtonet);
    let data = TrainingData::Unlabelled(pool());
    let whole = temp_run(&dir, "whole");
    let a = train(&whole, &cfg, &data, None, &mut Silent).unwrap();
    assert!(whole.root.join("embedding/config.toml").exists());

    let halves = temp_run(&dir, "halves");
    let half = with_steps(&cfg, 2);
    train(&halves, &half, &data, None, &mut Silent).unwrap();
    let saved = std::fs::read(partitions_path(&halves)).unwrap();
    assert_eq!(saved, std::fs::read(partitions_path(&whole)).unwrap());
    // Without its embedding the run could not cluster again: it must read the saved partitions.
    std::fs::remove_dir_all(halves.root.join("embedding")).unwrap();
    let b = train(&halves, &cfg, &data, None, &mut Silent).unwrap();
    assert_eq!(b.resumed_from, 2);
    assert!(!halves.root.join("embedding").exists(), "no new embedding");
    assert_eq!(std::fs::read(partitions_path(&halves)).unwrap(), saved);
    assert_eq!(
        std::fs::read(a.final_checkpoint).unwrap(),
        std::fs::read(b.final_checkpoint).unwrap()
    );
}

#[test]
fn a_damaged_partition_file_stops_the_run_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_steps(&config(TrainMethod::CactusProtonet), 1);
    let data = TrainingData::Unlabelled(pool());
    let run = temp_run(&dir, "damaged");
    train(&run, &cfg, &data, None, &mut Silent).unwrap();
    let path = partitions_path(&run);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let more = with_steps(&cfg, 2);
    let err = train(&run, &more, &data, None, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cactus-partitions.bin") && err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn cactus_maml_trains_from_a_given_embedding_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = TrainingData::Unlabelled(pool());
    // Any checkpoint of the same input shape embeds: here a 2-step SimCLR.
    let mut simclr = with_steps(&TrainConfig::for_method(TrainMethod::Simclr), 2);
    simclr.task.images_per_batch = 16;
    simclr.run.validate_every = 0;
    let e = train(&temp_run(&dir, "simclr"), &simclr, &data, None, &mut Silent).unwrap();
    let mut cfg = with_steps(&config(TrainMethod::CactusMaml), 2);
    cfg.cactus.embedding = Some(e.final_checkpoint.display().to_string());
    let run = temp_run(&dir, "maml");
    let out = train(&run, &cfg, &data, None, &mut Silent).unwrap();
    assert!(!run.root.join("embedding").exists());
    let p = partitions::Partitions::load(&partitions_path(&run)).unwrap();
    assert_eq!(p.header.embedding, e.final_checkpoint.display().to_string());
    assert!(out.params.iter().all(|v| v.is_finite()));
}

#[test]
fn the_cactus_keys_are_checked_and_refused_for_other_methods() {
    let bad = |edit: fn(&mut TrainConfig), field: &str| {
        let mut c = config(TrainMethod::CactusProtonet);
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    };
    bad(|c| c.cactus.partitions = 0, "cactus.partitions");
    bad(|c| c.cactus.clusters = 70_000, "cactus.clusters");
    bad(|c| c.cactus.clusters = 2, "cactus.clusters");
    bad(|c| c.cactus.iterations = 0, "cactus.iterations");
    bad(|c| c.method = TrainMethod::Protonet, "cactus");
    // A pool smaller than k is refused before any work, naming the key.
    let cfg = TrainConfig {
        cactus: CactusConfig {
            clusters: 49,
            ..config(TrainMethod::CactusProtonet).cactus
        },
        ..config(TrainMethod::CactusProtonet)
    };
    let dir = tempfile::tempdir().unwrap();
    let err = train(
        &temp_run(&dir, "k"),
        &cfg,
        &TrainingData::Unlabelled(pool()),
        None,
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cactus.clusters") && err.contains("48"),
        "{err}"
    );
    // The section survives config.toml, and is absent from other methods' files.
    let again = TrainConfig::from_toml(&cfg.to_toml(), "t").unwrap();
    assert_eq!(again, cfg);
    assert!(!TrainConfig::default().to_toml().contains("cactus"));
}

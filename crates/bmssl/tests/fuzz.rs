//! Issue 11, bounded fuzzing in the normal test suite: configuration parsing, image and zip
//! dataset loading and checkpoint loading never panic on arbitrary input, and checkpoint loading
//! rejects every single-byte mutation of a valid file. 64 cases each by default; a longer run:
//! `PROPTEST_CASES=100000 cargo test -p bmssl --release --test fuzz` (docs/reliability.md).

use bmssl::checkpoint::{self, Checkpoint};
use bmssl::config::TrainConfig;
use bmssl::data::image_folder::ImageFolder;
use bmssl::data::omniglot::{Omniglot, OmniglotOptions};
use bmssl::data::ImageShape;
use bmssl::model::{ArchSpec, Learner};
use bmssl::objective::InnerLoss;
use bmssl::optim::{Optimizer, OptimizerKind};
use proptest::prelude::*;
use std::io::Write;
use std::sync::OnceLock;

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides the default of 64.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Configuration keys, some misspelt, and values of every TOML type, some absurd.
fn toml_line() -> impl Strategy<Value = String> {
    let keys: Vec<String> = bmssl::config::config_keys();
    let key = prop_oneof![
        proptest::sample::select(keys.clone()),
        proptest::sample::select(keys).prop_map(|k| format!("{k}x")),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        any::<bool>().prop_map(|v| v.to_string()),
        "\"[a-z0-9./ -]{0,12}\"",
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        "[ -~]{0,10}",
    ];
    (key, value).prop_map(|(k, v)| format!("{k} = {v}"))
}

/// The numeric keys of the configuration, and whether each is a float.
fn numeric_keys() -> Vec<(String, bool)> {
    let toml::Value::Table(t) = toml::Value::try_from(TrainConfig::default()).unwrap() else {
        unreachable!()
    };
    t.into_iter()
        .filter_map(|(k, v)| match v {
            toml::Value::Integer(_) => Some((k, false)),
            toml::Value::Float(_) => Some((k, true)),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_config_parsing_never_panics_and_errors_are_one_line(
        lines in proptest::collection::vec(toml_line(), 0..6),
        junk in "[ -~\n\t]{0,80}",
        with_junk in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if with_junk {
            text.push('\n');
            text.push_str(&junk);
        }
        if let Err(e) = TrainConfig::from_toml(&text, "fuzz.toml") {
            let m = e.to_string();
            prop_assert!(!m.contains('\n'), "multi-line error: {m}");
            prop_assert!(m.contains("fuzz.toml") || m.contains('`'), "error names nothing: {m}");
        }
    }

    /// Issue 19: every numeric key with any 64-bit value (or a float of any size) is accepted or
    /// refused naming the key, never a panic; an accepted configuration serialises and reads back
    /// identically (no "always serialises" panic for values >= 2^63), and its validation is the
    /// bounded one shared with the command line and checkpoints.
    #[test]
    fn fuzz_every_numeric_setting_is_bounded_and_round_trips(
        picks in proptest::collection::vec((0usize..64, any::<u64>(), 0u8..4, any::<f64>()), 1..4),
    ) {
        let keys = numeric_keys();
        let mut cfg = toml::Table::new();
        for (k, v, scale, f) in picks {
            let (key, float) = &keys[k % keys.len()];
            let value = if *float {
                toml::Value::Float(f)
            } else {
                // Small, medium, huge, and >= 2^63 (as TOML's string, the only way to write it).
                let v = match scale { 0 => v % 8, 1 => v % 100_000, 2 => v >> 1, _ => v | (1 << 63) };
                match i64::try_from(v) { Ok(i) => toml::Value::Integer(i), Err(_) => toml::Value::String(v.to_string()) }
            };
            cfg.insert(key.clone(), value);
        }
        let text = toml::to_string(&cfg).unwrap();
        match TrainConfig::from_toml(&text, "fuzz.toml") {
            Ok(c) => {
                let back = TrainConfig::from_toml(&c.to_toml(), "again.toml");
                prop_assert_eq!(back.ok(), Some(c));
            }
            Err(e) => {
                let m = e.to_string();
                prop_assert!(!m.contains('\n') && m.len() < 600, "{m}");
                prop_assert!(m.contains('`') || m.contains("fuzz.toml"), "error names nothing: {m}");
            }
        }
    }

    #[test]
    fn fuzz_image_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                     mutate in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
                                     ext in proptest::sample::select(vec!["png", "jpg"])) {
        // Random bytes, or a valid image with a few bytes changed.
        let bytes = if mutate.is_empty() { bytes } else {
            let mut b = if ext == "png" { valid_png().to_vec() } else { valid_jpeg().to_vec() };
            for (at, x) in &mutate {
                let n = b.len();
                b[at % n] ^= x;
            }
            b
        };
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("c")).unwrap();
        std::fs::write(t.path().join("c").join(format!("x.{ext}")), &bytes).unwrap();
        if let Ok(ds) = ImageFolder::load(t.path(), ImageShape::new(1, 8, 8)) {
            prop_assert_eq!(bmssl::data::Dataset::num_images(&ds), 1);
        }
    }

    #[test]
    fn fuzz_zip_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                  mutate in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4)) {
        let bytes = if mutate.is_empty() { bytes } else {
            let mut b = valid_zip().to_vec();
            for (at, x) in &mutate {
                let n = b.len();
                b[at % n] ^= x;
            }
            b
        };
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("images_background.zip"), &bytes).unwrap();
        std::fs::write(t.path().join("images_evaluation.zip"), empty_zip()).unwrap();
        // Never a success (no split files), never a panic.
        prop_assert!(Omniglot::load(t.path(), &OmniglotOptions::default()).is_err());
    }

    #[test]
    fn fuzz_checkpoint_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                         header_len in 0u64..700) {
        prop_assert!(checkpoint::from_bytes(&bytes).is_err());
        // Plausible header length, random rest.
        let mut b = header_len.to_le_bytes().to_vec();
        b.extend(&bytes);
        prop_assert!(checkpoint::from_bytes(&b).is_err());
    }

    #[test]
    fn fuzz_every_mutation_of_a_checkpoint_is_rejected(at in any::<usize>(), x in 1u8..=255,
                                                       cut in any::<usize>()) {
        let good = valid_checkpoint();
        let mut b = good.to_vec();
        let i = at % b.len();
        b[i] ^= x;
        prop_assert!(checkpoint::from_bytes(&b).is_err(), "byte {} ^ {:#x} accepted", i, x);
        // Truncated anywhere.
        let n = cut % good.len();
        prop_assert!(checkpoint::from_bytes(&good[..n]).is_err(), "truncated to {} accepted", n);
    }
}

fn valid_png() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let img = image::GrayImage::from_fn(9, 7, |x, y| image::Luma([(x * 20 + y * 7) as u8]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    })
}

fn valid_jpeg() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let img =
            image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, 9]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    })
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn valid_zip() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        zip_of(&[
            ("images_background/Latin/character01/a.png", valid_png()),
            ("images_background/Latin/character02/b.png", valid_png()),
        ])
    })
}

fn empty_zip() -> Vec<u8> {
    zip_of(&[])
}

fn valid_checkpoint() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let arch = ArchSpec {
            hidden: 2,
            proj_dim: 2,
            ..ArchSpec::conv4(1, 16, 2)
        };
        let l = Learner::new(arch.clone()).unwrap();
        let params = l.init(&mut bmssl::rng::derive(1, &[bmssl::rng::STREAM_INIT]));
        let mut optimizer = Optimizer::new(OptimizerKind::Adam, 1e-3, params.len());
        let mut p2 = params.clone();
        optimizer.step(&mut p2, &params);
        let c = Checkpoint {
            arch,
            params: p2,
            adapt: bmssl::meta::InnerLoop {
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
        };
        let bytes = checkpoint::to_bytes(&c).unwrap();
        assert_eq!(checkpoint::from_bytes(&bytes).unwrap(), c);
        bytes
    })
}

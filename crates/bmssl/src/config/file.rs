//! The configuration file: one flat table of keys (`inner_lr = 0.4`), each key belonging to one
//! section of [`TrainConfig`]. The file stays flat so that every config.toml written before the
//! sections existed (run directories, docs/results, sweep specs, Python dicts) reads unchanged,
//! and a run's `config.toml` is written with the same bytes, in the same key order, as before.
//! The exceptions are a few sections read by one method each ([`Tables`]: CACTUs' `[cactus]`, then
//! SwAV's `[multicrop]`): each a table after the flat keys, in that order, written only when one of
//! its keys differs from its default (so no other method's file changed when it was added).
//!
//! Over 400 lines: the file's whole contract (its key order, the reading and writing of its flat
//! keys and its tables, the one-line errors naming the line and the nearest key) is here, with
//! the tests that every docs/results config.toml still reads; the tests are the last 190 lines.

use super::{
    BootstrapConfig, CactusConfig, DataConfig, InnerLoopConfig, MultiCropConfig, OuterConfig,
    RunConfig, SslConfig, TaskConfig, TrainConfig, TrainMethod,
};
use crate::losses::ContrastiveLoss;
use crate::meta::{Method, OuterLoss, Target};
use crate::model::Backbone;
use crate::optim::OptimizerKind;
use crate::{Error, Result};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Serialize};

/// The key order of config.toml files written before the sections existed, kept so that a run's
/// `config.toml` (and its hash in checkpoints) does not change. A key missing here is written
/// after these, in alphabetical order.
const FILE_ORDER: &[&str] = &[
    "method",
    "target",
    "outer_loss",
    "mu",
    "target_query_steps",
    "target_lr",
    "target_temperature",
    "similarity_weight",
    "zero_head",
    "dataset",
    "split",
    "rotations",
    "image_size",
    "channels",
    "backbone",
    "images_per_batch",
    "views",
    "tasks_per_batch",
    "support_views",
    "query_views",
    "inner_steps",
    "bootstrap_steps",
    "inner_lr",
    "outer_lr",
    "optimizer",
    "contrastive_weight",
    "temperature",
    "meta_steps",
    "first_order",
    "augment",
    "seed",
    "checkpoint_every",
    "keep_checkpoints",
    "validate_every",
    "validation_episodes",
    "validation_mode",
    "max_nonfinite_steps",
    "inner_loss",
    "sgd_momentum",
    "weight_decay",
    "lr_schedule",
    "momentum",
    "queue_size",
    "predictor",
    "prototypes",
    "sinkhorn_iters",
    "sinkhorn_eps",
    "redundancy_weight",
    "shots",
    "temperature2",
];

/// The one top-level key that is no section's.
#[derive(Deserialize)]
struct MethodKey {
    #[serde(default = "default_method")]
    method: TrainMethod,
}

fn default_method() -> TrainMethod {
    TrainConfig::default().method
}

/// The file's tables: the keys that hold a section rather than a value, in the order they are
/// written (the order of [`TrainConfig`]'s fields, as serialising the whole configuration at once
/// writes them). A table added is a field of [`TrainConfig`] skipped while default, a field here
/// and of [`WrittenTables`], and an entry of [`tables`].
#[derive(Default, Deserialize, Serialize)]
struct Tables {
    #[serde(default)]
    cactus: CactusConfig,
    #[serde(default)]
    multicrop: MultiCropConfig,
}

/// The tables of a configuration as written: each left out while it has its defaults.
#[derive(Serialize)]
struct WrittenTables<'a> {
    #[serde(skip_serializing_if = "is_default")]
    cactus: &'a CactusConfig,
    #[serde(skip_serializing_if = "is_default")]
    multicrop: &'a MultiCropConfig,
}

fn is_default<T: Default + PartialEq>(t: &&T) -> bool {
    **t == T::default()
}

/// The file's tables in the order they are written: each name (its key in the file) and its keys.
pub(super) fn tables() -> [(&'static str, &'static [&'static str]); 2] {
    [
        ("cactus", fields_of::<CactusConfig>()),
        ("multicrop", fields_of::<MultiCropConfig>()),
    ]
}

/// Every table with every key at its default, as the file would write it if none were left out.
pub(super) fn table_defaults() -> toml::Table {
    match toml::Value::try_from(Tables::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// Where the sections are read from: the file's text (errors name the line) or a TOML value.
trait Source {
    fn section<T: DeserializeOwned>(&self) -> std::result::Result<T, String>;
    fn keys(&self) -> Vec<String>;
    fn line_of(&self, key: &str) -> Option<(usize, String)>;
}

struct Text<'a>(&'a str, toml::Table);

impl Source for Text<'_> {
    fn section<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        toml::from_str(self.0).map_err(|e| describe_toml_error(&e, self.0))
    }
    fn keys(&self) -> Vec<String> {
        self.1.keys().cloned().collect()
    }
    fn line_of(&self, key: &str) -> Option<(usize, String)> {
        self.0.lines().enumerate().find_map(|(i, l)| {
            let rest = l.trim_start().strip_prefix(key)?;
            rest.trim_start()
                .starts_with('=')
                .then(|| (i + 1, l.trim().chars().take(80).collect()))
        })
    }
}

struct Value(toml::Value);

impl Source for Value {
    fn section<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        self.0
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.message().trim().replace('\n', " "))
    }
    fn keys(&self) -> Vec<String> {
        self.0
            .as_table()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn line_of(&self, _: &str) -> Option<(usize, String)> {
        None
    }
}

/// Every key in its section; an unknown key is refused with the nearest valid one.
fn assemble(src: &impl Source) -> std::result::Result<TrainConfig, String> {
    let known = config_keys();
    for key in src.keys() {
        if !known.contains(&key) {
            let message = match nearest_key(&key) {
                Some(k) => format!("unknown key `{key}`; did you mean `{k}`?"),
                None => format!("unknown key `{key}`; valid keys: {}", known.join(", ")),
            };
            return Err(match src.line_of(&key) {
                Some((line, content)) => format!("line {line} (`{content}`): {message}"),
                None => message,
            });
        }
    }
    let tables = src.section::<Tables>()?;
    Ok(TrainConfig {
        method: src.section::<MethodKey>()?.method,
        bootstrap: src.section()?,
        data: src.section()?,
        task: src.section()?,
        inner: src.section()?,
        outer: src.section()?,
        run: src.section()?,
        ssl: src.section()?,
        cactus: tables.cactus,
        multicrop: tables.multicrop,
    })
}

/// Reads a configuration file's text (no validation).
pub(super) fn read(text: &str, origin: &str) -> Result<TrainConfig> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| Error::config(origin, describe_toml_error(&e, text)))?;
    assemble(&Text(text, table)).map_err(|m| Error::config(origin, m))
}

/// Writes the flat file, keys in [`FILE_ORDER`].
pub(super) fn write(cfg: &TrainConfig) -> String {
    let Ok(toml::Value::Table(mut table)) = toml::Value::try_from(cfg) else {
        unreachable!("the configuration always serialises to a table")
    };
    let mut keys: Vec<String> = FILE_ORDER
        .iter()
        .filter(|k| table.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    keys.extend(
        table
            .keys()
            .filter(|k| !FILE_ORDER.contains(&k.as_str()) && !is_table(k))
            .cloned(),
    );
    let mut out = String::new();
    for key in keys {
        let mut one = toml::Table::new();
        if let Some(v) = table.remove(&key) {
            one.insert(key, v);
        }
        out.push_str(&toml::to_string(&one).expect("a TOML value always serialises"));
    }
    // After the values, the tables that are set, each after a blank line with its keys in the
    // section's field order: what serialising the whole configuration at once writes.
    let written = WrittenTables {
        cactus: &cfg.cactus,
        multicrop: &cfg.multicrop,
    };
    let tables = toml::to_string(&written).expect("the tables always serialise");
    if !tables.is_empty() {
        out.push('\n');
        out.push_str(&tables);
    }
    out
}

/// Whether `key` names one of the file's tables.
fn is_table(key: &str) -> bool {
    tables().iter().any(|(name, _)| *name == key)
}

/// The flat table any serde format holds (what sweeps overlay and read back).
impl<'de> Deserialize<'de> for TrainConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        assemble(&Value(toml::Value::Table(table))).map_err(de::Error::custom)
    }
}

/// The field names of a struct that derives `Deserialize` (serde hands them to
/// `deserialize_struct`), so a section's keys are listed by its fields alone.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(
            self,
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            Err(de::Error::custom("only a struct's field names are read"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
}

/// Every top-level key of the configuration file: the sections' field names and the tables'.
pub(super) fn static_keys() -> Vec<&'static str> {
    let mut keys = flat_keys();
    keys.extend(tables().iter().map(|(name, _)| *name));
    keys
}

/// Every key of the flat part of the file, as the sections' field names.
pub(super) fn flat_keys() -> Vec<&'static str> {
    [
        fields_of::<MethodKey>(),
        fields_of::<BootstrapConfig>(),
        fields_of::<DataConfig>(),
        fields_of::<TaskConfig>(),
        fields_of::<InnerLoopConfig>(),
        fields_of::<OuterConfig>(),
        fields_of::<RunConfig>(),
        fields_of::<SslConfig>(),
    ]
    .concat()
}

/// Every top-level key of the configuration file, sorted.
pub fn config_keys() -> Vec<String> {
    let mut keys: Vec<String> = static_keys().into_iter().map(str::to_string).collect();
    keys.sort();
    keys
}

/// One line saying what is wrong with a configuration file: the line at fault, and for an unknown
/// key the nearest valid one.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) if span.start <= text.len() => {
            let line = text[..span.start].matches('\n').count() + 1;
            let content = text.lines().nth(line - 1).unwrap_or("").trim();
            let content: String = content.chars().take(80).collect();
            format!("line {line} (`{content}`): {message}")
        }
        _ => message,
    }
}

/// The valid key closest to `key` by edit distance, if it is close enough to be a typo.
pub fn nearest_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase().replace('-', "_");
    config_keys()
        .into_iter()
        .map(|k| (edit_distance(&key, &k), k))
        .min()
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .map(|(_, k)| k)
}

/// Levenshtein distance (insertions, deletions, substitutions), over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses a value by its configuration-file name, so flags and TOML files accept one spelling.
fn parse_by_name<T: DeserializeOwned>(s: &str, field: &str, choices: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| Error::config(field, format!("`{s}` is not one of {choices}")))
}

macro_rules! from_str_by_name {
    ($($t:ty => $field:literal, $choices:literal;)+) => {$(
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                parse_by_name(s, $field, $choices)
            }
        }
    )+};
}

from_str_by_name! {
    TrainMethod => "method", "bmssl, metassl, maml, protonet, umtra, scratch, simclr, moco, swav, barlowtwins, psco, onelevel, cactus-protonet, cactus-maml";
    ContrastiveLoss => "inner_loss", "supcon, simclr, moco, swav, barlowtwins";
    super::LrSchedule => "lr_schedule", "constant, cosine";
    Method => "method", "bmssl, metassl";
    Target => "target", "paper, query-step";
    OuterLoss => "outer_loss", "kl, additive";
    Backbone => "backbone", "conv4, conv5";
    OptimizerKind => "optimizer", "adam, sgd";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn config_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                config_files(&path, out);
            } else if path.file_name().is_some_and(|n| n == "config.toml") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_config_toml_under_docs_results_still_loads_and_is_written_back_as_it_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results");
        let mut files = Vec::new();
        config_files(&root, &mut files);
        assert!(
            files.len() >= 10,
            "found only {} config.toml files",
            files.len()
        );
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let origin = path.display().to_string();
            let cfg = TrainConfig::from_toml(&text, &origin).unwrap_or_else(|e| panic!("{e}"));
            // Written again, it reads as the same configuration.
            assert_eq!(
                TrainConfig::from_toml(&cfg.to_toml(), &origin).unwrap(),
                cfg
            );
        }
    }

    #[test]
    fn the_file_is_written_in_the_key_order_it_always_had() {
        let text = TrainConfig::default().to_toml();
        let keys: Vec<&str> = text.lines().filter_map(|l| l.split(" = ").next()).collect();
        let expected: Vec<&str> = FILE_ORDER
            .iter()
            .copied()
            .filter(|k| *k != "target_lr")
            .collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn the_cactus_table_follows_the_flat_keys_in_its_field_order_and_only_when_set() {
        let mut cfg = TrainConfig::for_method(TrainMethod::CactusMaml);
        assert!(!cfg.to_toml().contains("cactus]"));
        cfg.cactus.clusters = 40;
        cfg.cactus.embedding = Some("e.safetensors".into());
        let text = cfg.to_toml();
        assert!(
            text.ends_with(
                "temperature2 = 1.0\n\n[cactus]\npartitions = 100\nclusters = 40\nscaling = \"random\"\niterations = 30\nembedding = \"e.safetensors\"\nembedding_steps = 300\n"
            ),
            "{text}"
        );
        assert_eq!(TrainConfig::from_toml(&text, "t").unwrap(), cfg);
        // JSON (plan.json) reads back too, with and without an embedding.
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        cfg.cactus.embedding = None;
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
    }

    #[test]
    fn the_multicrop_table_follows_the_flat_keys_and_the_cactus_table_and_only_when_set() {
        let mut cfg = TrainConfig::for_method(TrainMethod::Swav);
        assert!(!cfg.to_toml().contains("multicrop]"));
        cfg.multicrop.crops = 6;
        let text = cfg.to_toml();
        assert!(
            text.ends_with(
                "temperature2 = 1.0\n\n[multicrop]\ncrops = 6\nscale_min = 0.05000000074505806\nscale_max = 0.20000000298023224\n"
            ),
            "{text}"
        );
        assert_eq!(TrainConfig::from_toml(&text, "t").unwrap(), cfg);
        cfg.multicrop.size = Some(20);
        let text = cfg.to_toml();
        assert!(
            text.ends_with("\n\n[multicrop]\ncrops = 6\nsize = 20\nscale_min = 0.05000000074505806\nscale_max = 0.20000000298023224\n"),
            "{text}"
        );
        assert_eq!(TrainConfig::from_toml(&text, "t").unwrap(), cfg);
        // JSON (plan.json) reads back too, with and without a size.
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        cfg.multicrop.size = None;
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        // Both tables (not a valid configuration, but written as one): [cactus] first.
        cfg.cactus.clusters = 40;
        let text = cfg.to_toml();
        assert!(
            text.ends_with("temperature2 = 1.0\n\n[cactus]\npartitions = 100\nclusters = 40\nscaling = \"random\"\niterations = 30\nembedding_steps = 300\n\n[multicrop]\ncrops = 6\nscale_min = 0.05000000074505806\nscale_max = 0.20000000298023224\n"),
            "{text}"
        );
        assert_eq!(read(&text, "t").unwrap(), cfg);
        // An unknown key of the table is refused on its line.
        let err = read(
            "method = \"swav\"\n\n[multicrop]\ncrops = 2\ncrop = 3\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 5 (`crop = 3`)"), "{err}");
    }

    #[test]
    fn the_tables_are_written_as_serialising_one_struct_with_them_as_its_last_fields_writes() {
        // How main's flat TrainConfig wrote them (`toml::to_string(self)`, the tables its last
        // fields, each skipped while default): the bytes after the last flat key must agree.
        #[derive(Serialize)]
        struct Flat<'a> {
            temperature2: f64,
            #[serde(skip_serializing_if = "is_default")]
            cactus: &'a CactusConfig,
            #[serde(skip_serializing_if = "is_default")]
            multicrop: &'a MultiCropConfig,
        }
        let mut swav = TrainConfig::for_method(TrainMethod::Swav);
        let mut cactus = TrainConfig::for_method(TrainMethod::CactusMaml);
        cactus.cactus.embedding = Some("e".into());
        let mut configs = Vec::new();
        swav.multicrop.crops = 6;
        configs.push(swav.clone());
        swav.multicrop.size = Some(20);
        configs.push(swav.clone());
        configs.push(cactus.clone());
        cactus.multicrop = swav.multicrop.clone();
        configs.push(cactus);
        for cfg in configs {
            let flat = toml::to_string(&Flat {
                temperature2: cfg.ssl.temperature2,
                cactus: &cfg.cactus,
                multicrop: &cfg.multicrop,
            })
            .unwrap();
            let text = cfg.to_toml();
            let tail = &text[text.find("temperature2 = ").unwrap()..];
            assert_eq!(tail, flat);
        }
    }

    #[test]
    fn the_tables_are_listed_in_the_order_they_are_written() {
        let names: Vec<&str> = tables().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, fields_of::<Tables>());
        assert_eq!(
            table_defaults().keys().collect::<Vec<_>>(),
            ["cactus", "multicrop"]
        );
    }

    #[test]
    fn every_key_belongs_to_exactly_one_section() {
        let keys = config_keys();
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!(keys, unique);
        assert!(FILE_ORDER.iter().all(|k| keys.contains(&k.to_string())));
        // The flat keys and the tables.
        assert!(keys.contains(&"cactus".to_string()) && keys.contains(&"multicrop".to_string()));
        assert_eq!(keys.len(), FILE_ORDER.len() + tables().len());
    }

    #[test]
    fn an_unknown_key_is_refused_on_its_line_with_the_nearest_one() {
        let err = read("seed = 1\n  inner_lrr = 0.1\n", "run.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2 (`inner_lrr = 0.1`)") && err.contains("did you mean `inner_lr`?"),
            "{err}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_toml_value_of_the_flat_keys_reads_as_the_file_does() {
        let cfg = TrainConfig::for_method(TrainMethod::Moco);
        let value = toml::Value::try_from(&cfg).unwrap();
        assert_eq!(value.try_into::<TrainConfig>().unwrap(), cfg);
    }
}

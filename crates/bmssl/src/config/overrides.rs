//! Overrides of configuration keys by name (`inner_lr` = "0.1"), merged into the flat table before
//! it is read: how the CLI's flags set keys, so a key added to a section needs no flag code. A key
//! of a table is named `<table>.<key>` (`cactus.clusters`, `multicrop.crops`).

use super::file::{flat_keys, table_defaults, tables};
use super::{nearest_key, TrainConfig};
use crate::{Error, Result};
use serde::Deserialize;
use std::sync::OnceLock;

/// Every key a flag can set: the flat keys of the configuration file (the CLI names its flags
/// after them: `inner_lr` is `--inner-lr`), then each table's, in the file's order, as
/// `<table>.<key>`.
pub fn override_keys() -> Vec<&'static str> {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = flat_keys();
        for (table, table_keys) in tables() {
            for k in table_keys {
                // Built once per process: the keys live as long as the program.
                let dotted: &'static str = Box::leak(format!("{table}.{k}").into_boxed_str());
                keys.push(dotted);
            }
        }
        keys
    })
    .clone()
}

/// Whether `key` holds true/false (the CLI lets such a flag stand alone for `true`).
pub fn is_bool_key(key: &str) -> bool {
    matches!(get(&defaults(), key), Some(toml::Value::Boolean(_)))
}

/// Every key's default as the file writes it, the tables included (the file leaves each out while
/// it has its defaults).
fn defaults() -> toml::Table {
    let mut table = match toml::Value::try_from(TrainConfig::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    table.extend(table_defaults());
    table
}

/// The value of `key` (`<table>.<key>` inside that table) in `table`.
fn get<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        Some((section, key)) => table.get(section)?.as_table()?.get(key),
        None => table.get(key),
    }
}

/// Sets `key` (`<table>.<key>` inside that table, made if absent) in `table`.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        Some((section, key)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), value);
            }
        }
        None => {
            table.insert(key.to_string(), value);
        }
    }
}

/// Whether a configuration with `key` set to `value` reads (its error on one line otherwise).
fn reads(table: &toml::Table, key: &str, value: &toml::Value) -> std::result::Result<(), String> {
    let mut t = table.clone();
    set(&mut t, key, value.clone());
    TrainConfig::deserialize(toml::Value::Table(t))
        .map(|_| ())
        .map_err(|e| one_line(&e))
}

/// `raw` (a flag's text) as the TOML value of `key`: typed as the key's default value is (a
/// string stays a string, so `--target paper` needs no quotes), then checked by reading a
/// configuration with it. The error is one line about the value alone.
pub fn override_value(key: &str, raw: &str) -> std::result::Result<toml::Value, String> {
    let table = defaults();
    let value = match get(&table, key) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.parse()
                .map_err(|_| format!("expected true or false, got `{raw}`"))?,
        ),
        Some(toml::Value::Integer(_)) => match raw.parse::<i64>() {
            Ok(i) => toml::Value::Integer(i),
            // Above i64, which TOML cannot hold: a u64 seed is read from text; any other count
            // saturates at i64::MAX, which validation then refuses naming the key (as a file's
            // value out of range is).
            Err(e) => match raw.parse::<u64>() {
                Ok(_) => {
                    let text = toml::Value::String(raw.to_string());
                    if reads(&table, key, &text).is_ok() {
                        text
                    } else {
                        toml::Value::Integer(i64::MAX)
                    }
                }
                Err(_) => return Err(e.to_string()),
            },
        },
        Some(toml::Value::Float(_)) => toml::Value::Float(
            raw.parse::<f64>()
                .map_err(|e| format!("{e} (expected a number)"))?,
        ),
        // A key whose default is absent (`target_lr`, `cactus.embedding`, `multicrop.size`): a
        // TOML literal where the key reads one, else text (a path such as `123` stays a path).
        _ => {
            let text = toml::Value::String(raw.to_string());
            toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(|literal| {
                    reads(&table, key, literal).is_ok() || reads(&table, key, &text).is_err()
                })
                .unwrap_or(text)
        }
    };
    if !override_keys().contains(&key) {
        return Err(match nearest_key(key) {
            Some(k) => format!("unknown key `{key}`; did you mean `{k}`?"),
            None => format!("unknown key `{key}`"),
        });
    }
    reads(&table, key, &value)?;
    Ok(value)
}

/// A TOML error's message on one line (its `Display` adds line breaks).
fn one_line(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

impl TrainConfig {
    /// This configuration with `overrides` (key, the value's text as a flag gives it) set, read
    /// back through the file's format (not validated: call [`TrainConfig::validate`] once all
    /// layers are in).
    pub fn with_overrides(&self, overrides: &[(String, String)]) -> Result<TrainConfig> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let toml::Value::Table(mut table) =
            toml::Value::try_from(self).map_err(|e| Error::config("config", e.to_string()))?
        else {
            return Err(Error::config("config", "does not serialise to a table"));
        };
        for (k, raw) in overrides {
            let value = override_value(k, raw).map_err(|e| Error::config(k.as_str(), e))?;
            set(&mut table, k, value);
        }
        TrainConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = overrides.last().map_or("config", |(k, _)| k.as_str());
            Error::config(key, one_line(&e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainMethod;

    #[test]
    fn a_flag_is_typed_as_its_key_and_set_through_the_file_format() {
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        let cfg = TrainConfig::default()
            .with_overrides(&[
                set("inner_lr", "0.1"),
                set("method", "metassl"),
                set("bootstrap_steps", "2"),
                set("zero_head", "true"),
                set("target_lr", "0.2"),
                set("seed", "18446744073709551615"),
            ])
            .unwrap();
        assert_eq!(cfg.inner.inner_lr, 0.1);
        assert_eq!(cfg.method, TrainMethod::Metassl);
        assert_eq!(cfg.bootstrap.bootstrap_steps, 2);
        assert!(cfg.inner.zero_head);
        assert_eq!(cfg.bootstrap.target_lr, Some(0.2));
        assert_eq!(cfg.run.seed, u64::MAX);
    }

    #[test]
    fn a_value_of_the_wrong_type_or_an_unknown_key_is_refused_in_one_line() {
        for (k, v) in [
            ("inner_steps", "five"),
            ("inner_lr", "fast"),
            ("method", "bmsl"),
            ("zero_head", "yes"),
            ("inner_steps", "-1"),
            ("inner_lrr", "0.1"),
        ] {
            let e = override_value(k, v).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{k} = {v}: {e}");
        }
        assert!(override_value("inner_lrr", "0.1")
            .unwrap_err()
            .contains("`inner_lr`"));
    }

    #[test]
    fn every_key_can_be_overridden_and_bool_keys_are_known() {
        // Every top-level key but the tables themselves, then each of the tables' keys.
        let keys = override_keys();
        let table_keys: usize = tables().iter().map(|(_, keys)| keys.len()).sum();
        assert_eq!(
            keys.len(),
            crate::config::config_keys().len() - tables().len() + table_keys
        );
        assert!(keys.contains(&"inner_lr") && keys.contains(&"cactus.clusters"));
        assert!(keys.contains(&"multicrop.crops") && keys.contains(&"multicrop.size"));
        assert!(tables().iter().all(|(name, _)| !keys.contains(name)));
        assert!(is_bool_key("zero_head") && is_bool_key("rotations"));
        assert!(!is_bool_key("inner_lr") && !is_bool_key("cactus.clusters"));
    }

    #[test]
    fn a_cactus_key_is_set_inside_its_table_and_the_rest_of_the_table_keeps_its_defaults() {
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        let cfg = TrainConfig::for_method(TrainMethod::CactusMaml)
            .with_overrides(&[
                set("cactus.clusters", "40"),
                set("cactus.scaling", "none"),
                set("cactus.embedding", "123"),
            ])
            .unwrap();
        assert_eq!(cfg.cactus.clusters, 40);
        assert_eq!(cfg.cactus.scaling, crate::config::Scaling::None);
        assert_eq!(cfg.cactus.embedding.as_deref(), Some("123"));
        assert_eq!(
            cfg.cactus.partitions,
            crate::config::CactusConfig::default().partitions
        );
        cfg.validate().unwrap();
        for (k, v) in [
            ("cactus.clusters", "many"),
            ("cactus.scaling", "diagonal"),
            ("cactus.embedding_steps", "-1"),
            ("cactus.partitons", "3"),
        ] {
            let e = override_value(k, v).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{k} = {v}: {e}");
        }
    }

    #[test]
    fn a_multicrop_key_is_set_inside_its_table_and_the_rest_of_the_table_keeps_its_defaults() {
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        let cfg = TrainConfig::for_method(TrainMethod::Swav)
            .with_overrides(&[
                set("multicrop.crops", "6"),
                set("multicrop.size", "20"),
                set("multicrop.scale_max", "0.3"),
            ])
            .unwrap();
        assert_eq!(cfg.multicrop.crops, 6);
        assert_eq!(cfg.multicrop.size, Some(20));
        assert_eq!(cfg.multicrop.scale_max, 0.3);
        assert_eq!(
            cfg.multicrop.scale_min,
            crate::config::MultiCropConfig::default().scale_min
        );
        cfg.validate().unwrap();
        for (k, v) in [
            ("multicrop.crops", "six"),
            ("multicrop.crops", "-1"),
            ("multicrop.size", "big"),
            ("multicrop.size", "-3"),
            ("multicrop.scale_min", "small"),
            ("multicrop.crop", "3"),
        ] {
            let e = override_value(k, v).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{k} = {v}: {e}");
        }
    }
}

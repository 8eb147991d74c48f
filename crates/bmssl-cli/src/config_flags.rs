//! The run configuration's keys as `train` flags: one flag per key of the configuration file
//! (`inner_lr` is `--inner-lr`), read as a TOML override of that key and merged into the
//! configuration before it is read ([`bmssl::config::TrainConfig::with_overrides`]). A key added to
//! a config section is a flag with no code here; [`FLAGS`] only gives the known keys their help
//! text and the paper's names (`--delta`, `--m1`) as aliases. The tables' keys (`cactus.clusters`,
//! `multicrop.crops`) are flags under the names their flags always had ([`TABLE_FLAGS`]:
//! `--clusters`, `--cluster-scaling`, `--small-crops`, ...).
//!
//! Over 400 lines: [`FLAGS`], the 60 keys' help texts as `--help` prints them, is six lines per key
//! once formatted; the code and its tests are the last 225 lines.

use bmssl::config::{is_bool_key, override_keys, override_value};
use clap::builder::{BoolValueParser, TypedValueParser};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The flags given on the command line, as (key, value) overrides in the order of [`FLAGS`].
#[derive(Default, Debug, Clone)]
pub struct ConfigFlags {
    pub overrides: Vec<(String, String)>,
}

impl ConfigFlags {
    /// The value given for `key`, if its flag was given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.overrides
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A key's help text and aliases (names follow the glossary; the paper's / reference's names are
/// aliases). `switch`: a true/false key whose flag alone means `true`.
struct Flag {
    key: &'static str,
    help: &'static str,
    aliases: &'static [&'static str],
    switch: bool,
}

/// The keys' help, in the order `--help` lists them.
const FLAGS: &[Flag] = &[
    Flag {
        key: "method",
        help: "bmssl (eq. 3), metassl (eq. 2), or a baseline: maml, protonet, umtra, scratch, simclr, moco, swav, barlowtwins, psco, onelevel (Table 6's one-level structure), cactus-protonet, cactus-maml (CACTUs, see --embedding)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "target",
        help: "Bootstrap target: `paper` (BMSSL as the paper writes it: delta support steps, KL alone, no zeroing; other study flags given beside it still apply) or `query-step`",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "outer_loss",
        help: "BMSSL's outer loss: kl (eq. 3) or additive (MetaSSL's query loss + mu x KL)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "mu",
        help: "mu: weight of the KL in the additive outer loss",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "target_query_steps",
        help: "Query steps that end a query-step target",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "target_lr",
        help: "Step size of the target's steps (default: --inner-lr)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "target_temperature",
        help: "Target temperature: softmax(logits / T); below 1 sharpens the target",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "similarity_weight",
        help: "nu: weight of the KL between the target's and w_L's similarity distributions of the query views' projections (0: off)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "zero_head",
        help: "Zero the classifier at the start of every inner loop (true/false)",
        aliases: &[],
        switch: true,
    },
    Flag {
        key: "dataset",
        help: "`omniglot`, `miniimagenet`, `cifar-fs` or a path to an image folder root/<class>/<image>",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "split",
        help: "Split used as the unlabelled pool",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "rotations",
        help: "Omniglot rotations as extra classes (true/false)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "image_size",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "channels",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "backbone",
        help: "conv4 or conv5",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "images_per_batch",
        help: "N: source images per meta-batch",
        aliases: &["n-images"],
        switch: false,
    },
    Flag {
        key: "views",
        help: "M: views per image",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "tasks_per_batch",
        help: "K: tasks per meta-batch",
        aliases: &["blocks"],
        switch: false,
    },
    Flag {
        key: "support_views",
        help: "M1: support views per image",
        aliases: &["m1"],
        switch: false,
    },
    Flag {
        key: "query_views",
        help: "M2: query views per image",
        aliases: &["m2"],
        switch: false,
    },
    Flag {
        key: "inner_steps",
        help: "L: inner steps",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "bootstrap_steps",
        help: "delta: bootstrap steps",
        aliases: &["delta"],
        switch: false,
    },
    Flag {
        key: "inner_lr",
        help: "alpha: inner learning rate",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "outer_lr",
        help: "beta: outer learning rate",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "optimizer",
        help: "adam or sgd",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "contrastive_weight",
        help: "lambda: weight of the contrastive term",
        aliases: &["lam"],
        switch: false,
    },
    Flag {
        key: "temperature",
        help: "tau: contrastive temperature",
        aliases: &["tau"],
        switch: false,
    },
    Flag {
        key: "meta_steps",
        help: "Meta-steps (outer updates)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "first_order",
        help: "First-order meta-gradient (true/false)",
        aliases: &[],
        switch: true,
    },
    Flag {
        key: "augment",
        help: "default, a1, a2, a3 or a4",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "seed",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "checkpoint_every",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "keep_checkpoints",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "validate_every",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "validation_episodes",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "validation_mode",
        help: "adapt or proto",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "max_nonfinite_steps",
        help: "",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "inner_loss",
        help: "Inner-loop self-supervised term: supcon (the paper's), or an \"-o\" variant: simclr, moco, swav, barlowtwins (needs --support-views 2 or more)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "sgd_momentum",
        help: "SGD momentum of the outer optimiser",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "weight_decay",
        help: "L2 weight decay of the outer optimiser",
        aliases: &["wd"],
        switch: false,
    },
    Flag {
        key: "lr_schedule",
        help: "Outer learning-rate schedule: constant or cosine",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "momentum",
        help: "MoCo / PsCo: momentum of the key encoder's moving average",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "queue_size",
        help: "MoCo / PsCo: keys in the queue",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "predictor",
        help: "MoCo / PsCo: predictor MLP on the online branch (true/false)",
        aliases: &["prediction"],
        switch: true,
    },
    Flag {
        key: "prototypes",
        help: "SwAV: number of prototypes",
        aliases: &["n-prototypes"],
        switch: false,
    },
    Flag {
        key: "sinkhorn_iters",
        help: "SwAV / PsCo: Sinkhorn rounds",
        aliases: &["sinkhorn-iter"],
        switch: false,
    },
    Flag {
        key: "sinkhorn_eps",
        help: "SwAV / PsCo: Sinkhorn's entropic regularisation",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "redundancy_weight",
        help: "Barlow Twins: weight of the off-diagonal term",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "shots",
        help: "PsCo: shots per pseudo-class drawn from the queue",
        aliases: &["num-shots"],
        switch: false,
    },
    Flag {
        key: "temperature2",
        help: "PsCo: temperature of the few-shot term",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.embedding",
        help: "CACTUs: checkpoint whose backbone features are embedded and clustered (default: a SimCLR trained first in RUN_DIR/embedding for --embedding-steps steps)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.embedding_steps",
        help: "CACTUs: steps of the SimCLR embedding trained when no --embedding is given",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.partitions",
        help: "CACTUs: P, k-means partitions of the embedding",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.clusters",
        help: "CACTUs: k, clusters per partition",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.scaling",
        help: "CACTUs: random (each partition its own random diagonal scaling) or none",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "cactus.iterations",
        help: "CACTUs: most Lloyd iterations per partition",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "multicrop.crops",
        help: "SwAV: small crops per image besides the two full views (multi-crop; SwAV's ImageNet runs used 6). 0 or absent: off",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "multicrop.size",
        help: "SwAV: side of the small crops in pixels (default: the smallest side with the full views' last feature map, 16 for 28-pixel Omniglot)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "multicrop.scale_min",
        help: "SwAV: smallest area of a small crop, as a fraction of the image (0.05)",
        aliases: &[],
        switch: false,
    },
    Flag {
        key: "multicrop.scale_max",
        help: "SwAV: largest area of a small crop, as a fraction of the image (0.2)",
        aliases: &[],
        switch: false,
    },
];

/// The flag names of the tables' keys: those of CACTUs' and multi-crop's flags before every key was
/// a flag (a key of a table not listed here is `--<key>`).
const TABLE_FLAGS: &[(&str, &str)] = &[
    ("cactus.scaling", "cluster-scaling"),
    ("cactus.iterations", "kmeans-iterations"),
    ("multicrop.crops", "small-crops"),
    ("multicrop.size", "small-crop-size"),
    ("multicrop.scale_min", "small-crop-scale-min"),
    ("multicrop.scale_max", "small-crop-scale-max"),
];

/// The flag of `key`, without its dashes: the key with `-` for `_` (`inner-lr`); for a key of a
/// table, its [`TABLE_FLAGS`] name or its own name (`cactus.clusters` is `clusters`).
fn long_name(key: &str) -> String {
    if let Some((_, long)) = TABLE_FLAGS.iter().find(|(k, _)| *k == key) {
        return long.to_string();
    }
    let name = key.rsplit_once('.').map_or(key, |(_, name)| name);
    name.replace('_', "-")
}

/// Every key in [`FLAGS`] order, then keys without an entry (a new key of a config section).
fn keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = FLAGS.iter().map(|f| f.key).collect();
    let new: Vec<&'static str> = override_keys()
        .into_iter()
        .filter(|k| !keys.contains(k))
        .collect();
    keys.extend(new);
    keys
}

/// `key`'s flag: `--key-with-dashes <KEY>`, its value checked as the key's (a usage error
/// otherwise).
fn flag(key: &'static str) -> Arg {
    let entry = FLAGS.iter().find(|f| f.key == key);
    // clap keeps `&'static str` names; the few flags are built once per process.
    let long: &'static str = Box::leak(long_name(key).into_boxed_str());
    let value_name: &'static str =
        Box::leak(long.replace('-', "_").to_ascii_uppercase().into_boxed_str());
    let mut arg = Arg::new(key)
        .long(long)
        .value_name(value_name)
        .action(ArgAction::Set);
    match entry {
        Some(f) => {
            if !f.help.is_empty() {
                arg = arg.help(f.help);
            }
            arg = arg.visible_aliases(f.aliases);
        }
        None => arg = arg.help("A key of the configuration file (docs/training.md)"),
    }
    if is_bool_key(key) {
        arg = arg.value_parser(BoolValueParser::new().map(|b| b.to_string()));
        if entry.is_some_and(|f| f.switch) {
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
    } else {
        arg = arg.value_parser(move |raw: &str| override_value(key, raw).map(|_| raw.to_string()));
    }
    arg
}

impl clap::Args for ConfigFlags {
    fn augment_args(cmd: Command) -> Command {
        keys().into_iter().fold(cmd, |cmd, key| cmd.arg(flag(key)))
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ConfigFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let overrides = keys()
            .into_iter()
            .filter_map(|k| Some((k.to_string(), m.get_one::<String>(k)?.clone())))
            .collect();
        Ok(ConfigFlags { overrides })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    fn parse(args: &[&str]) -> Result<ConfigFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("train").chain(args.iter().copied())).map(|c| c.flags)
    }

    #[test]
    fn every_key_of_the_configuration_file_is_a_flag() {
        let flags = keys();
        assert_eq!(flags.len(), override_keys().len());
        assert!(
            FLAGS.iter().all(|f| override_keys().contains(&f.key)),
            "a FLAGS entry names no key"
        );
    }

    #[test]
    fn flags_and_the_papers_aliases_become_overrides_of_their_keys() {
        let f = parse(&[
            "--inner-lr",
            "0.1",
            "--delta",
            "2",
            "--m1",
            "2",
            "--zero-head",
            "--target",
            "paper",
        ])
        .unwrap();
        assert_eq!(f.get("inner_lr"), Some("0.1"));
        assert_eq!(f.get("bootstrap_steps"), Some("2"));
        assert_eq!(f.get("support_views"), Some("2"));
        assert_eq!(f.get("zero_head"), Some("true"));
        assert_eq!(f.get("target"), Some("paper"));
        assert_eq!(f.get("outer_lr"), None);
    }

    #[test]
    fn no_two_keys_share_a_flag_name_or_alias() {
        let mut names: Vec<String> = keys().into_iter().map(long_name).collect();
        names.extend(
            FLAGS
                .iter()
                .flat_map(|f| f.aliases.iter().map(|a| a.to_string())),
        );
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn cactus_flags_keep_their_names_and_set_the_keys_of_the_cactus_table() {
        let f = parse(&[
            "--embedding",
            "runs/simclr/checkpoint.safetensors",
            "--embedding-steps",
            "20",
            "--partitions",
            "4",
            "--clusters",
            "30",
            "--cluster-scaling",
            "none",
            "--kmeans-iterations",
            "7",
        ])
        .unwrap();
        assert_eq!(
            f.get("cactus.embedding"),
            Some("runs/simclr/checkpoint.safetensors")
        );
        assert_eq!(f.get("cactus.embedding_steps"), Some("20"));
        assert_eq!(f.get("cactus.partitions"), Some("4"));
        assert_eq!(f.get("cactus.clusters"), Some("30"));
        assert_eq!(f.get("cactus.scaling"), Some("none"));
        assert_eq!(f.get("cactus.iterations"), Some("7"));
        let e = parse(&["--cluster-scaling", "diagonal"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid value 'diagonal' for '--cluster-scaling <CLUSTER_SCALING>'"),
            "{e}"
        );
        assert!(parse(&["--clusters", "many"]).is_err());
    }

    #[test]
    fn multicrop_flags_keep_their_names_and_set_the_keys_of_the_multicrop_table() {
        let f = parse(&[
            "--small-crops",
            "6",
            "--small-crop-size",
            "20",
            "--small-crop-scale-min",
            "0.1",
            "--small-crop-scale-max",
            "0.3",
        ])
        .unwrap();
        assert_eq!(f.get("multicrop.crops"), Some("6"));
        assert_eq!(f.get("multicrop.size"), Some("20"));
        assert_eq!(f.get("multicrop.scale_min"), Some("0.1"));
        assert_eq!(f.get("multicrop.scale_max"), Some("0.3"));
        let e = parse(&["--small-crops", "six"]).unwrap_err().to_string();
        assert!(
            e.contains("invalid value 'six' for '--small-crops <SMALL_CROPS>'"),
            "{e}"
        );
        assert!(parse(&["--small-crop-size", "-1"]).is_err());
        assert!(parse(&["--small-crop-scale-min", "small"]).is_err());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_usage_error_naming_the_flag() {
        let e = parse(&["--inner-steps", "five"]).unwrap_err().to_string();
        assert!(
            e.contains("invalid value 'five' for '--inner-steps <INNER_STEPS>'"),
            "{e}"
        );
        assert!(parse(&["--method", "bmsl"]).is_err());
        assert!(
            parse(&["--rotations"]).is_err(),
            "--rotations takes a value"
        );
    }
}

//! The paper's published numbers (arXiv 2308.14267), the column every table of the report sets
//! ours beside. Only what the paper prints is here; where it prints no value for a row the
//! functions return `None` and the report says so ([`NOT_AVAILABLE`]).

use crate::eval::Setting;

/// What the report writes where the paper's value is unknown to us.
pub const NOT_AVAILABLE: &str = "the paper prints no value for this row";

/// Table 3, Omniglot: test accuracy (%) for 5-way 1-shot, 5-way 5-shot, 20-way 1-shot, by method
/// name as in configuration files (`TrainMethod::as_str`; methods that other issues add to the
/// toolkit appear with their paper row as soon as their name matches).
const TABLE3_OMNIGLOT: &[(&str, [f64; 3])] = &[
    ("bmssl", [96.02, 99.56, 91.41]),
    ("metassl", [91.36, 95.35, 88.64]),
    ("maml", [93.22, 97.53, 82.36]),
    ("protonet", [95.83, 99.29, 92.80]),
    ("umtra", [83.32, 94.23, 75.84]),
    ("scratch", [50.29, 72.82, 26.20]),
    ("simclr", [90.83, 97.67, 81.67]),
    ("moco", [87.83, 95.52, 80.03]),
    ("swav", [91.28, 97.21, 82.02]),
    ("psco", [96.18, 98.22, 89.32]),
    // The paper prints one CACTUs row (Hsu et al. 2019); it is set beside both of ours.
    ("cactus-protonet", [65.29, 86.25, 49.54]),
    ("cactus-maml", [65.29, 86.25, 49.54]),
];

/// The paper's Table 3 accuracy (%) of `method` in `setting`, if it reports one.
pub fn table3(method: &str, setting: Setting) -> Option<f64> {
    let column = match (setting.ways, setting.shots) {
        (5, 1) => 0,
        (5, 5) => 1,
        (20, 1) => 2,
        _ => return None,
    };
    TABLE3_OMNIGLOT
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, v)| v[column])
}

/// Tables 5-7 of the paper, all measured on **miniImageNet** (the report prints them beside our
/// Omniglot figures and says so): Table 5 top-1 accuracy (%) by augmentation level, Table 6 top-1
/// accuracy (%) by learning structure, Table 7 at L = 5 by delta: the accuracy the paper labels
/// "Top-5 ACC(%)" and meta-training steps per second on a V100. Read from the paper's text
/// (`shared/paper`, page 9); the +- of Tables 5 and 6 are in [`ABLATION_CI`].
const ABLATION_MINI_IMAGENET: &[(&str, &str, &str, f64)] = &[
    ("table5", "a1", "accuracy", 49.730),
    ("table5", "a2", "accuracy", 49.990),
    ("table5", "a3", "accuracy", 49.789),
    ("table5", "a4", "accuracy", 49.832),
    ("table6", "m1", "accuracy", 39.583),
    ("table6", "m2", "accuracy", 46.184),
    ("table6", "m3", "accuracy", 49.987),
    ("table7", "delta1", "accuracy", 63.832),
    ("table7", "delta5", "accuracy", 64.443),
    ("table7", "delta10", "accuracy", 64.592),
    ("table7", "delta15", "accuracy", 64.588),
    ("table7", "delta20", "accuracy", 64.605),
    ("table7", "delta1", "speed", 4.3),
    ("table7", "delta5", "speed", 3.2),
    ("table7", "delta10", "speed", 2.6),
    ("table7", "delta15", "speed", 2.1),
    ("table7", "delta20", "speed", 1.7),
];

/// The +- the paper prints beside Tables 5 and 6's accuracies (Table 7 prints none).
pub const ABLATION_CI: &[(&str, &str, f64)] = &[
    ("table5", "a1", 0.303),
    ("table5", "a2", 0.238),
    ("table5", "a3", 0.210),
    ("table5", "a4", 0.199),
    ("table6", "m1", 0.482),
    ("table6", "m2", 0.298),
    ("table6", "m3", 0.283),
];

/// Which dataset the paper's figures of a table come from: Table 3's Omniglot column, the
/// ablations' miniImageNet.
pub fn dataset_of(table: &str) -> &'static str {
    match table {
        "table5" | "table6" | "table7" => "miniImageNet",
        _ => "Omniglot",
    }
}

/// The paper's value for a row of Table 5, 6 or 7 (`table` = `table5`..., `key` = the row's
/// `paper_key`, `column` = `accuracy` or `speed`): miniImageNet figures ([`dataset_of`]).
pub fn ablation(table: &str, key: &str, column: &str) -> Option<f64> {
    ABLATION_MINI_IMAGENET
        .iter()
        .find(|(t, k, c, _)| *t == table && *k == key && *c == column)
        .map(|(_, _, _, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ablation_row_of_the_plan_has_the_papers_mini_imagenet_figure() {
        for key in ["a1", "a2", "a3", "a4"] {
            assert!(ablation("table5", key, "accuracy").is_some(), "{key}");
        }
        for key in ["m1", "m2", "m3"] {
            assert!(ablation("table6", key, "accuracy").is_some(), "{key}");
        }
        for d in [1, 5, 10, 15, 20] {
            let key = format!("delta{d}");
            assert!(ablation("table7", &key, "accuracy").is_some(), "{key}");
            assert!(ablation("table7", &key, "speed").is_some(), "{key}");
        }
        // The paper's Table 6 ordering, as printed: M1 < M2 < M3.
        let m = |k| ablation("table6", k, "accuracy").unwrap();
        assert!(m("m1") < m("m2") && m("m2") < m("m3"));
        assert_eq!(ablation("table5", "default", "accuracy"), None);
        assert_eq!(dataset_of("table7"), "miniImageNet");
    }
}

//! The paper's published numbers (arXiv 2308.14267), the column every table of the report sets
//! ours beside. Only what the paper prints is here; where its value could not be read offline the
//! functions return `None` and the report says so ([`NOT_AVAILABLE`]).

use crate::eval::Setting;

/// What the report writes where the paper's value is unknown to us.
pub const NOT_AVAILABLE: &str = "paper value not available offline";

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

/// The paper's value for a row of Table 5, 6 or 7 (`table` = `table5`..., `key` = the row's
/// `paper_key`, `column` = `accuracy` or `speed`). The paper's ablation tables could not be read
/// offline when this was written, so there is none: the report prints [`NOT_AVAILABLE`] rather than
/// a number from memory.
pub fn ablation(_table: &str, _key: &str, _column: &str) -> Option<f64> {
    None
}

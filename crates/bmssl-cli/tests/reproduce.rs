//! `bmssl reproduce` at the command line: the plan and its estimate, and one-line errors. The
//! tiny reproduction itself is tested in the library (`bmssl::reproduce`), on synthetic data.

mod common;

use common::*;

#[test]
fn the_estimate_lists_every_part_of_the_plan_without_running_anything() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("r");
    let o = run(&[
        "reproduce",
        "--budget",
        "small",
        "--estimate-only",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let listing = String::from_utf8_lossy(&o.stdout);
    for part in [
        "bmssl-paper",
        "bmssl-query-step",
        "bmssl-paper-L1-additive-mu0.3-zh",
        "metassl-L1-zh",
        "maml",
        "protonet",
        "umtra",
        "scratch",
        "onelevel",
        "bmssl-paper-a4",
        "bmssl-paper-delta20",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.split_whitespace().next() == Some(part)),
            "{part} missing from:\n{listing}"
        );
    }
    assert!(stderr(&o).contains("predicted"), "{}", stderr(&o));
    assert!(!dir.exists(), "an estimate writes nothing");
}

#[test]
fn a_wrong_budget_or_a_missing_reproduction_is_one_clear_error_line() {
    let o = run(&["reproduce", "--budget", "huge", "--estimate-only"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("`huge` is not one of tiny, small, full"), "{e}");

    let out = tempfile::tempdir().unwrap();
    let o = run(&[
        "reproduce",
        "--budget",
        "tiny",
        "--report-only",
        "--out",
        out.path().join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.lines().last().unwrap().contains("plan.json"), "{e}");
}

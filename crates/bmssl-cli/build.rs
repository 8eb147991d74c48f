//! Records the commit the binary is built from as `BMSSL_BUILD_COMMIT` (`-dirty` when tracked
//! files differ from it, `unknown` outside a git checkout), so that a report names the code that
//! produced it rather than whatever the directory it runs in holds at the end.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    // Rebuilt when the checked-out commit, the index or either crate's sources change (paths that
    // do not exist, as in a worktree whose `.git` is a file, are left out: cargo would otherwise
    // rerun this on every build).
    for p in ["../../.git/HEAD", "../../.git/index", "../bmssl/src", "src"] {
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=BMSSL_BUILD_COMMIT={commit}");
}

//! Standard output, without panics: every `println!` of the CLI comes here (main.rs shadows the
//! standard macro).
//!
//! * A closed pipe (`bmssl eval ... | head -1`) is not an error: output stops quietly, the command
//!   finishes its work (files such as `eval.json` are still written) and exits 0, as ripgrep does.
//! * Any other write error (`> /dev/full`) is remembered, the work still finishes, and the command
//!   then fails with one line, `error: writing to standard output: <OS error>`, exit 1.
//! * A standard output closed before the start (`>&-`) is reopened on `/dev/null` by Rust's
//!   runtime: it is `> /dev/null`, indistinguishable from it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes one line (and flushes it).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut text = std::fmt::format(args);
    text.push('\n');
    bytes(text.as_bytes());
}

/// Writes bytes as they are (and flushes them).
pub fn bytes(b: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(b).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        } else {
            *failed = Some(e);
        }
    }
}

/// At the end of a command: the first write error other than a closed pipe, if any.
pub fn finish() -> anyhow::Result<()> {
    if !CLOSED.load(Ordering::Relaxed) {
        if let Err(e) = std::io::stdout().lock().flush() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(anyhow::anyhow!("writing to standard output: {e}"));
            }
        }
    }
    match FAILED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
        None => Ok(()),
    }
}

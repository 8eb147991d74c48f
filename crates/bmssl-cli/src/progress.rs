//! Progress a user sees wherever stderr goes: a bar on a terminal, a log line at most every
//! [`LOG_EVERY`] (and one at the end) when stderr is a file or a pipe, nothing with `--quiet`.
//!
//! A bar drawn into a file shows nothing at all (indicatif hides itself off a terminal), so a run
//! redirected to a log used to be silent for minutes: [`Ticker`] writes lines instead.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Least time between two log lines of one [`Ticker`] when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// Timed log lines (stderr is a file or a pipe).
    Lines,
    /// Nothing (`--quiet`).
    Hidden,
}

impl Style {
    /// Bar on a terminal, lines elsewhere, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Style::Hidden
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// One counted piece of work (meta-steps, episodes, images). Shared by reference across worker
/// threads: `inc` is thread-safe.
pub struct Ticker {
    bar: Option<ProgressBar>,
    lines: bool,
    label: Mutex<String>,
    len: u64,
    pos: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Ticker {
    /// A ticker of `len` units named `label` (e.g. `5w1s episodes`), drawn as `style`.
    pub fn new(len: u64, label: impl Into<String>, style: Style) -> Self {
        let label = label.into();
        let bar = (style == Style::Bar).then(|| {
            let b = ProgressBar::new(len);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(label.clone());
            b
        });
        let now = Instant::now();
        Ticker {
            bar,
            lines: style == Style::Lines,
            label: Mutex::new(label),
            len,
            pos: AtomicU64::new(0),
            started: now,
            last_line: Mutex::new(now),
        }
    }

    /// One more unit done.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// `n` more units done.
    pub fn inc_by(&self, n: u64) {
        let pos = self.pos.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        self.maybe_line(pos);
    }

    /// `pos` units done (e.g. the meta-step just finished).
    pub fn set_position(&self, pos: u64) {
        self.pos.store(pos, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        self.maybe_line(pos);
    }

    /// Replaces the text beside the count (the bar's message; the log line's label).
    pub fn set_label(&self, label: impl Into<String>) {
        let label = label.into();
        if let Some(b) = &self.bar {
            b.set_message(label.clone());
        }
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = label;
    }

    /// Prints a line above the bar (or as it is, without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar (log lines already ended with the last unit).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn maybe_line(&self, pos: u64) {
        if !self.lines {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        // Every LOG_EVERY, and once when the work is done.
        if last.elapsed() < LOG_EVERY && pos != self.len {
            return;
        }
        *last = Instant::now();
        eprintln!("{}", self.line(pos));
    }

    /// `label: pos/len (p%), elapsed m:ss, about m:ss left`.
    fn line(&self, pos: u64) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = if pos > 0 && pos < self.len {
            format!(
                ", about {} left",
                clock(elapsed / pos as f64 * (self.len - pos) as f64)
            )
        } else {
            String::new()
        };
        let label = self.label.lock().unwrap_or_else(|e| e.into_inner()).clone();
        format!(
            "{label}: {pos}/{} ({:.0}%), {} elapsed{left}",
            self.len,
            100.0 * pos as f64 / self.len.max(1) as f64,
            clock(elapsed)
        )
    }
}

/// `h:mm:ss` or `m:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_says_where_the_work_is_and_how_long_is_left() {
        let t = Ticker::new(200, "5w1s episodes", Style::Hidden);
        assert_eq!(t.line(0), "5w1s episodes: 0/200 (0%), 0:00 elapsed");
        let l = t.line(50);
        assert!(
            l.starts_with("5w1s episodes: 50/200 (25%), 0:00 elapsed, about 0:00 left"),
            "{l}"
        );
        t.set_label("meta-steps");
        assert!(t.line(200).starts_with("meta-steps: 200/200 (100%)"));
    }

    #[test]
    fn clock_reads_minutes_and_hours() {
        assert_eq!(clock(59.4), "0:59");
        assert_eq!(clock(61.0), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}

//! One error type for the whole library. Every variant names the file, field or value at fault,
//! so the CLI can print a single clear line and exit non-zero.

use std::path::PathBuf;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    ///
    /// The OS error is part of the message and deliberately not a `source()`: the CLI prints the
    /// error chain on one line, which would otherwise repeat it.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file exists but its contents are not what we expect (corrupt image, bad zip, bad npz...).
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A configuration value is impossible (names the field).
    #[error("invalid value for `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// A dataset cannot serve the request (too few classes, empty folder...).
    #[error("dataset {dataset}: {reason}")]
    Dataset { dataset: String, reason: String },
    /// Tensor shapes do not line up: a programming or file-format error, reported, never a panic.
    #[error("shape mismatch in {context}: {reason}")]
    Shape { context: String, reason: String },
    /// A directory is locked by another process (a run being trained).
    #[error("{path} is in use by {holder} (a run directory takes one process at a time: wait for it to end, or use another directory)")]
    Busy { path: PathBuf, holder: String },
    /// A loss or gradient became NaN or infinite.
    #[error("non-finite value in {what}")]
    NonFinite { what: String },
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every output of a fallible parallel map, in order, or its first error *in input order*.
/// rayon's own `collect::<Result<_>>()` stops at whichever error a thread meets first, so with
/// several bad inputs the message would change from run to run. This waits for all of them (no
/// cost when nothing fails; a collected `Vec` keeps the input order) and reports the same one
/// every time.
pub fn collect_in_order<T: Send>(
    results: impl rayon::iter::ParallelIterator<Item = Result<T>>,
) -> Result<Vec<T>> {
    results.collect::<Vec<Result<T>>>().into_iter().collect()
}

impl Error {
    /// An I/O error that names its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
    /// A corrupt-file error that names its path.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
    /// A configuration error that names its field.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// A dataset error that names its dataset.
    pub fn dataset(dataset: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Dataset {
            dataset: dataset.into(),
            reason: reason.into(),
        }
    }
    /// A shape error that names where it happened.
    pub fn shape(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Shape {
            context: context.into(),
            reason: reason.into(),
        }
    }
}

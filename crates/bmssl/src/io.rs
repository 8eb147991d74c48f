//! File utilities every layer may use: atomic writes and the checks made before work whose
//! result is to be written.
//!
//! Files are written atomically: a temporary file in the same directory (`.<name>.tmp-<pid>`),
//! flushed to disk, then renamed over the target, so a crash mid-write leaves the previous file
//! intact and readers see either the old file or the complete new one.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory of `path` and this process's temporary file beside it (`.<name>.tmp-<pid>`).
fn temp_beside(path: &Path) -> (&Path, PathBuf) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    (dir, tmp)
}

/// Whether a file name is one of [`write_atomic`]'s temporary files (`.<name>.tmp-<pid>`), as a
/// process killed in the middle of a write leaves behind.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one
/// (temporary file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, tmp) = temp_beside(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Fails, naming `path`, unless a file can be created beside it (its directory exists and is
/// writable): checked before work whose result is to be written there, so that a typo in an output
/// path does not cost the work. Nothing is left behind.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    let (_, tmp) = temp_beside(path);
    std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_sits_beside_the_target_and_is_recognised() {
        let (dir, tmp) = temp_beside(Path::new("runs/a/metrics.jsonl"));
        assert_eq!(dir, Path::new("runs/a"));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".metrics.jsonl.tmp-"), "{name}");
        assert!(is_temp_name(name));
        assert!(!is_temp_name("metrics.jsonl"));
        let (dir, _) = temp_beside(Path::new("bare.txt"));
        assert_eq!(dir, Path::new("."));
    }
}

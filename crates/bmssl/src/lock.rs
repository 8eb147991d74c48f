//! Advisory locks on directories (run directories, sweep parts): one process at a time.
//!
//! The lock is `flock`-style (`fs4`) on `DIR/.lock`, held while the returned [`DirLock`] lives and
//! released by the kernel when the process dies, however it dies (no stale lock after a SIGKILL).
//! The holder writes its PID into the file, so that a refused process can say who holds it.

use crate::{Error, Result};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Locks `dir` (which must exist): `Ok(Ok(lock))`, or `Ok(Err(pid))` when another process holds it
/// (`pid` as that process wrote it, `None` when it has not written it yet or is an older binary).
pub fn try_lock(dir: &Path) -> Result<std::result::Result<DirLock, Option<u32>>> {
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {
            let pid = std::process::id().to_string();
            (|| -> std::io::Result<()> {
                file.set_len(0)?;
                file.rewind()?;
                file.write_all(pid.as_bytes())?;
                file.flush()
            })()
            .map_err(|e| Error::io(&path, e))?;
            Ok(Ok(DirLock { _file: file, path }))
        }
        Err(fs4::TryLockError::WouldBlock) => {
            // The holder writes its PID right after locking: give it a moment.
            let mut pid = None;
            for _ in 0..20 {
                let mut text = String::new();
                let _ = file.rewind();
                let _ = (&file).take(32).read_to_string(&mut text);
                pid = text.trim().parse().ok();
                if pid.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(Err(pid))
        }
        Err(fs4::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Locks a run directory for a training process, or says who holds it (one line).
pub fn lock_run_dir(dir: &Path) -> Result<DirLock> {
    match try_lock(dir)? {
        Ok(lock) => Ok(lock),
        Err(pid) => Err(Error::Busy {
            path: dir.to_path_buf(),
            holder: match pid {
                Some(p) => format!("process {p}"),
                None => "another process".to_string(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_run_dir(dir.path()).unwrap();
        let err = lock_run_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())) && err.contains("is in use"),
            "{err}"
        );
        drop(first);
        lock_run_dir(dir.path()).unwrap();
    }
}

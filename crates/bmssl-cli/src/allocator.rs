//! mimalloc's purge delay. By default mimalloc returns ("purges") memory it has not reused for a
//! while to the kernel (1 s in mimalloc v3, the version the `mimalloc` crate builds); the engine
//! frees and reallocates megabyte-sized activations at every inner step, so pages were returned
//! and faulted back in (and zeroed by the kernel) over and over. Measured on the 2-core EPYC,
//! 2026-12-07, one binary, alternating runs with `MIMALLOC_PURGE_DELAY=1000` and without purging:
//! +1 to +10% meta-steps/s (most at 3x84x84), peak resident memory +0-9%
//! (`docs/results/engine-purge-2026-12-07/`).
//!
//! The binary therefore turns purging off at start-up, unless the user chose a purge delay
//! (`MIMALLOC_PURGE_DELAY` in the environment, which mimalloc reads and which is left alone).
//! libmimalloc-sys exports no constant for this option, so its index in mimalloc's `mi_option_e`
//! is written here (15 in the v2 and v3 sources the crate vendors), and the option is only changed
//! while it reads v3's default (1000 ms): an index that named another option after an upgrade
//! would leave the allocator as it is, and the test below fails.

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (`include/mimalloc.h`, v2 and v3).
const PURGE_DELAY: c_int = 15;
/// Its default in mimalloc v3 (`src/options.c`), in milliseconds.
const PURGE_DELAY_DEFAULT: c_long = 1000;

extern "C" {
    // mimalloc's C API, linked through the `mimalloc` crate (libmimalloc-sys).
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Turns mimalloc's purging off (purge delay -1) unless `MIMALLOC_PURGE_DELAY` is set; returns
/// whether it did.
pub fn keep_freed_memory() -> bool {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return false;
    }
    // SAFETY: plain reads and writes of mimalloc's option table, valid at any time.
    unsafe {
        if mi_option_get(PURGE_DELAY) != PURGE_DELAY_DEFAULT {
            return false;
        }
        mi_option_set(PURGE_DELAY, -1);
        mi_option_get(PURGE_DELAY) == -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_found_at_its_default_and_turned_off() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // Index 15 reads 1000 ms (the purge delay's default); its neighbours read theirs
        // (the deprecated eager_commit_delay 1, use_numa_nodes 0), so the index still names it.
        // SAFETY: reads of mimalloc's option table.
        let (before, after) = unsafe {
            (
                mi_option_get(PURGE_DELAY - 1),
                mi_option_get(PURGE_DELAY + 1),
            )
        };
        assert_eq!((before, after), (1, 0), "mimalloc's option table moved");
        assert!(keep_freed_memory());
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, -1);
        assert!(
            !keep_freed_memory(),
            "a second call finds it already changed"
        );
    }
}

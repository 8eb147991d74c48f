//! Decoded-image cache: a data set's pixels decoded once, stored in one versioned file, and read
//! back with a single file read on every later load.
//!
//! Why: decoding the 38,400 JPEGs of miniImageNet's training split takes far longer than reading
//! 800 MB of raw pixels, and it is repeated on every run. The cache is never trusted blindly:
//!
//! * the header holds a **fingerprint** of the source (file names, sizes and modification times,
//!   the split, the image shape and the reader's version). A different fingerprint means the
//!   source changed: the cache is *stale* and rebuilt;
//! * the last four bytes are a **CRC-32** of everything before them. A mismatch (a flipped bit, a
//!   truncated copy) means the cache is *corrupt*: a warning is printed and it is rebuilt;
//! * it is written with [`crate::io::write_atomic`], so a crash mid-write never leaves a
//!   half file under the real name.
//!
//! The file's bytes are the store's memory: [`ImageStore`] keeps the whole file (header, pixels,
//! checksum) in one buffer, so saving is one write with no copy and loading is one read.
//!
//! # File format (version 1, little-endian)
//! | bytes | field |
//! |---|---|
//! | 8 | magic `BMSSLIMG` |
//! | 4 | format version (1) |
//! | 4 | header length *H* (offset of the first pixel) |
//! | 12 | channels, height, width (u32 each) |
//! | 4 | number of classes *C* |
//! | 8 | number of images *N* (u64) |
//! | 32 | fingerprint (SHA-256) |
//! | 4 *C* | images per class (u32 each) |
//! | ... | class names: u32 length + UTF-8 bytes, *C* times |
//! | *N* x numel | pixels, image after image, class after class, CHW `u8` each |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Configuration: the cache lives in `<dataset root>/.bmssl-cache/` unless [`CacheOptions::dir`]
//! (or `$BMSSL_CACHE_DIR`) names another directory; [`CacheOptions::disabled`] (or
//! `BMSSL_NO_CACHE=1`) skips it entirely.
//!
//! Over 400 lines: the cache's file format, the validation of every field on load, and the build
//! and load paths; about 145 lines are tests.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ClassLayout, Dataset, ImageShape};
use crate::{Error, Result};

/// Environment variable naming the cache directory (instead of `<dataset root>/.bmssl-cache`).
pub const CACHE_DIR_ENV: &str = "BMSSL_CACHE_DIR";
/// Environment variable that, set to `1` (or `true`/`yes`), skips the cache.
pub const NO_CACHE_ENV: &str = "BMSSL_NO_CACHE";
/// Name of the default cache folder inside a dataset root.
pub const DEFAULT_CACHE_FOLDER: &str = ".bmssl-cache";
/// First eight bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"BMSSLIMG";
/// Cache format version; a file with another version is rebuilt.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the fixed part of the header (magic to fingerprint).
const FIXED_HEADER: usize = 8 + 4 + 4 + 12 + 4 + 8 + 32;
/// Bytes of the trailing checksum.
const TRAILER: usize = 4;

/// Where (and whether) to cache decoded images.
///
/// Why an option and not only environment variables: library users and tests choose per load;
/// [`CacheOptions::from_env`] gives the CLI's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// Cache directory; `None` means `<dataset root>/.bmssl-cache`.
    pub dir: Option<PathBuf>,
    /// Skip the cache: always decode, never read or write a cache file.
    pub disabled: bool,
}

impl CacheOptions {
    /// The options set by `$BMSSL_CACHE_DIR` and `$BMSSL_NO_CACHE`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os(CACHE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let disabled = std::env::var(NO_CACHE_ENV)
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "1" || v == "true" || v == "yes"
            })
            .unwrap_or(false);
        CacheOptions { dir, disabled }
    }

    /// The cache file for `key` (a file-name-safe description such as
    /// `miniimagenet-train-3x84x84`) of the dataset rooted at `root`; `None` when disabled.
    pub fn file_for(&self, root: &Path, key: &str) -> Option<PathBuf> {
        if self.disabled {
            return None;
        }
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| root.join(DEFAULT_CACHE_FOLDER));
        Some(dir.join(format!("{key}.u8")))
    }
}

/// Why a cache file was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheMiss {
    /// No cache file yet.
    Absent,
    /// The file describes another source (or shape, or format version): the source changed.
    Stale,
    /// The file is damaged (bad checksum, truncated, inconsistent header): the reason.
    Corrupt(String),
}

/// Where a loaded set of images came from.
///
/// Why: the CLI reports it, and tests check that a second load really reads the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// The cache is switched off: images were decoded.
    Disabled,
    /// Read from a valid cache file: nothing was decoded.
    Hit,
    /// Decoded from the source because the cache could not be used; `saved` is `Err(reason)`
    /// when writing the new cache file failed (the images are still good).
    Built {
        /// Why the cache was not used.
        miss: CacheMiss,
        /// Whether the new cache file was written.
        saved: std::result::Result<(), String>,
    },
}

impl CacheStatus {
    /// True when the images came from the cache file.
    pub fn is_hit(&self) -> bool {
        matches!(self, CacheStatus::Hit)
    }
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStatus::Disabled => f.write_str("off (decoded)"),
            CacheStatus::Hit => f.write_str("hit (read from cache)"),
            CacheStatus::Built { miss, saved } => {
                let why = match miss {
                    CacheMiss::Absent => "no cache yet".to_string(),
                    CacheMiss::Stale => "source changed".to_string(),
                    CacheMiss::Corrupt(r) => format!("cache corrupt: {r}"),
                };
                match saved {
                    Ok(()) => write!(f, "built ({why}; decoded and saved)"),
                    Err(e) => write!(f, "built ({why}; decoded, not saved: {e})"),
                }
            }
        }
    }
}

/// A fingerprint of a data source: SHA-256 over everything that, changed, changes the pixels.
///
/// Why not hash the images themselves: that would read all 60,000 files on every load, which is
/// what the cache avoids. Names, sizes and modification times catch any replaced, added, removed
/// or rewritten file at the cost of one `stat` each.
#[derive(Clone, Debug, Default)]
pub struct Fingerprint {
    hasher: Sha256,
}

impl Fingerprint {
    /// An empty fingerprint; start with the reader's name and version.
    pub fn new() -> Self {
        Fingerprint::default()
    }
    /// Mix in a string (length-prefixed, so concatenations cannot collide).
    pub fn add_str(&mut self, s: &str) -> &mut Self {
        self.add_bytes(s.as_bytes())
    }
    /// Mix in bytes (length-prefixed).
    pub fn add_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.hasher.update((b.len() as u64).to_le_bytes());
        self.hasher.update(b);
        self
    }
    /// Mix in a number.
    pub fn add_u64(&mut self, v: u64) -> &mut Self {
        self.hasher.update(v.to_le_bytes());
        self
    }
    /// Mix in a file's size and modification time (nanoseconds since the epoch, 0 if unknown).
    ///
    /// Errors name the file when it cannot be inspected (missing, unreadable).
    pub fn add_file(&mut self, path: &Path) -> Result<&mut Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        Ok(self.add_metadata(&meta))
    }
    /// Mix in size and modification time from metadata already read.
    pub fn add_metadata(&mut self, meta: &std::fs::Metadata) -> &mut Self {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.add_u64(meta.len()).add_u64(mtime)
    }
    /// The 32-byte digest.
    pub fn finish(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

/// Images grouped by class, held in the exact bytes of a cache file (header, pixels, checksum).
///
/// Why one buffer: writing the cache is a single write of this buffer and reading it a single
/// read into it; there is never a second copy of the pixels. It is also the storage of the
/// miniImageNet and CIFAR-FS readers whether or not the cache is enabled.
#[derive(Clone, Debug)]
pub struct ImageStore {
    name: String,
    class_names: Vec<String>,
    /// Where each image lies, counted from `pixel_offset`.
    layout: ClassLayout,
    /// The whole cache file: header, pixels, CRC-32.
    bytes: Vec<u8>,
    /// Offset of the first pixel in `bytes`.
    pixel_offset: usize,
}

impl ImageStore {
    /// A store of zeroed pixels for `counts[c]` images of each class, ready to be filled through
    /// [`pixels_mut`](Self::pixels_mut) and sealed with [`seal`](Self::seal).
    ///
    /// Errors if the shape has no pixels, a class has no images, or the counts and names differ
    /// in length.
    pub fn new(
        name: impl Into<String>,
        shape: ImageShape,
        class_names: Vec<String>,
        counts: &[usize],
        fingerprint: [u8; 32],
    ) -> Result<Self> {
        let name = name.into();
        if shape.numel() == 0 {
            return Err(Error::dataset(
                name,
                format!("image shape {shape} has no pixels"),
            ));
        }
        if class_names.len() != counts.len() {
            return Err(Error::dataset(
                name,
                format!(
                    "{} class names for {} classes",
                    class_names.len(),
                    counts.len()
                ),
            ));
        }
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(Error::dataset(
                name,
                format!("class {} ({}) has no images", c, class_names[c]),
            ));
        }
        let mut header = Vec::with_capacity(FIXED_HEADER + 64 * counts.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes()); // header length, patched below
        for d in [shape.channels, shape.height, shape.width, counts.len()] {
            header.extend_from_slice(&(d as u32).to_le_bytes());
        }
        let total: usize = counts.iter().sum();
        header.extend_from_slice(&(total as u64).to_le_bytes());
        header.extend_from_slice(&fingerprint);
        for &n in counts {
            header.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for n in &class_names {
            header.extend_from_slice(&(n.len() as u32).to_le_bytes());
            header.extend_from_slice(n.as_bytes());
        }
        let pixel_offset = header.len();
        header[12..16].copy_from_slice(&(pixel_offset as u32).to_le_bytes());
        let payload = total
            .checked_mul(shape.numel())
            .ok_or_else(|| Error::dataset(&name, "too many pixels"))?;
        let mut bytes = header;
        bytes.resize(pixel_offset + payload + TRAILER, 0);
        Ok(ImageStore {
            name,
            class_names,
            layout: ClassLayout::from_counts(shape, counts.iter().copied()),
            bytes,
            pixel_offset,
        })
    }

    /// All pixels, image after image (class by class), CHW each: fill them before sealing.
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        let end = self.bytes.len() - TRAILER;
        &mut self.bytes[self.pixel_offset..end]
    }

    /// Write the checksum. Call once the pixels are final (before saving).
    pub fn seal(&mut self) {
        let end = self.bytes.len() - TRAILER;
        let crc = crc32fast::hash(&self.bytes[..end]);
        self.bytes[end..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Class names, in class-index order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Rename (the cache file does not store the display name).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// The fingerprint stored in the header.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut f = [0u8; 32];
        f.copy_from_slice(&self.bytes[FIXED_HEADER - 32..FIXED_HEADER]);
        f
    }

    /// Write the (sealed) store to `path` atomically, creating the directory if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::io::write_atomic(path, &self.bytes)
    }

    /// Read a cache file that must describe `shape` and carry `fingerprint`.
    ///
    /// `Ok(Err(miss))` when the file is absent, stale or corrupt (the caller rebuilds it);
    /// `Err` only for I/O errors other than "not found" (permissions...).
    pub fn load(
        path: &Path,
        name: impl Into<String>,
        shape: ImageShape,
        fingerprint: &[u8; 32],
    ) -> Result<std::result::Result<Self, CacheMiss>> {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err(CacheMiss::Absent))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
        // Look at the fixed header first: a stale cache is not read in full.
        let mut fixed = [0u8; FIXED_HEADER];
        if len < FIXED_HEADER + TRAILER || file.read_exact(&mut fixed).is_err() {
            return Ok(Err(CacheMiss::Corrupt(format!(
                "{len} bytes, shorter than a header"
            ))));
        }
        if &fixed[..8] != MAGIC {
            return Ok(Err(CacheMiss::Corrupt("not a bmssl image cache".into())));
        }
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if u32_at(&fixed, 8) != FORMAT_VERSION {
            return Ok(Err(CacheMiss::Stale));
        }
        let dims = [u32_at(&fixed, 16), u32_at(&fixed, 20), u32_at(&fixed, 24)];
        let want = [shape.channels, shape.height, shape.width].map(|d| d as u32);
        if dims != want || &fixed[FIXED_HEADER - 32..] != fingerprint {
            return Ok(Err(CacheMiss::Stale));
        }
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&fixed);
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        let end = bytes.len() - TRAILER;
        let stored = u32_at(&bytes, end);
        let actual = crc32fast::hash(&bytes[..end]);
        if stored != actual {
            return Ok(Err(CacheMiss::Corrupt(format!(
                "checksum {actual:08x} does not match the stored {stored:08x}"
            ))));
        }
        match parse_body(bytes, shape) {
            Ok((class_names, layout, bytes, pixel_offset)) => Ok(Ok(ImageStore {
                name: name.into(),
                class_names,
                layout,
                bytes,
                pixel_offset,
            })),
            Err(reason) => Ok(Err(CacheMiss::Corrupt(reason))),
        }
    }
}

/// Parse counts and names after the fixed header of a checksummed file; check the sizes add up.
#[allow(clippy::type_complexity)]
fn parse_body(
    bytes: Vec<u8>,
    shape: ImageShape,
) -> std::result::Result<(Vec<String>, ClassLayout, Vec<u8>, usize), String> {
    let u32_at = |o: usize| -> std::result::Result<usize, String> {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "header runs past the end of the file".to_string())
    };
    let header_len = u32_at(12)?;
    let classes = u32_at(28)?;
    let total = u64::from_le_bytes(bytes[32..40].try_into().unwrap_or([0; 8])) as usize;
    if classes > bytes.len() / 8 {
        return Err(format!(
            "{classes} classes cannot fit in {} bytes",
            bytes.len()
        ));
    }
    let mut at = FIXED_HEADER;
    let mut counts = Vec::with_capacity(classes);
    for _ in 0..classes {
        counts.push(u32_at(at)?);
        at += 4;
    }
    let layout = ClassLayout::from_counts(shape, counts);
    if layout.class_start[classes] != total {
        return Err("class counts do not add up to the image count".into());
    }
    let mut names = Vec::with_capacity(classes);
    for _ in 0..classes {
        let n = u32_at(at)?;
        at += 4;
        let raw = bytes
            .get(at..at + n)
            .ok_or_else(|| "class name runs past the end of the file".to_string())?;
        names.push(String::from_utf8(raw.to_vec()).map_err(|_| "class name is not UTF-8")?);
        at += n;
    }
    if at != header_len {
        return Err(format!("header is {at} bytes, not the stated {header_len}"));
    }
    let expected = total
        .checked_mul(shape.numel())
        .and_then(|p| p.checked_add(header_len + TRAILER));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "{} bytes, not the {} that {total} images of {shape} need",
            bytes.len(),
            expected.map_or("?".to_string(), |e| e.to_string())
        ));
    }
    Ok((names, layout, bytes, header_len))
}

/// Read the cache at `file` if it is valid for `fingerprint`, else run `build` (which decodes the
/// source and returns a store carrying that fingerprint), seal it and save it to `file`.
///
/// `file: None` means the cache is disabled. A corrupt cache prints a warning on stderr and is
/// rebuilt; a cache that cannot be written is reported in the status, not as an error, since the
/// images are good.
pub fn load_or_build(
    file: Option<&Path>,
    name: &str,
    shape: ImageShape,
    fingerprint: [u8; 32],
    build: impl FnOnce() -> Result<ImageStore>,
) -> Result<(ImageStore, CacheStatus)> {
    let Some(file) = file else {
        let mut store = build()?;
        store.seal();
        return Ok((store, CacheStatus::Disabled));
    };
    let miss = match ImageStore::load(file, name, shape, &fingerprint)? {
        Ok(store) => return Ok((store, CacheStatus::Hit)),
        Err(miss) => miss,
    };
    if let CacheMiss::Corrupt(reason) = &miss {
        eprintln!(
            "warning: image cache {} is corrupt ({reason}); rebuilding it",
            file.display()
        );
    }
    let mut store = build()?;
    store.seal();
    let saved = store.save(file).map_err(|e| e.to_string());
    Ok((store, CacheStatus::Built { miss, saved }))
}

impl Dataset for ImageStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn num_classes(&self) -> usize {
        self.layout.num_classes()
    }
    fn images_in_class(&self, class: usize) -> usize {
        self.layout.images_in_class(class)
    }
    fn shape(&self) -> ImageShape {
        self.layout.shape
    }
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]> {
        let r = self.layout.image_range(class, index);
        Cow::Borrowed(&self.bytes[self.pixel_offset + r.start..self.pixel_offset + r.end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(fp: [u8; 32]) -> ImageStore {
        let shape = ImageShape::new(3, 2, 2);
        let mut s =
            ImageStore::new("t", shape, vec!["a".into(), "bb".into()], &[2, 1], fp).unwrap();
        for (i, p) in s.pixels_mut().iter_mut().enumerate() {
            *p = i as u8;
        }
        s.seal();
        s
    }

    #[test]
    fn a_saved_store_loads_back_with_the_same_classes_and_pixels() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/x.u8");
        let s = store([7; 32]);
        s.save(&path).unwrap();
        let back = ImageStore::load(&path, "t", s.shape(), &[7; 32])
            .unwrap()
            .unwrap();
        assert_eq!(back.class_names(), ["a", "bb"]);
        assert_eq!((back.num_classes(), back.num_images()), (2, 3));
        assert_eq!(back.image(1, 0), s.image(1, 0));
        assert_eq!(back.image(1, 0)[0], 24);
        assert_eq!(back.fingerprint(), [7; 32]);
    }

    #[test]
    fn a_missing_cache_file_is_absent_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let miss = ImageStore::load(
            &tmp.path().join("no.u8"),
            "t",
            ImageShape::new(1, 1, 1),
            &[0; 32],
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(miss, CacheMiss::Absent);
    }

    #[test]
    fn another_fingerprint_or_shape_makes_the_cache_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.u8");
        let s = store([1; 32]);
        s.save(&path).unwrap();
        let other = ImageStore::load(&path, "t", s.shape(), &[2; 32]).unwrap();
        assert_eq!(other.unwrap_err(), CacheMiss::Stale);
        let other = ImageStore::load(&path, "t", ImageShape::new(1, 2, 2), &[1; 32]).unwrap();
        assert_eq!(other.unwrap_err(), CacheMiss::Stale);
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_detected_as_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.u8");
        let s = store([3; 32]);
        s.save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Bytes of the fingerprint or shape read as "stale"; all others must read as corrupt.
        for i in (0..good.len()).filter(|&i| !(16..28).contains(&i) && !(40..72).contains(&i)) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let r = ImageStore::load(&path, "t", s.shape(), &[3; 32]).unwrap();
            assert!(
                matches!(r, Err(CacheMiss::Corrupt(_)) | Err(CacheMiss::Stale)),
                "byte {i} flipped went unnoticed"
            );
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let r = ImageStore::load(&path, "t", s.shape(), &[3; 32]).unwrap();
        assert!(matches!(r, Err(CacheMiss::Corrupt(_))), "{r:?}");
    }

    #[test]
    fn load_or_build_builds_then_hits_then_rebuilds_a_corrupt_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.u8");
        let shape = ImageShape::new(3, 2, 2);
        let mut builds = 0;
        let mut build = || {
            builds += 1;
            let mut s = store([5; 32]);
            s.pixels_mut()[0] = 99; // seal() must run after this
            Ok(s)
        };
        let (a, st) = load_or_build(Some(&path), "t", shape, [5; 32], &mut build).unwrap();
        assert_eq!(
            st,
            CacheStatus::Built {
                miss: CacheMiss::Absent,
                saved: Ok(())
            }
        );
        let (b, st) = load_or_build(Some(&path), "t", shape, [5; 32], &mut build).unwrap();
        assert!(st.is_hit(), "{st}");
        assert_eq!(a.image(0, 0), b.image(0, 0));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let (_, st) = load_or_build(Some(&path), "t", shape, [5; 32], &mut build).unwrap();
        assert!(
            matches!(
                st,
                CacheStatus::Built {
                    miss: CacheMiss::Corrupt(_),
                    saved: Ok(())
                }
            ),
            "{st}"
        );
        let (_, st) = load_or_build(None, "t", shape, [5; 32], &mut build).unwrap();
        assert_eq!(st, CacheStatus::Disabled);
        assert_eq!(builds, 3);
    }

    #[test]
    fn the_cache_path_follows_the_options() {
        let root = Path::new("/data/mini");
        let default = CacheOptions::default();
        assert_eq!(
            default.file_for(root, "k"),
            Some(PathBuf::from("/data/mini/.bmssl-cache/k.u8"))
        );
        let elsewhere = CacheOptions {
            dir: Some("/tmp/c".into()),
            disabled: false,
        };
        assert_eq!(
            elsewhere.file_for(root, "k"),
            Some(PathBuf::from("/tmp/c/k.u8"))
        );
        let off = CacheOptions {
            dir: None,
            disabled: true,
        };
        assert_eq!(off.file_for(root, "k"), None);
    }
}

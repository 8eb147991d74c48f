//! Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): 1623 handwritten characters from 50 alphabets,
//! 20 drawings each, read straight from the original `images_background.zip` and
//! `images_evaluation.zip`.
//!
//! * **Split**: Vinyals et al. (2016) by character: 1028 train / 172 val / 423 test characters, read
//!   from `splits/{train,val,test}.json` (zip folder -> alphabet -> character folders).
//! * **Rotations**: with [`OmniglotOptions::rotations`] (default on), every character rotated by
//!   90, 180 and 270 degrees is an extra class (x4 classes), as in Santoro et al. / Vinyals et al.
//!   and the unsupervised meta-learning papers BMSSL compares with.
//! * **Resize**: 105x105 -> `image_size` (default 28) with
//!   [`FilterType::Triangle`](image::imageops::FilterType::Triangle). The `image` crate widens the
//!   filter by the reduction factor, so this is an antialiased (area-weighted) bilinear reduction,
//!   the same as PIL's `Image.resize(..., BILINEAR)` behind torchvision's `Resize(28)` that
//!   torchmeta and PsCo use. Lanczos3 would ring around the thin strokes for no benefit.
//! * **Polarity**: the PNGs are black strokes on white. We store them **inverted**: strokes 255,
//!   background 0 (1.0 and 0.0 once converted to `f32`). Why: the zero padding of convolutions and
//!   of out-of-image crop samples then matches the background.
//!
//! Loading decodes all 32,460 PNGs once: entries are read from the zip sequentially (a zip reader
//! is not `Sync`), then decoded and resized in parallel with rayon. The result is cached in
//! memory per (data dir, image size), so a process that loads Omniglot twice decodes once, and
//! with [`Omniglot::load_with_cache`] (what `train`, `eval` and the other commands use) on disk in
//! the [decoded-image cache](super::cache) (`<dir>/.bmssl-cache/omniglot-<size>x<size>.u8`,
//! fingerprinted by the zips' sizes and modification times), so later processes read 25 MB instead
//! of decoding: 1.7 s of every command's start on two cores, 1.9 s on one (2026-12-07).
//!
//! Over 400 lines: reading the original zips within decoding limits, the split files, the rotated
//! classes and the in-memory and on-disk caches of decoded images are one loader; about 150 lines
//! are tests.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use super::cache::{self, CacheOptions, Fingerprint, ImageStore};
use super::{Dataset, ImageShape};
use crate::{Error, Result};

/// The two zip folders, in the order their characters are numbered.
pub const ZIP_FOLDERS: [&str; 2] = ["background", "evaluation"];
/// The decoding's version (decoder, resize filter, inversion): part of the disk cache's
/// fingerprint, so that a change to the pixels it produces rebuilds the cache.
const READER_VERSION: &str = "bmssl omniglot reader 1";

/// Characters in Omniglot.
pub const NUM_CHARACTERS: usize = 1623;
/// Drawings in Omniglot (20 per character).
pub const NUM_IMAGES: usize = 32_460;

/// Which part of the Vinyals split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 1028 characters: meta-training.
    Train,
    /// 172 characters: model selection.
    Val,
    /// 423 characters: final evaluation.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    /// "train", "val" or "test": the split file's stem.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => Err(Error::config(
                "split",
                format!("`{s}` is not one of train, val, test"),
            )),
        }
    }
}

/// How to load Omniglot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OmniglotOptions {
    /// Add the 90/180/270-degree rotations of every character as extra classes (x4). Default on:
    /// the standard few-shot Omniglot protocol.
    pub rotations: bool,
    /// Side of the square images after resizing. Default 28: the standard few-shot size.
    pub image_size: usize,
}

impl Default for OmniglotOptions {
    fn default() -> Self {
        OmniglotOptions {
            rotations: true,
            image_size: 28,
        }
    }
}

/// One character: where it came from and where its drawings sit in the pixel buffer.
#[derive(Clone, Debug)]
pub struct Character {
    /// "background" or "evaluation".
    pub folder: String,
    /// Alphabet folder name, e.g. "Latin".
    pub alphabet: String,
    /// Character folder name, e.g. "character01".
    pub name: String,
    first_image: usize,
    num_images: usize,
}

/// All decoded drawings: shared by every split through an `Arc`.
#[derive(Debug)]
struct Store {
    size: usize,
    /// `[image][size][size]`, strokes 255, background 0.
    pixels: Vec<u8>,
    characters: Vec<Character>,
}

/// The whole of Omniglot in memory plus the Vinyals split.
#[derive(Clone, Debug)]
pub struct Omniglot {
    store: Arc<Store>,
    options: OmniglotOptions,
    /// Character indices (into the store) per split.
    splits: HashMap<Split, Vec<usize>>,
    dir: PathBuf,
}

/// Decoded stores already loaded by this process, keyed by (canonical dir, image size).
type Cache = Mutex<HashMap<(PathBuf, usize), Arc<Store>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Omniglot {
    /// Load from `dir` (usually `<data dir>/omniglot`), which holds the two zips and `splits/`.
    ///
    /// Errors name the missing zip, the corrupt PNG, the zip entry whose path escapes its folder,
    /// or the split file and character that do not match the zips.
    pub fn load(dir: &Path, options: &OmniglotOptions) -> Result<Self> {
        let no_disk_cache = CacheOptions {
            dir: None,
            disabled: true,
        };
        Self::load_with_cache(dir, options, &no_disk_cache)
    }

    /// [`Omniglot::load`] through the decoded-image cache on disk (`cache`; the pixels are the
    /// same bits either way).
    pub fn load_with_cache(
        dir: &Path,
        options: &OmniglotOptions,
        disk: &CacheOptions,
    ) -> Result<Self> {
        if options.image_size == 0 {
            return Err(Error::config("image_size", "must be at least 1"));
        }
        let key_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let key = (key_dir, options.image_size);
        let cached = cache().lock().ok().and_then(|c| c.get(&key).cloned());
        let store = match cached {
            Some(s) => s,
            None => {
                let s = Arc::new(load_store_cached(dir, options.image_size, disk)?);
                if let Ok(mut c) = cache().lock() {
                    c.insert(key, s.clone());
                }
                s
            }
        };
        let splits = load_splits(dir, &store.characters)?;
        Ok(Omniglot {
            store,
            options: options.clone(),
            splits,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The options loaded with.
    pub fn options(&self) -> &OmniglotOptions {
        &self.options
    }
    /// Every character, background folder first, then alphabets and characters in name order.
    pub fn characters(&self) -> &[Character] {
        &self.store.characters
    }
    /// Number of drawings (32,460 for the full set), before rotations.
    pub fn num_images(&self) -> usize {
        self.store.characters.iter().map(|c| c.num_images).sum()
    }
    /// Shape of every image: 1 x size x size.
    pub fn shape(&self) -> ImageShape {
        ImageShape::new(1, self.store.size, self.store.size)
    }
    /// Number of characters (before rotations) in `split`.
    pub fn split_characters(&self, split: Split) -> usize {
        self.splits.get(&split).map_or(0, Vec::len)
    }
    /// One split as a [`Dataset`]; with rotations, class `4 * c + r` is character `c` rotated by
    /// `90 * r` degrees counter-clockwise.
    pub fn split(&self, split: Split) -> OmniglotSplit {
        OmniglotSplit {
            name: format!("omniglot/{split}"),
            store: self.store.clone(),
            characters: self.splits.get(&split).cloned().unwrap_or_default(),
            rotations: if self.options.rotations { 4 } else { 1 },
        }
    }
}

/// One split of Omniglot: a [`Dataset`] over a subset of characters, optionally x4 rotations.
#[derive(Clone, Debug)]
pub struct OmniglotSplit {
    name: String,
    store: Arc<Store>,
    characters: Vec<usize>,
    /// 4 with rotations, 1 without.
    rotations: usize,
}

impl Dataset for OmniglotSplit {
    fn name(&self) -> &str {
        &self.name
    }
    fn num_classes(&self) -> usize {
        self.characters.len() * self.rotations
    }
    fn images_in_class(&self, class: usize) -> usize {
        self.store.characters[self.characters[class / self.rotations]].num_images
    }
    fn shape(&self) -> ImageShape {
        ImageShape::new(1, self.store.size, self.store.size)
    }
    /// `alphabet/character`, with `/rot90`, `/rot180` or `/rot270` for the rotation classes.
    fn class_name(&self, class: usize) -> String {
        let ch = &self.store.characters[self.characters[class / self.rotations]];
        match class % self.rotations {
            0 => format!("{}/{}", ch.alphabet, ch.name),
            r => format!("{}/{}/rot{}", ch.alphabet, ch.name, 90 * r),
        }
    }
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]> {
        let ch = &self.store.characters[self.characters[class / self.rotations]];
        assert!(
            index < ch.num_images,
            "image {index} out of range in class {class}"
        );
        let n = self.store.size;
        let i = ch.first_image + index;
        let src = &self.store.pixels[i * n * n..(i + 1) * n * n];
        match class % self.rotations {
            0 => Cow::Borrowed(src),
            r => Cow::Owned(rotate_square(src, n, r)),
        }
    }
}

/// Rotate an `n x n` image by `90 * quarter_turns` degrees counter-clockwise.
fn rotate_square(src: &[u8], n: usize, quarter_turns: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * n];
    for y in 0..n {
        for x in 0..n {
            // Output (y, x) reads the source pixel that a CCW rotation moves there.
            let (sy, sx) = match quarter_turns % 4 {
                1 => (x, n - 1 - y),
                2 => (n - 1 - y, n - 1 - x),
                3 => (n - 1 - x, y),
                _ => (y, x),
            };
            out[y * n + x] = src[sy * n + sx];
        }
    }
    out
}

/// One PNG read from a zip, not yet decoded.
struct RawEntry {
    folder_index: usize,
    alphabet: String,
    character: String,
    file: String,
    bytes: Vec<u8>,
}

/// Largest zip entry read (bytes): an Omniglot PNG is about 1 KiB.
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// Read every PNG entry of one zip (sequentially), refusing paths that escape the folder.
pub(crate) fn read_zip_pngs(zip_path: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let file = File::open(zip_path).map_err(|e| {
        Error::dataset(
            "omniglot",
            format!(
                "cannot open {}: {e} (pass --data-dir or set BMSSL_DATA)",
                zip_path.display()
            ),
        )
    })?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::corrupt(zip_path, e.to_string()))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| Error::corrupt(zip_path, format!("entry {i}: {e}")))?;
        let Some(name) = entry.enclosed_name() else {
            return Err(Error::corrupt(
                zip_path,
                format!(
                    "entry `{}` has a path that escapes its folder (absolute or `..`); refusing it",
                    entry.name()
                ),
            ));
        };
        if entry.is_dir()
            || !name
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        {
            continue;
        }
        // The size in the zip is only a claim: cap the allocation and the read (zip bombs).
        let mut bytes = Vec::with_capacity(entry.size().min(MAX_ENTRY_BYTES) as usize);
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::corrupt(zip_path, format!("entry `{}`: {e}", name.display())))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(Error::corrupt(
                zip_path,
                format!(
                    "entry `{}` is larger than {} MiB; refusing it",
                    name.display(),
                    MAX_ENTRY_BYTES >> 20
                ),
            ));
        }
        out.push((name, bytes));
    }
    Ok(out)
}

/// Read both zips, decode and resize every drawing.
fn load_store(dir: &Path, size: usize) -> Result<Store> {
    let mut raw = Vec::with_capacity(NUM_IMAGES);
    for (folder_index, folder) in ZIP_FOLDERS.iter().enumerate() {
        let zip_path = dir.join(format!("images_{folder}.zip"));
        for (name, bytes) in read_zip_pngs(&zip_path)? {
            // images_<folder>/<Alphabet>/<characterNN>/<file>.png
            let parts: Vec<String> = name
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let [_, alphabet, character, file] = parts.as_slice() else {
                return Err(Error::corrupt(
                    &zip_path,
                    format!(
                        "entry `{}` is not <root>/<alphabet>/<character>/<file>.png",
                        name.display()
                    ),
                ));
            };
            raw.push(RawEntry {
                folder_index,
                alphabet: alphabet.clone(),
                character: character.clone(),
                file: file.clone(),
                bytes,
            });
        }
    }
    // A fixed order independent of the zip's entry order.
    raw.sort_by(|a, b| {
        (a.folder_index, &a.alphabet, &a.character, &a.file).cmp(&(
            b.folder_index,
            &b.alphabet,
            &b.character,
            &b.file,
        ))
    });

    // Decode + resize in parallel; each image writes its own slot.
    let decoded: Vec<Vec<u8>> = crate::error::collect_in_order(raw.par_iter().map(|e| {
        decode_resize_invert(&e.bytes, size).map_err(|reason| {
            let zip = dir.join(format!("images_{}.zip", ZIP_FOLDERS[e.folder_index]));
            Error::corrupt(
                zip,
                format!(
                    "entry `{}/{}/{}`: {reason}",
                    e.alphabet, e.character, e.file
                ),
            )
        })
    }))?;

    let mut characters: Vec<Character> = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let folder = ZIP_FOLDERS[e.folder_index];
        let same = characters.last().is_some_and(|c| {
            c.folder == folder && c.alphabet == e.alphabet && c.name == e.character
        });
        if same {
            if let Some(c) = characters.last_mut() {
                c.num_images += 1;
            }
        } else {
            characters.push(Character {
                folder: folder.to_string(),
                alphabet: e.alphabet.clone(),
                name: e.character.clone(),
                first_image: i,
                num_images: 1,
            });
        }
    }
    Ok(Store {
        size,
        pixels: decoded.concat(),
        characters,
    })
}

/// [`load_store`] through the decoded-image cache: one class per character, named
/// `folder/alphabet/character`, its drawings in the store's order.
fn load_store_cached(dir: &Path, size: usize, options: &CacheOptions) -> Result<Store> {
    let file = options.file_for(dir, &format!("omniglot-{size}x{size}"));
    let mut fp = Fingerprint::new();
    fp.add_str(READER_VERSION).add_u64(size as u64);
    for folder in ZIP_FOLDERS {
        let Ok(meta) = std::fs::metadata(dir.join(format!("images_{folder}.zip"))) else {
            // A missing zip: the decoder names it.
            return load_store(dir, size);
        };
        fp.add_str(folder).add_metadata(&meta);
    }
    let fingerprint = fp.finish();
    let shape = ImageShape::new(1, size, size);
    let mut built = None;
    let (store, _) = cache::load_or_build(file.as_deref(), "omniglot", shape, fingerprint, || {
        let s = load_store(dir, size)?;
        let names = s
            .characters
            .iter()
            .map(|c| format!("{}/{}/{}", c.folder, c.alphabet, c.name))
            .collect();
        let counts: Vec<usize> = s.characters.iter().map(|c| c.num_images).collect();
        let mut pixels = ImageStore::new("omniglot", shape, names, &counts, fingerprint)?;
        pixels.pixels_mut().copy_from_slice(&s.pixels);
        built = Some(s);
        Ok(pixels)
    })?;
    if let Some(s) = built {
        return Ok(s);
    }
    let bad = |reason: String| {
        Error::corrupt(
            file.clone().unwrap_or_default(),
            format!("not an Omniglot cache: {reason}"),
        )
    };
    let mut characters = Vec::with_capacity(store.num_classes());
    let mut pixels = Vec::with_capacity(store.num_images() * size * size);
    for (c, name) in store.class_names().iter().enumerate() {
        let parts: Vec<&str> = name.split('/').collect();
        let [folder, alphabet, character] = parts.as_slice() else {
            return Err(bad(format!(
                "class `{name}` is not folder/alphabet/character"
            )));
        };
        if !ZIP_FOLDERS.contains(folder) {
            return Err(bad(format!("class `{name}` is in no zip")));
        }
        let num_images = store.images_in_class(c);
        characters.push(Character {
            folder: folder.to_string(),
            alphabet: alphabet.to_string(),
            name: character.to_string(),
            first_image: pixels.len() / (size * size),
            num_images,
        });
        for i in 0..num_images {
            pixels.extend_from_slice(&store.image(c, i));
        }
    }
    Ok(Store {
        size,
        pixels,
        characters,
    })
}

/// PNG bytes -> `size x size` grey through the [image pipeline](super::image), inverted
/// (strokes 255).
fn decode_resize_invert(bytes: &[u8], size: usize) -> std::result::Result<Vec<u8>, String> {
    let mut grey = super::image::decode_to_chw(
        bytes,
        Some(image::ImageFormat::Png),
        ImageShape::new(1, size, size),
    )?;
    for v in &mut grey {
        *v = 255 - *v;
    }
    Ok(grey)
}

/// Split file: zip folder -> alphabet -> character folders.
type SplitFile = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Read `splits/{train,val,test}.json` and map every listed character to its index.
fn load_splits(dir: &Path, characters: &[Character]) -> Result<HashMap<Split, Vec<usize>>> {
    let index: HashMap<(&str, &str, &str), usize> = characters
        .iter()
        .enumerate()
        .map(|(i, c)| ((c.folder.as_str(), c.alphabet.as_str(), c.name.as_str()), i))
        .collect();
    let mut splits = HashMap::new();
    let mut seen: HashMap<usize, Split> = HashMap::new();
    for split in Split::ALL {
        let path = dir.join("splits").join(format!("{split}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let file: SplitFile = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a split file: {e}")))?;
        let mut ids = Vec::new();
        for (folder, alphabets) in &file {
            for (alphabet, names) in alphabets {
                for name in names {
                    let Some(&i) = index.get(&(folder.as_str(), alphabet.as_str(), name.as_str()))
                    else {
                        return Err(Error::corrupt(
                            &path,
                            format!("character {folder}/{alphabet}/{name} is not in the zips"),
                        ));
                    };
                    if let Some(other) = seen.insert(i, split) {
                        return Err(Error::corrupt(
                            &path,
                            format!(
                                "character {folder}/{alphabet}/{name} is also in the {other} split"
                            ),
                        ));
                    }
                    ids.push(i);
                }
            }
        }
        ids.sort_unstable();
        splits.insert(split, ids);
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    /// A fresh directory under the system temp dir.
    fn temp_dir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(tag).tempdir().unwrap()
    }

    #[test]
    fn rotating_four_times_gives_the_image_back() {
        let src: Vec<u8> = (0..9).collect();
        let r1 = rotate_square(&src, 3, 1);
        // CCW: the top row becomes the left column, read bottom-up.
        assert_eq!(r1, vec![2, 5, 8, 1, 4, 7, 0, 3, 6]);
        let r4 = rotate_square(&rotate_square(&rotate_square(&r1, 3, 1), 3, 1), 3, 1);
        assert_eq!(r4, src);
        assert_eq!(rotate_square(&src, 3, 2), rotate_square(&r1, 3, 1));
    }

    #[test]
    fn a_missing_zip_is_an_error_naming_its_path() {
        let tmp = temp_dir("bmssl-missing-zip");
        let err = Omniglot::load(tmp.path(), &OmniglotOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("images_background.zip"), "{err}");
    }

    #[test]
    fn a_zip_entry_escaping_its_folder_is_refused() {
        let tmp = temp_dir("bmssl-evil-zip");
        let dir = tmp.path();
        let path = dir.join("images_background.zip");
        let mut w = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("../../evil.png", opts).unwrap();
        w.write_all(b"not really a png").unwrap();
        w.finish().unwrap();
        let err = Omniglot::load(dir, &OmniglotOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("images_background.zip") && err.contains("../../evil.png"),
            "{err}"
        );
        assert!(err.contains("escapes"), "{err}");
    }

    #[test]
    fn a_corrupt_png_in_the_zip_is_an_error_naming_the_entry() {
        let tmp = temp_dir("bmssl-corrupt-zip");
        let dir = tmp.path();
        let mut w = zip::ZipWriter::new(File::create(dir.join("images_background.zip")).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("images_background/Latin/character01/x.png", opts)
            .unwrap();
        w.write_all(b"garbage").unwrap();
        w.finish().unwrap();
        let w = zip::ZipWriter::new(File::create(dir.join("images_evaluation.zip")).unwrap());
        w.finish().unwrap();
        let err = Omniglot::load(dir, &OmniglotOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Latin/character01/x.png"), "{err}");
    }

    #[test]
    fn the_disk_cache_gives_back_the_decoded_store_bit_for_bit_and_is_rebuilt_when_stale() {
        let dir = crate::data::repo_data_dir().join("omniglot");
        let tmp = temp_dir("bmssl-omniglot-cache");
        let opts = CacheOptions {
            dir: Some(tmp.path().to_path_buf()),
            disabled: false,
        };
        let decoded = load_store(&dir, 12).unwrap();
        let built = load_store_cached(&dir, 12, &opts).unwrap();
        let file = tmp.path().join("omniglot-12x12.u8");
        assert!(file.is_file(), "the first load writes the cache");
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        let hit = load_store_cached(&dir, 12, &opts).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            modified
        );
        for s in [&built, &hit] {
            assert_eq!(s.size, 12);
            assert!(s.pixels == decoded.pixels, "the same pixels");
            let key = |c: &Character| {
                (
                    c.folder.clone(),
                    c.alphabet.clone(),
                    c.name.clone(),
                    c.first_image,
                    c.num_images,
                )
            };
            let (a, b): (Vec<_>, Vec<_>) = (
                s.characters.iter().map(key).collect(),
                decoded.characters.iter().map(key).collect(),
            );
            assert_eq!(a, b);
        }
        // A corrupt file is rebuilt, not trusted.
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        let rebuilt = load_store_cached(&dir, 12, &opts).unwrap();
        assert!(rebuilt.pixels == decoded.pixels);
    }

    #[test]
    fn the_real_omniglot_has_1623_characters_32460_images_and_the_vinyals_split() {
        let start = Instant::now();
        let omni = Omniglot::load(
            &crate::data::repo_data_dir().join("omniglot"),
            &OmniglotOptions::default(),
        )
        .expect("data/omniglot in the repository");
        eprintln!("loaded Omniglot in {:.2?}", start.elapsed());
        assert_eq!(omni.characters().len(), NUM_CHARACTERS);
        assert_eq!(omni.num_images(), NUM_IMAGES);
        assert_eq!(omni.shape(), ImageShape::new(1, 28, 28));
        let counts: Vec<usize> = Split::ALL
            .iter()
            .map(|&s| omni.split_characters(s))
            .collect();
        assert_eq!(counts, vec![1028, 172, 423]);
        let train = omni.split(Split::Train);
        assert_eq!(train.num_classes(), 4 * 1028);
        assert_eq!(train.num_images(), 4 * 1028 * 20);
        // Inverted: the background (corners) is 0, and some stroke pixels are bright.
        let img = train.image(0, 0);
        assert_eq!(img[0], 0);
        assert!(img.iter().any(|&v| v > 200));
        // Class 1 is class 0 rotated by 90 degrees.
        assert_eq!(
            train.image(1, 3).into_owned(),
            rotate_square(&train.image(0, 3), 28, 1)
        );
    }
}

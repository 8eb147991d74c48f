//! CIFAR-FS (Bertinetto et al. 2019): the 100 CIFAR-100 fine classes split 64 / 16 / 20 into
//! train / val / test, all 600 images of each class (500 from `train.bin`, then 100 from
//! `test.bin`), 32x32 RGB.
//!
//! Read from the official CIFAR-100 *binary* release as users have it, under the root (usually
//! `<data dir>/cifar-fs`), first match wins:
//!
//! 1. `root/cifar-100-binary/train.bin` and `test.bin` (the extracted archive);
//! 2. `root/train.bin` and `test.bin`;
//! 3. `root/cifar-100-binary.tar.gz`, streamed (nothing is extracted to disk).
//!
//! Each record is 3,074 bytes: coarse label (0..20), fine label (0..100), then 3,072 pixel bytes
//! (1,024 red, 1,024 green, 1,024 blue, each 32x32 row-major) - already channels-first. A file
//! whose size is not a whole number of records, or a label out of range, is an error naming the
//! file and the record. Fine label `i` is the `i`-th name of [`FINE_LABEL_NAMES`] (CIFAR-100's
//! `fine_label_names.txt`, alphabetical); when that file is present it is read and checked.
//!
//! The class split is `root/splits/<split>.txt` when present (one class name per line), else
//! the CIFAR-FS split compiled in (the repository's `data/cifar-fs/splits/`); classes are in the
//! split file's order. Other shapes than 3x32x32 are made by converting channels and resizing
//! with the antialiased Triangle filter. The result goes through the
//! [decoded-image cache](super::cache) (it saves the gunzip of the archive).
//!
//! Over 400 lines: both sources (the binary folder and the tarball), the built-in split and record
//! reading with its checks; about 290 lines are tests.

use std::borrow::Cow;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::cache::{self, CacheOptions, CacheStatus, Fingerprint, ImageStore};
use super::image::{check_shape, to_chw};
use super::omniglot::Split;
use super::{Dataset, ImageShape};
use crate::{Error, Result};

/// Name of the dataset in `open_split` and in the data directory.
pub const NAME: &str = "cifar-fs";
/// Bytes per record of the CIFAR-100 binary format.
pub const RECORD_BYTES: usize = 2 + PIXEL_BYTES;
/// Pixel bytes per record (3 x 32 x 32).
pub const PIXEL_BYTES: usize = 3 * 32 * 32;
/// Coarse (super-)classes of CIFAR-100.
pub const NUM_COARSE: u8 = 20;
/// Classes per split: train, val, test.
pub const SPLIT_CLASSES: [usize; 3] = [64, 16, 20];
/// Images per class (500 in `train.bin` + 100 in `test.bin`).
pub const IMAGES_PER_CLASS: usize = 600;
/// Name of the archive.
pub const ARCHIVE: &str = "cifar-100-binary.tar.gz";
/// Folder inside the archive.
pub const ARCHIVE_FOLDER: &str = "cifar-100-binary";
/// Bumped whenever decoding changes, so caches made by older code are rebuilt.
const READER_VERSION: &str = "bmssl cifar-fs reader 1";

/// CIFAR-100's fine label names in label order (`fine_label_names.txt`: alphabetical).
pub const FINE_LABEL_NAMES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The CIFAR-FS split files, compiled in.
const SPLITS: [&str; 3] = [
    include_str!("../../../../data/cifar-fs/splits/train.txt"),
    include_str!("../../../../data/cifar-fs/splits/val.txt"),
    include_str!("../../../../data/cifar-fs/splits/test.txt"),
];

/// The built-in CIFAR-FS class list of `split` (one name per line).
pub fn builtin_split(split: Split) -> &'static str {
    SPLITS[split as usize]
}

/// Where the records were read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `train.bin` and `test.bin` in this folder.
    Extracted(PathBuf),
    /// The `.tar.gz` archive.
    Archive(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Extracted(d) => write!(f, "{}/{{train,test}}.bin", d.display()),
            Source::Archive(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Find the CIFAR-100 binary files under `root` (see the module docs for the order). The error
/// names every place looked at.
pub fn find_source(root: &Path) -> Result<Source> {
    for dir in [root.join(ARCHIVE_FOLDER), root.to_path_buf()] {
        if dir.join("train.bin").is_file() || dir.join("test.bin").is_file() {
            return Ok(Source::Extracted(dir));
        }
    }
    let archive = root.join(ARCHIVE);
    if archive.is_file() {
        return Ok(Source::Archive(archive));
    }
    Err(Error::dataset(
        NAME,
        format!(
            "no CIFAR-100 binary data: looked for {0}/{ARCHIVE_FOLDER}/train.bin + test.bin, \
             {0}/train.bin + test.bin and {0}/{ARCHIVE}",
            root.display()
        ),
    ))
}

/// Parse a split file: one CIFAR-100 fine class name per line; returns fine label indices.
/// Errors name the file and line of an unknown or repeated name.
pub fn parse_split(text: &str, source: &Path) -> Result<Vec<(String, u8)>> {
    let mut out: Vec<(String, u8)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        let Some(label) = FINE_LABEL_NAMES.iter().position(|n| *n == name) else {
            return Err(Error::corrupt(
                source,
                format!("line {}: `{name}` is not a CIFAR-100 fine class", i + 1),
            ));
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(Error::corrupt(
                source,
                format!("line {}: `{name}` is listed twice", i + 1),
            ));
        }
        out.push((name.to_string(), label as u8));
    }
    if out.is_empty() {
        return Err(Error::corrupt(source, "no class names"));
    }
    Ok(out)
}

/// One split of CIFAR-FS in memory (or read from the cache).
#[derive(Clone, Debug)]
pub struct CifarFs {
    store: ImageStore,
    split: Split,
    source: Source,
    split_source: String,
    cache: CacheStatus,
    cache_file: Option<PathBuf>,
    decoded: usize,
}

impl CifarFs {
    /// Load `split` from `root` as `shape` (channels 1 or 3, any size; 3x32x32 is native).
    pub fn load(
        root: &Path,
        split: Split,
        shape: ImageShape,
        cache: &CacheOptions,
    ) -> Result<Self> {
        check_shape(shape)?;
        let source = find_source(root)?;
        let split_file = root.join("splits").join(format!("{split}.txt"));
        let (split_path, text, split_source) = if split_file.is_file() {
            let t = std::fs::read_to_string(&split_file).map_err(|e| Error::io(&split_file, e))?;
            let s = split_file.display().to_string();
            (split_file, Cow::Owned(t), s)
        } else {
            (
                PathBuf::from(format!("built-in {split}.txt")),
                Cow::Borrowed(builtin_split(split)),
                "built-in CIFAR-FS split".to_string(),
            )
        };
        let classes = parse_split(&text, &split_path)?;
        let name = format!("{NAME}/{split}");

        let mut fp = Fingerprint::new();
        fp.add_str(READER_VERSION).add_str(&shape.to_string());
        for (n, _) in &classes {
            fp.add_str(n);
        }
        match &source {
            Source::Extracted(dir) => {
                for f in ["train.bin", "test.bin", "fine_label_names.txt"] {
                    let p = dir.join(f);
                    fp.add_str(f);
                    if p.exists() || f != "fine_label_names.txt" {
                        fp.add_file(&p)?;
                    }
                }
            }
            Source::Archive(p) => {
                fp.add_str(ARCHIVE);
                fp.add_file(p)?;
            }
        }
        let fingerprint = fp.finish();
        let key = format!(
            "{NAME}-{split}-{}x{}x{}",
            shape.channels, shape.height, shape.width
        );
        let cache_file = cache.file_for(root, &key);
        let mut decoded = 0;
        let (mut store, status) =
            cache::load_or_build(cache_file.as_deref(), &name, shape, fingerprint, || {
                let per_class = read_records(&source, &classes)?;
                let counts: Vec<usize> = per_class.iter().map(|v| v.len() / PIXEL_BYTES).collect();
                if let Some(c) = counts.iter().position(|&n| n == 0) {
                    return Err(Error::dataset(
                        &name,
                        format!("class `{}` has no images in {source}", classes[c].0),
                    ));
                }
                let names = classes.iter().map(|(n, _)| n.clone()).collect();
                let mut store = ImageStore::new(&name, shape, names, &counts, fingerprint)?;
                let out = store.pixels_mut();
                let records = per_class.iter().flat_map(|c| c.chunks_exact(PIXEL_BYTES));
                for (dst, src) in out.chunks_exact_mut(shape.numel()).zip(records) {
                    convert(src, shape, dst);
                    decoded += 1;
                }
                Ok(store)
            })?;
        store.set_name(name);
        Ok(CifarFs {
            store,
            split,
            source,
            split_source,
            cache: status,
            cache_file,
            decoded,
        })
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }
    /// Where the records were read from.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// Where the class split came from.
    pub fn split_source(&self) -> &str {
        &self.split_source
    }
    /// Whether the pixels came from the cache.
    pub fn cache_status(&self) -> &CacheStatus {
        &self.cache
    }
    /// The cache file used, if the cache is enabled.
    pub fn cache_file(&self) -> Option<&Path> {
        self.cache_file.as_deref()
    }
    /// How many records this load converted (0 on a cache hit).
    pub fn decoded_images(&self) -> usize {
        self.decoded
    }
    /// Class names, in class-index order (the split file's order).
    pub fn class_names(&self) -> &[String] {
        self.store.class_names()
    }
}

impl Dataset for CifarFs {
    fn name(&self) -> &str {
        self.store.name()
    }
    fn num_classes(&self) -> usize {
        self.store.num_classes()
    }
    fn images_in_class(&self, class: usize) -> usize {
        self.store.images_in_class(class)
    }
    fn shape(&self) -> ImageShape {
        self.store.shape()
    }
    fn class_name(&self, class: usize) -> String {
        self.class_names()[class].clone()
    }
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]> {
        self.store.image(class, index)
    }
}

/// One 3x32x32 CHW record -> `shape`.
fn convert(src: &[u8], shape: ImageShape, dst: &mut [u8]) {
    if shape == ImageShape::new(3, 32, 32) {
        dst.copy_from_slice(src);
        return;
    }
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let p = (y * 32 + x) as usize;
        image::Rgb([src[p], src[1024 + p], src[2048 + p]])
    });
    to_chw(image::DynamicImage::ImageRgb8(img), shape, dst);
}

/// Pixel bytes of every record of the split's classes: train.bin records first, then test.bin,
/// each in file order. Index = position in `classes`.
fn read_records(source: &Source, classes: &[(String, u8)]) -> Result<Vec<Vec<u8>>> {
    let mut slot = [usize::MAX; 100];
    for (i, (_, label)) in classes.iter().enumerate() {
        slot[*label as usize] = i;
    }
    let mut train = vec![Vec::new(); classes.len()];
    let mut test = vec![Vec::new(); classes.len()];
    let mut names_file: Option<(PathBuf, String)> = None;
    match source {
        Source::Extracted(dir) => {
            for (file, out) in [("train.bin", &mut train), ("test.bin", &mut test)] {
                let path = dir.join(file);
                let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
                read_bin(BufReader::with_capacity(1 << 20, f), len, &path, &slot, out)?;
            }
            let names = dir.join("fine_label_names.txt");
            if names.is_file() {
                let t = std::fs::read_to_string(&names).map_err(|e| Error::io(&names, e))?;
                names_file = Some((names, t));
            }
        }
        Source::Archive(archive) => {
            let f = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
            let mut tar = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(1 << 20, f)));
            let bad =
                |e: std::io::Error| Error::corrupt(archive, format!("not a readable .tar.gz: {e}"));
            let mut seen = [false; 2];
            for entry in tar.entries().map_err(bad)? {
                let mut entry = entry.map_err(bad)?;
                let path = entry.path().map_err(bad)?.into_owned();
                let Some(member) = member_name(&path) else {
                    continue;
                };
                let shown = archive.join(&path);
                let size = entry.size();
                match member {
                    "train.bin" | "test.bin" => {
                        let (i, out) = if member == "train.bin" {
                            (0, &mut train)
                        } else {
                            (1, &mut test)
                        };
                        read_bin(&mut entry, size, &shown, &slot, out)?;
                        seen[i] = true;
                    }
                    "fine_label_names.txt" => {
                        let mut t = String::new();
                        entry
                            .read_to_string(&mut t)
                            .map_err(|e| Error::io(&shown, e))?;
                        names_file = Some((shown, t));
                    }
                    _ => {}
                }
            }
            for (i, f) in ["train.bin", "test.bin"].iter().enumerate() {
                if !seen[i] {
                    return Err(Error::corrupt(
                        archive,
                        format!("the archive has no {ARCHIVE_FOLDER}/{f}"),
                    ));
                }
            }
        }
    }
    if let Some((path, text)) = names_file {
        check_fine_names(&text, &path)?;
    }
    Ok(train
        .into_iter()
        .zip(test)
        .map(|(mut a, b)| {
            a.extend_from_slice(&b);
            a
        })
        .collect())
}

/// The archive member name of `path` if it is `cifar-100-binary/<name>` or a bare `<name>`;
/// anything else (other folders, `..`, absolute paths) is not ours and is skipped.
fn member_name(path: &Path) -> Option<&str> {
    let parts: Vec<_> = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let name = match parts.as_slice() {
        [std::path::Component::Normal(dir), std::path::Component::Normal(name)]
            if *dir == ARCHIVE_FOLDER =>
        {
            name
        }
        [std::path::Component::Normal(name)] => name,
        _ => return None,
    };
    name.to_str()
}

/// Stream the records of one `.bin` of `len` bytes, appending the pixels of wanted classes
/// (`slot[fine] != usize::MAX`) to `out[slot[fine]]`.
fn read_bin(
    mut r: impl Read,
    len: u64,
    path: &Path,
    slot: &[usize; 100],
    out: &mut [Vec<u8>],
) -> Result<()> {
    if !len.is_multiple_of(RECORD_BYTES as u64) {
        return Err(Error::corrupt(
            path,
            format!(
                "truncated or not CIFAR-100 binary: {len} bytes is not a whole number of \
                 {RECORD_BYTES}-byte records ({} records and {} bytes left over)",
                len / RECORD_BYTES as u64,
                len % RECORD_BYTES as u64
            ),
        ));
    }
    let mut rec = [0u8; RECORD_BYTES];
    for n in 0..len / RECORD_BYTES as u64 {
        r.read_exact(&mut rec).map_err(|e| {
            Error::io(
                path,
                std::io::Error::new(e.kind(), format!("reading record {n}: {e}")),
            )
        })?;
        let (coarse, fine) = (rec[0], rec[1]);
        if coarse >= NUM_COARSE || fine as usize >= FINE_LABEL_NAMES.len() {
            return Err(Error::corrupt(
                path,
                format!(
                    "record {n} (byte offset {}): coarse label {coarse} (must be < {NUM_COARSE}) \
                     or fine label {fine} (must be < 100) out of range",
                    n * RECORD_BYTES as u64
                ),
            ));
        }
        if let Some(v) = out.get_mut(slot[fine as usize]) {
            v.extend_from_slice(&rec[2..]);
        }
    }
    Ok(())
}

/// `fine_label_names.txt` must list [`FINE_LABEL_NAMES`] in order.
fn check_fine_names(text: &str, path: &Path) -> Result<()> {
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(i) = (0..100).find(|&i| names.get(i) != Some(&FINE_LABEL_NAMES[i])) {
        return Err(Error::corrupt(
            path,
            format!(
                "label {i} is `{}`, CIFAR-100 has `{}`: not the CIFAR-100 fine label order",
                names.get(i).unwrap_or(&"<missing>"),
                FINE_LABEL_NAMES[i]
            ),
        ));
    }
    if names.len() != 100 {
        return Err(Error::corrupt(
            path,
            format!("{} names, CIFAR-100 has 100", names.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Record `n` of fine class `fine`: pixel bytes depend on (fine, n, channel).
    fn record(fine: u8, n: u8) -> Vec<u8> {
        let mut r = vec![fine / 5, fine];
        for c in 0..3u8 {
            r.extend((0..1024).map(|p| {
                fine.wrapping_mul(3)
                    .wrapping_add(n)
                    .wrapping_add(c * 80)
                    .wrapping_add((p % 7) as u8)
            }));
        }
        r
    }

    /// train.bin: 5 records each of classes 0..6; test.bin: 2 each. Returns (train, test).
    fn bins() -> (Vec<u8>, Vec<u8>) {
        let mut train = Vec::new();
        let mut test = Vec::new();
        for n in 0..5 {
            for fine in 0..6 {
                train.extend(record(fine, n));
            }
        }
        for n in 0..2 {
            for fine in 0..6 {
                test.extend(record(fine, 100 + n));
            }
        }
        (train, test)
    }

    fn names_txt() -> String {
        FINE_LABEL_NAMES.join("\n") + "\n"
    }

    /// The extracted layout plus a 3-class train split: bear (3), apple (0), bed (5).
    fn extracted(root: &Path) {
        let dir = root.join(ARCHIVE_FOLDER);
        std::fs::create_dir_all(&dir).unwrap();
        let (train, test) = bins();
        std::fs::write(dir.join("train.bin"), train).unwrap();
        std::fs::write(dir.join("test.bin"), test).unwrap();
        std::fs::write(dir.join("fine_label_names.txt"), names_txt()).unwrap();
        split_file(root);
    }

    fn split_file(root: &Path) {
        std::fs::create_dir_all(root.join("splits")).unwrap();
        std::fs::write(root.join("splits/train.txt"), "bear\napple\nbed\n").unwrap();
    }

    /// The official archive layout, written with the tar and flate2 writers.
    fn archive(root: &Path, with_test: bool) {
        let f = std::fs::File::create(root.join(ARCHIVE)).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let (train, test) = bins();
        let mut files = vec![
            ("fine_label_names.txt", names_txt().into_bytes()),
            ("train.bin", train),
        ];
        if with_test {
            files.insert(0, ("test.bin", test));
        }
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("{ARCHIVE_FOLDER}/{name}"), data.as_slice())
                .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        split_file(root);
    }

    fn off() -> CacheOptions {
        CacheOptions {
            dir: None,
            disabled: true,
        }
    }

    const NATIVE: ImageShape = ImageShape {
        channels: 3,
        height: 32,
        width: 32,
    };

    #[test]
    fn the_embedded_names_are_cifar_100s_alphabetical_fine_labels() {
        let mut sorted = FINE_LABEL_NAMES;
        sorted.sort();
        assert_eq!(sorted, FINE_LABEL_NAMES);
        assert_eq!(FINE_LABEL_NAMES.iter().collect::<HashSet<_>>().len(), 100);
        assert_eq!(
            &FINE_LABEL_NAMES[..10],
            [
                "apple",
                "aquarium_fish",
                "baby",
                "bear",
                "beaver",
                "bed",
                "bee",
                "beetle",
                "bicycle",
                "bottle"
            ]
        );
    }

    #[test]
    fn the_shipped_split_has_64_16_20_disjoint_classes_covering_cifar_100() {
        let dir = super::super::repo_data_dir().join("cifar-fs/splits");
        let mut all = HashSet::new();
        for (s, want) in Split::ALL.iter().zip(SPLIT_CLASSES) {
            let path = dir.join(format!("{s}.txt"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text, builtin_split(*s));
            let classes = parse_split(&text, &path).unwrap();
            assert_eq!(classes.len(), want, "{s}");
            for (_, l) in classes {
                assert!(all.insert(l), "label {l} in two splits");
            }
        }
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn extracted_bins_give_every_record_of_each_class_train_first_then_test() {
        let tmp = tempfile::tempdir().unwrap();
        extracted(tmp.path());
        let ds = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off()).unwrap();
        assert_eq!(ds.class_names(), ["bear", "apple", "bed"]);
        assert_eq!((ds.num_classes(), ds.num_images()), (3, 21));
        assert_eq!(ds.images_in_class(0), 7);
        assert_eq!(ds.decoded_images(), 21);
        assert_eq!(ds.image(0, 1), &record(3, 1)[2..]);
        assert_eq!(ds.image(2, 5), &record(5, 100)[2..]);
        assert_eq!(ds.image(1, 6), &record(0, 101)[2..]);
        assert!(matches!(ds.source(), Source::Extracted(_)));
        // Other shapes: grey, resized.
        let g =
            CifarFs::load(tmp.path(), Split::Train, ImageShape::new(1, 16, 16), &off()).unwrap();
        assert_eq!(g.image(0, 0).len(), 256);
    }

    #[test]
    fn the_tar_gz_archive_gives_the_same_images_as_the_extracted_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        extracted(a.path());
        archive(b.path(), true);
        let x = CifarFs::load(a.path(), Split::Train, NATIVE, &off()).unwrap();
        let y = CifarFs::load(b.path(), Split::Train, NATIVE, &off()).unwrap();
        assert!(matches!(y.source(), Source::Archive(_)));
        assert_eq!(x.num_images(), y.num_images());
        for c in 0..3 {
            for i in 0..7 {
                assert_eq!(x.image(c, i), y.image(c, i));
            }
        }
    }

    #[test]
    fn an_archive_without_test_bin_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        archive(tmp.path(), false);
        let err = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(err.contains(ARCHIVE) && err.contains("test.bin"), "{err}");
    }

    #[test]
    fn a_truncated_bin_is_an_error_naming_the_file_and_the_record_size() {
        let tmp = tempfile::tempdir().unwrap();
        extracted(tmp.path());
        let path = tmp.path().join(ARCHIVE_FOLDER).join("test.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 100);
        std::fs::write(&path, bytes).unwrap();
        let err = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.bin") && err.contains("3074"), "{err}");
    }

    #[test]
    fn a_label_out_of_range_is_an_error_naming_the_file_and_record() {
        let tmp = tempfile::tempdir().unwrap();
        extracted(tmp.path());
        let path = tmp.path().join(ARCHIVE_FOLDER).join("train.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4 * RECORD_BYTES + 1] = 100;
        std::fs::write(&path, bytes).unwrap();
        let err = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.bin") && err.contains("record 4") && err.contains("fine label 100"),
            "{err}"
        );
    }

    #[test]
    fn a_label_names_file_in_another_order_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        extracted(tmp.path());
        let mut names = FINE_LABEL_NAMES;
        names.swap(1, 2);
        std::fs::write(
            tmp.path().join(ARCHIVE_FOLDER).join("fine_label_names.txt"),
            names.join("\n"),
        )
        .unwrap();
        let err = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fine_label_names.txt") && err.contains("label 1"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_class_in_the_split_file_is_an_error_naming_the_line() {
        let err = parse_split("apple\nunicorn\n", Path::new("s.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.txt") && err.contains("line 2") && err.contains("unicorn"));
    }

    #[test]
    fn a_split_class_without_records_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        extracted(tmp.path());
        std::fs::write(tmp.path().join("splits/train.txt"), "apple\nworm\n").unwrap();
        let err = CifarFs::load(tmp.path(), Split::Train, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(err.contains("worm") && err.contains("no images"), "{err}");
    }

    #[test]
    fn a_root_without_cifar_data_is_an_error_naming_the_places_looked_at() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CifarFs::load(tmp.path(), Split::Val, NATIVE, &off())
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.bin") && err.contains(ARCHIVE), "{err}");
    }

    #[test]
    fn a_second_load_reads_the_cache_and_a_new_archive_invalidates_it() {
        let tmp = tempfile::tempdir().unwrap();
        archive(tmp.path(), true);
        let opts = CacheOptions::default();
        let a = CifarFs::load(tmp.path(), Split::Train, NATIVE, &opts).unwrap();
        assert_eq!(a.decoded_images(), 21);
        let b = CifarFs::load(tmp.path(), Split::Train, NATIVE, &opts).unwrap();
        assert!(b.cache_status().is_hit(), "{}", b.cache_status());
        assert_eq!(b.decoded_images(), 0);
        assert_eq!(b.class_names(), a.class_names());
        assert_eq!(a.image(2, 6), b.image(2, 6));
        let f = std::fs::File::options()
            .write(true)
            .open(tmp.path().join(ARCHIVE))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(5))
            .unwrap();
        drop(f);
        let c = CifarFs::load(tmp.path(), Split::Train, NATIVE, &opts).unwrap();
        assert!(
            matches!(
                c.cache_status(),
                CacheStatus::Built {
                    miss: cache::CacheMiss::Stale,
                    ..
                }
            ),
            "{}",
            c.cache_status()
        );
    }
}

//! miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) split: 100 ImageNet
//! classes, 600 images each; 64 train / 16 val / 20 test classes (38,400 / 9,600 / 12,000 images).
//!
//! Two on-disk layouts are read as they are, detected automatically under the root (usually
//! `<data dir>/miniimagenet`):
//!
//! * **flat**: `root/images/<file>.jpg` (all 60,000 images in one folder) plus split CSVs with the
//!   header `filename,label`. The CSVs are `root/splits/<split>.csv` or `root/<split>.csv` when
//!   present, else the Ravi split compiled into this library (the repository's
//!   `data/miniimagenet/splits/`). Classes are in order of first appearance in the CSV, images in
//!   CSV order.
//! * **class folders**: `root/<split>/<wnid>/<image>` (`root/train/n01532829/*.jpg`...), classes
//!   and images in name order.
//!
//! Images of any size, JPEG or PNG, grey or colour, are converted to the requested channels and
//! resized to the requested size (84x84 by convention) by the [image pipeline](super::image)
//! (antialiased Triangle filter: PIL's bilinear `resize` behind torchvision). Decoding runs in
//! parallel and its result is kept in the [decoded-image cache](super::cache).
//!
//! Errors name the missing folder, the missing image (and the CSV line that lists it), the CSV
//! line that is malformed, or the file that does not decode.
//!
//! Over 400 lines: two on-disk layouts, the split CSVs and their checks; about 320 lines are tests.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::{self, CacheOptions, CacheStatus, Fingerprint, ImageStore};
pub(crate) use super::image::check_shape;
use super::image::{has_image_extension, is_hidden, read_dir_sorted};
use super::omniglot::Split;
use super::{Dataset, ImageShape};
use crate::{Error, Result};

/// Name of the dataset in `open_split` and in the data directory.
pub const NAME: &str = "miniimagenet";
/// Classes per split in the Ravi & Larochelle split: train, val, test.
pub const SPLIT_CLASSES: [usize; 3] = [64, 16, 20];
/// Images per class.
pub const IMAGES_PER_CLASS: usize = 600;
/// The conventional image side.
pub const DEFAULT_SIZE: usize = 84;
/// Bumped whenever decoding changes, so caches made by older code are rebuilt.
const READER_VERSION: &str = "bmssl miniimagenet reader 1";

/// The Ravi & Larochelle split files, compiled in so the flat layout works from any data dir.
const RAVI_SPLITS: [(&str, &str); 3] = [
    (
        "train",
        include_str!("../../../../data/miniimagenet/splits/train.csv"),
    ),
    (
        "val",
        include_str!("../../../../data/miniimagenet/splits/val.csv"),
    ),
    (
        "test",
        include_str!("../../../../data/miniimagenet/splits/test.csv"),
    ),
];

/// The built-in Ravi & Larochelle CSV of `split` (`filename,label` rows).
pub fn ravi_split_csv(split: Split) -> &'static str {
    RAVI_SPLITS[split as usize].1
}

/// Which layout a miniImageNet root has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `root/images/*` plus split CSVs.
    Flat,
    /// `root/<split>/<class>/*`.
    ClassFolders,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Flat => "flat (images/ + split CSV)",
            Layout::ClassFolders => "class folders (<split>/<class>/)",
        })
    }
}

/// Find the layout of `root`: `images/` means flat, a `train/`, `val/` or `test/` folder means
/// class folders. The error names what was looked for.
pub fn detect_layout(root: &Path) -> Result<Layout> {
    if root.join("images").is_dir() {
        return Ok(Layout::Flat);
    }
    if Split::ALL.iter().any(|s| root.join(s.as_str()).is_dir()) {
        return Ok(Layout::ClassFolders);
    }
    let what = if root.is_dir() {
        "has neither an images/ folder (flat layout: images/<file>.jpg + split CSVs) nor \
         train/, val/, test/ folders (one folder per class)"
    } else {
        "does not exist (expected images/ + split CSVs, or train/<class>/, val/, test/)"
    };
    Err(Error::dataset(NAME, format!("{} {what}", root.display())))
}

/// One split of miniImageNet, decoded into memory (or read from the cache).
#[derive(Clone, Debug)]
pub struct MiniImageNet {
    store: ImageStore,
    split: Split,
    layout: Layout,
    split_source: String,
    cache: CacheStatus,
    cache_file: Option<PathBuf>,
    decoded: usize,
}

impl MiniImageNet {
    /// Load `split` from `root` as `shape` (channels 1 or 3, any size), using the cache as
    /// `cache` says.
    pub fn load(
        root: &Path,
        split: Split,
        shape: ImageShape,
        cache: &CacheOptions,
    ) -> Result<Self> {
        check_shape(shape)?;
        let layout = detect_layout(root)?;
        let name = format!("{NAME}/{split}");
        let (listing, split_source) = match layout {
            Layout::Flat => list_flat(root, split)?,
            Layout::ClassFolders => list_folders(root, split)?,
        };
        let mut fp = Fingerprint::new();
        fp.add_str(READER_VERSION)
            .add_str(&format!("{layout:?}"))
            .add_str(&shape.to_string());
        for (c, class) in listing.class_names.iter().enumerate() {
            fp.add_str(class).add_u64(listing.counts[c] as u64);
        }
        for (rel, meta) in &listing.files {
            fp.add_str(rel).add_metadata(meta);
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
                let mut store = ImageStore::new(
                    &name,
                    shape,
                    listing.class_names.clone(),
                    &listing.counts,
                    fingerprint,
                )?;
                let base = listing.base.as_path();
                crate::error::collect_in_order(
                    store
                        .pixels_mut()
                        .par_chunks_mut(shape.numel())
                        .zip(listing.files.par_iter())
                        .map(|(out, (rel, _))| decode_into(&base.join(rel), shape, out)),
                )?;
                decoded = listing.files.len();
                Ok(store)
            })?;
        store.set_name(name);
        Ok(MiniImageNet {
            store,
            split,
            layout,
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
    /// The layout found on disk.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Where the class split came from (a CSV path, "built-in Ravi & Larochelle split", or the
    /// split folder).
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
    /// How many image files this load decoded (0 on a cache hit).
    pub fn decoded_images(&self) -> usize {
        self.decoded
    }
    /// Class names (WordNet ids), in class-index order.
    pub fn class_names(&self) -> &[String] {
        self.store.class_names()
    }
}

impl Dataset for MiniImageNet {
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

/// Files of one split, class by class.
struct Listing {
    /// Directory the relative paths start from.
    base: PathBuf,
    class_names: Vec<String>,
    counts: Vec<usize>,
    /// Path relative to `base`, and its metadata (for the fingerprint).
    files: Vec<(String, std::fs::Metadata)>,
}

/// One parsed split CSV: `(filename, label)` rows with their line numbers.
#[derive(Debug)]
pub struct SplitCsv {
    /// `(line number, filename, label)`, in file order.
    pub rows: Vec<(usize, String, String)>,
}

impl SplitCsv {
    /// Parse `text` (from `source`, named in errors): header `filename,label`, then one
    /// `file,label` row per image. File names must be plain names (no folders, no `..`) and
    /// unique.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
        if header != "filename,label" {
            return Err(Error::corrupt(
                source,
                format!("line 1 is `{header}`, not the header `filename,label`"),
            ));
        }
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        for (i, line) in lines {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| Error::corrupt(source, format!("line {line_no} `{line}`: {why}"));
            let mut parts = line.split(',');
            let (Some(file), Some(label), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected two fields, filename,label"));
            };
            let (file, label) = (file.trim(), label.trim());
            if file.is_empty() || label.is_empty() {
                return Err(bad("empty filename or label"));
            }
            if file.contains(['/', '\\']) || file == "." || file == ".." {
                return Err(bad("the filename must be a plain name inside images/"));
            }
            if !seen.insert(file.to_string()) {
                return Err(bad("this filename is listed twice"));
            }
            rows.push((line_no, file.to_string(), label.to_string()));
        }
        if rows.is_empty() {
            return Err(Error::corrupt(source, "no rows after the header"));
        }
        Ok(SplitCsv { rows })
    }

    /// Labels in order of first appearance, and the row indices of each.
    pub fn classes(&self) -> Vec<(String, Vec<usize>)> {
        let mut order: Vec<(String, Vec<usize>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (r, (_, _, label)) in self.rows.iter().enumerate() {
            let c = *index.entry(label.as_str()).or_insert_with(|| {
                order.push((label.clone(), Vec::new()));
                order.len() - 1
            });
            order[c].1.push(r);
        }
        order
    }
}

fn list_flat(root: &Path, split: Split) -> Result<(Listing, String)> {
    let candidates = [
        root.join("splits").join(format!("{split}.csv")),
        root.join(format!("{split}.csv")),
    ];
    let (csv_path, text, source) = match candidates.iter().find(|p| p.is_file()) {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            (p.clone(), Cow::Owned(text), p.display().to_string())
        }
        None => (
            PathBuf::from(format!("built-in {split}.csv")),
            Cow::Borrowed(ravi_split_csv(split)),
            "built-in Ravi & Larochelle split".to_string(),
        ),
    };
    let csv = SplitCsv::parse(&text, &csv_path)?;
    let images = root.join("images");
    let classes = csv.classes();
    let mut files = Vec::with_capacity(csv.rows.len());
    let mut counts = Vec::with_capacity(classes.len());
    let mut names = Vec::with_capacity(classes.len());
    for (label, rows) in classes {
        counts.push(rows.len());
        names.push(label);
        for r in rows {
            let (line, file, _) = &csv.rows[r];
            let path = images.join(file);
            let meta = std::fs::metadata(&path).map_err(|e| {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "missing image (listed in {} line {line})",
                            csv_path.display()
                        ),
                    )
                } else {
                    e
                };
                Error::io(&path, why)
            })?;
            files.push((file.clone(), meta));
        }
    }
    Ok((
        Listing {
            base: images,
            class_names: names,
            counts,
            files,
        },
        source,
    ))
}

fn list_folders(root: &Path, split: Split) -> Result<(Listing, String)> {
    let dir = root.join(split.as_str());
    if !dir.is_dir() {
        return Err(Error::dataset(
            format!("{NAME}/{split}"),
            format!(
                "{} is missing (class-folder layout: {}/<class>/<image>)",
                dir.display(),
                dir.display()
            ),
        ));
    }
    let mut class_names = Vec::new();
    let mut counts = Vec::new();
    let mut files = Vec::new();
    for class_dir in read_dir_sorted(&dir)? {
        if !class_dir.is_dir() || is_hidden(&class_dir) {
            continue;
        }
        let class = file_name(&class_dir);
        let before = files.len();
        for path in read_dir_sorted(&class_dir)? {
            if is_hidden(&path) {
                continue;
            }
            if path.is_dir() || !has_image_extension(&path) {
                return Err(Error::corrupt(
                    &path,
                    "not an image file (expected .png, .jpg or .jpeg)",
                ));
            }
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
            files.push((format!("{class}/{}", file_name(&path)), meta));
        }
        if files.len() == before {
            return Err(Error::dataset(
                class_dir.display().to_string(),
                "empty class folder: it holds no images",
            ));
        }
        counts.push(files.len() - before);
        class_names.push(class);
    }
    if class_names.is_empty() {
        return Err(Error::dataset(
            dir.display().to_string(),
            "no class folders (expected <split>/<class>/<image>)",
        ));
    }
    let source = dir.display().to_string();
    Ok((
        Listing {
            base: dir,
            class_names,
            counts,
            files,
        },
        source,
    ))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Decode one image file into `out` (CHW, `shape`) through the [image pipeline](super::image).
pub(crate) fn decode_into(path: &Path, shape: ImageShape, out: &mut [u8]) -> Result<()> {
    super::image::load_file_into(path, shape, out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JPEG of `w` x `h` whose pixels depend on (class, image) so images differ.
    pub(crate) fn write_jpeg(path: &Path, w: u32, h: u32, seed: u32) {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 7 + y * 3 + seed * 37) % 256;
            image::Rgb([v as u8, (seed * 50 % 256) as u8, (255 - v) as u8])
        });
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
            .encode_image(&img)
            .unwrap();
        std::fs::write(path, buf).unwrap();
    }

    const WNIDS: [&str; 3] = ["n01532829", "n01558993", "n01704323"];

    /// Flat layout: images/ and splits/train.csv with 3 classes x 4 images (+ 1 val class).
    fn flat_fixture(root: &Path) {
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("splits")).unwrap();
        let mut csv = String::from("filename,label\n");
        for (c, wnid) in WNIDS.iter().enumerate() {
            for i in 0..4u32 {
                let file = format!("{wnid}{:08}.jpg", i + 1);
                write_jpeg(&root.join("images").join(&file), 20, 16, c as u32 * 10 + i);
                csv.push_str(&format!("{file},{wnid}\n"));
            }
        }
        std::fs::write(root.join("splits/train.csv"), csv).unwrap();
    }

    /// Class-folder layout with the same images as `flat_fixture`.
    fn folder_fixture(root: &Path) {
        for (c, wnid) in WNIDS.iter().enumerate() {
            let dir = root.join("train").join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..4u32 {
                let file = format!("{wnid}{:08}.jpg", i + 1);
                write_jpeg(&dir.join(file), 20, 16, c as u32 * 10 + i);
            }
        }
    }

    fn no_cache() -> CacheOptions {
        CacheOptions {
            dir: None,
            disabled: true,
        }
    }

    const SHAPE: ImageShape = ImageShape {
        channels: 3,
        height: 8,
        width: 8,
    };

    #[test]
    fn the_shipped_ravi_split_has_64_16_20_classes_of_600_images_each() {
        let dir = super::super::repo_data_dir().join("miniimagenet/splits");
        let mut all = HashSet::new();
        for (s, want) in Split::ALL.iter().zip(SPLIT_CLASSES) {
            let path = dir.join(format!("{s}.csv"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text, ravi_split_csv(*s), "built-in copy of {s}.csv differs");
            let csv = SplitCsv::parse(&text, &path).unwrap();
            assert_eq!(csv.rows.len(), want * IMAGES_PER_CLASS);
            let classes = csv.classes();
            assert_eq!(classes.len(), want, "{s}");
            for (label, rows) in &classes {
                assert_eq!(rows.len(), IMAGES_PER_CLASS, "{s} {label}");
                assert!(all.insert(label.clone()), "class {label} in two splits");
                for &r in rows {
                    assert!(csv.rows[r].1.starts_with(label.as_str()));
                }
            }
        }
        assert_eq!(all.len(), 100);
        let rows: usize = Split::ALL
            .iter()
            .map(|s| ravi_split_csv(*s).lines().count() - 1)
            .sum();
        assert_eq!(rows, 60_000);
    }

    #[test]
    fn the_flat_layout_reads_the_split_csv_and_resizes_every_image() {
        let tmp = tempfile::tempdir().unwrap();
        flat_fixture(tmp.path());
        let ds = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &no_cache()).unwrap();
        assert_eq!(ds.layout(), Layout::Flat);
        assert_eq!(ds.class_names(), WNIDS);
        assert_eq!((ds.num_classes(), ds.num_images()), (3, 12));
        assert_eq!(ds.image(2, 3).len(), 3 * 8 * 8);
        assert_eq!(ds.decoded_images(), 12);
        assert_eq!(*ds.cache_status(), CacheStatus::Disabled);
        // Green plane of class 1 image 2 is the constant seed*50 = 600 % 256 = 88, JPEG-ish.
        let g = ds.image(1, 2)[64 + 20];
        assert!((g as i32 - 88).abs() <= 12, "{g}");
        assert!(ds.split_source().ends_with("train.csv"));
    }

    #[test]
    fn both_layouts_give_the_same_pixels_for_the_same_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        flat_fixture(a.path());
        folder_fixture(b.path());
        let flat = MiniImageNet::load(a.path(), Split::Train, SHAPE, &no_cache()).unwrap();
        let folders = MiniImageNet::load(b.path(), Split::Train, SHAPE, &no_cache()).unwrap();
        assert_eq!(folders.layout(), Layout::ClassFolders);
        assert_eq!(flat.class_names(), folders.class_names());
        for c in 0..3 {
            for i in 0..4 {
                assert_eq!(flat.image(c, i), folders.image(c, i));
            }
        }
        let grey = ImageShape::new(1, 84, 84);
        let g = MiniImageNet::load(b.path(), Split::Train, grey, &no_cache()).unwrap();
        assert_eq!(g.image(0, 0).len(), 84 * 84);
    }

    #[test]
    fn a_missing_image_is_an_error_naming_the_file_and_the_csv_line() {
        let tmp = tempfile::tempdir().unwrap();
        flat_fixture(tmp.path());
        std::fs::remove_file(tmp.path().join("images/n0155899300000003.jpg")).unwrap();
        let err = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &no_cache())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n0155899300000003.jpg") && err.contains("train.csv line 8"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_jpeg_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        folder_fixture(tmp.path());
        let bad = tmp.path().join("train/n01704323/n0170432300000002.jpg");
        let bytes = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &bytes[..40]).unwrap();
        let err = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &no_cache())
            .unwrap_err()
            .to_string();
        assert!(err.contains("n0170432300000002.jpg"), "{err}");
    }

    #[test]
    fn a_root_with_neither_layout_is_an_error_naming_both_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let err = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &no_cache())
            .unwrap_err()
            .to_string();
        assert!(err.contains("images/") && err.contains("train/"), "{err}");
        let err = MiniImageNet::load(&tmp.path().join("nope"), Split::Val, SHAPE, &no_cache())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_split_folder_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        folder_fixture(tmp.path());
        let err = MiniImageNet::load(tmp.path(), Split::Test, SHAPE, &no_cache())
            .unwrap_err()
            .to_string();
        assert!(err.contains("test") && err.contains("missing"), "{err}");
    }

    #[test]
    fn malformed_csv_lines_are_errors_naming_the_line() {
        let p = Path::new("x.csv");
        let err = SplitCsv::parse("file,label\na.jpg,n1\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = SplitCsv::parse("filename,label\na.jpg,n1\nb.jpg\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("x.csv"), "{err}");
        let err = SplitCsv::parse("filename,label\n../a.jpg,n1\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain name"), "{err}");
        let err = SplitCsv::parse("filename,label\na.jpg,n1\na.jpg,n2\n", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn a_second_load_reads_the_cache_and_decodes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        flat_fixture(tmp.path());
        let opts = CacheOptions {
            dir: Some(tmp.path().join("cache")),
            disabled: false,
        };
        let first = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        assert_eq!(first.decoded_images(), 12);
        assert!(first.cache_file().unwrap().is_file());
        let second = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        assert!(second.cache_status().is_hit(), "{}", second.cache_status());
        assert_eq!(second.decoded_images(), 0);
        assert_eq!(second.class_names(), first.class_names());
        assert_eq!(second.name(), "miniimagenet/train");
        for c in 0..3 {
            for i in 0..4 {
                assert_eq!(first.image(c, i), second.image(c, i));
            }
        }
        // Another size is another cache file.
        let other =
            MiniImageNet::load(tmp.path(), Split::Train, ImageShape::new(3, 4, 4), &opts).unwrap();
        assert_eq!(other.decoded_images(), 12);
    }

    #[test]
    fn a_corrupted_cache_byte_is_detected_and_the_cache_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        folder_fixture(tmp.path());
        let opts = CacheOptions::default(); // <root>/.bmssl-cache
        let first = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        let file = first.cache_file().unwrap().to_path_buf();
        assert!(file.starts_with(tmp.path().join(".bmssl-cache")));
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] = bytes[mid].wrapping_add(1);
        std::fs::write(&file, bytes).unwrap();
        let second = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        assert!(
            matches!(
                second.cache_status(),
                CacheStatus::Built {
                    miss: cache::CacheMiss::Corrupt(_),
                    saved: Ok(())
                }
            ),
            "{}",
            second.cache_status()
        );
        assert_eq!(second.decoded_images(), 12);
        for i in 0..4 {
            assert_eq!(first.image(1, i), second.image(1, i));
        }
        let third = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        assert!(third.cache_status().is_hit());
    }

    #[test]
    fn a_changed_source_image_invalidates_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        flat_fixture(tmp.path());
        let opts = CacheOptions {
            dir: Some(tmp.path().join("c")),
            disabled: false,
        };
        let first = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        let changed = tmp.path().join("images/n0153282900000001.jpg");
        write_jpeg(&changed, 30, 30, 200);
        let f = std::fs::File::options().write(true).open(&changed).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
        drop(f);
        let second = MiniImageNet::load(tmp.path(), Split::Train, SHAPE, &opts).unwrap();
        assert!(
            matches!(
                second.cache_status(),
                CacheStatus::Built {
                    miss: cache::CacheMiss::Stale,
                    ..
                }
            ),
            "{}",
            second.cache_status()
        );
        assert_ne!(first.image(0, 0), second.image(0, 0));
        assert_eq!(first.image(0, 1), second.image(0, 1));
    }

    /// Throughput on 2,000 generated 84x84 JPEGs (20 classes x 100): decode vs. cache load.
    /// `cargo test --release -p bmssl --lib throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: run explicitly in release mode"]
    fn throughput_of_decoding_and_of_the_cache_on_2000_jpegs() {
        let tmp = tempfile::tempdir().unwrap();
        for (side, dir) in [(84u32, "native84"), (256, "from256")] {
            let root = tmp.path().join(dir);
            for c in 0..20u32 {
                let d = root.join("train").join(format!("n{c:08}"));
                std::fs::create_dir_all(&d).unwrap();
                for i in 0..100u32 {
                    write_jpeg(&d.join(format!("{i:04}.jpg")), side, side, c * 100 + i);
                }
            }
            let shape = ImageShape::new(3, 84, 84);
            let opts = CacheOptions::default();
            let t = std::time::Instant::now();
            let a = MiniImageNet::load(&root, Split::Train, shape, &opts).unwrap();
            let decode = t.elapsed().as_secs_f64();
            assert_eq!(a.decoded_images(), 2000);
            let t = std::time::Instant::now();
            let b = MiniImageNet::load(&root, Split::Train, shape, &opts).unwrap();
            let hit = t.elapsed().as_secs_f64();
            assert!(b.cache_status().is_hit());
            println!(
                "{side}x{side} JPEG -> 84x84: decode {:.0} images/s ({decode:.3} s), cache load \
                 {:.0} images/s ({hit:.3} s), {} rayon threads",
                2000.0 / decode,
                2000.0 / hit,
                rayon::current_num_threads()
            );
        }
    }
}

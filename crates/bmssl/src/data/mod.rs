//! Datasets: where images come from, held in memory as `u8` pixels.
//!
//! A [`Dataset`] is a list of classes, each a list of same-shaped images. Two kinds exist:
//! [`omniglot::Omniglot`] (read straight from the original zips, with the Vinyals split and
//! optional rotation classes) and [`image_folder::ImageFolder`] (`root/<class>/<image>`, for a
//! user's own data). [`InMemoryDataset`] holds small synthetic sets for tests.
//!
//! Self-supervised meta-training must never read labels. It therefore takes an
//! [`UnlabelledPool`], which flattens a dataset split into a list of images and exposes only
//! `len()`, the image shape and image access by index: there is no way to ask it for a class id.
//! Supervised evaluation ([`crate::episodes`]) takes a `&dyn Dataset` instead.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Result};

pub mod cache;
pub mod cifar_fs;
pub mod image;
pub mod image_folder;
pub mod mini_imagenet;
pub mod omniglot;

/// Environment variable naming the data directory when `--data-dir` is not given.
pub const DATA_ENV: &str = "BMSSL_DATA";

/// Where the data lives: `flag` (the CLI's `--data-dir`), else `$BMSSL_DATA`, else
/// `<directory of the executable>/../../data` if that exists, else `./data`.
///
/// Why this order: an explicit flag wins, an environment variable serves scripts and CI, and the
/// executable-relative guess makes `target/release/bmssl` (or the test binary in
/// `target/<profile>/deps/`, see [`repo_data_dir`]) find the repository's `data/` from any
/// working directory.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|p| p.join("../../data")))
        .filter(|d| d.is_dir())
    {
        return dir;
    }
    PathBuf::from("data")
}

/// The repository's `data/` directory, found from this crate's source location at compile time.
///
/// Why: tests run from the crate directory and from `target/<profile>/deps/`, neither of which
/// is where [`resolve_data_dir`]'s executable rule looks; tests use this instead.
pub fn repo_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// Shape of one image, channels first. Pixels are stored `[channels][height][width]` (CHW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// A new shape.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }
    /// Values per image: `channels * height * width`.
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// A labelled set of images: classes, images per class, one shared image shape, `u8` pixels.
///
/// Why a trait: evaluation episodes and the unlabelled pool work the same way on Omniglot splits,
/// image folders and synthetic test sets. `Send + Sync` so views can be built in parallel.
pub trait Dataset: Send + Sync {
    /// A short name for messages ("omniglot/train", a folder path...).
    fn name(&self) -> &str;
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Number of images in `class` (`class < num_classes()`).
    fn images_in_class(&self, class: usize) -> usize;
    /// Shape of every image.
    fn shape(&self) -> ImageShape;
    /// Pixels of image `index` of `class`, CHW, `shape().numel()` bytes. Borrowed when stored,
    /// owned when computed on access (Omniglot rotations).
    ///
    /// Panics if `class` or `index` is out of range: callers index from the counts above.
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]>;
    /// A name for `class` for people (its folder, `alphabet/character/rot90` for Omniglot...);
    /// the class index when the dataset has none.
    fn class_name(&self, class: usize) -> String {
        class.to_string()
    }
    /// A name for image `index` of `class` (its file, when it came from one); the index by
    /// default.
    fn image_name(&self, class: usize, index: usize) -> String {
        let _ = class;
        index.to_string()
    }
    /// Total images over all classes.
    fn num_images(&self) -> usize {
        (0..self.num_classes())
            .map(|c| self.images_in_class(c))
            .sum()
    }
}

/// Where each image lies in a buffer of images grouped by class (class by class, CHW each): the
/// one layout of [`InMemoryDataset`] and of the decoded-image cache ([`cache::ImageStore`]), and
/// so the one implementation of [`Dataset`]'s counts and image slices.
#[derive(Clone, Debug)]
pub(crate) struct ClassLayout {
    pub(crate) shape: ImageShape,
    /// Index of the first image of each class, plus the total at the end.
    pub(crate) class_start: Vec<usize>,
}

impl ClassLayout {
    /// The layout of `counts[c]` images of each class.
    pub(crate) fn from_counts(shape: ImageShape, counts: impl IntoIterator<Item = usize>) -> Self {
        let mut class_start = vec![0];
        for n in counts {
            class_start.push(class_start[class_start.len() - 1] + n);
        }
        ClassLayout { shape, class_start }
    }
    pub(crate) fn num_classes(&self) -> usize {
        self.class_start.len() - 1
    }
    pub(crate) fn images_in_class(&self, class: usize) -> usize {
        self.class_start[class + 1] - self.class_start[class]
    }
    /// The bytes of image `index` of `class`, counted from the first pixel. Panics when out of
    /// range, as [`Dataset::image`] says.
    pub(crate) fn image_range(&self, class: usize, index: usize) -> std::ops::Range<usize> {
        assert!(
            index < self.images_in_class(class),
            "image {index} out of range in class {class}"
        );
        let per = self.shape.numel();
        let i = self.class_start[class] + index;
        i * per..(i + 1) * per
    }
}

/// Images held in one buffer, grouped by class. Used for synthetic sets in tests and as the
/// storage of [`image_folder::ImageFolder`].
#[derive(Clone, Debug)]
pub struct InMemoryDataset {
    name: String,
    /// All images, class by class; CHW each.
    pixels: Vec<u8>,
    layout: ClassLayout,
}

impl InMemoryDataset {
    /// Build from one buffer per class, each the concatenation of that class's CHW images.
    ///
    /// Errors if a class is empty or its buffer is not a whole number of images.
    pub fn from_classes(
        name: impl Into<String>,
        shape: ImageShape,
        classes: Vec<Vec<u8>>,
    ) -> Result<Self> {
        let name = name.into();
        let per = shape.numel();
        if per == 0 {
            return Err(Error::dataset(
                name,
                format!("image shape {shape} has no pixels"),
            ));
        }
        let mut counts = Vec::with_capacity(classes.len());
        let mut pixels = Vec::with_capacity(classes.iter().map(Vec::len).sum());
        for (c, buf) in classes.into_iter().enumerate() {
            if buf.is_empty() || buf.len() % per != 0 {
                return Err(Error::dataset(
                    name,
                    format!(
                        "class {c} has {} bytes, not a positive multiple of {per} ({shape})",
                        buf.len()
                    ),
                ));
            }
            counts.push(buf.len() / per);
            pixels.extend_from_slice(&buf);
        }
        Ok(InMemoryDataset {
            name,
            pixels,
            layout: ClassLayout::from_counts(shape, counts),
        })
    }
}

impl Dataset for InMemoryDataset {
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
        Cow::Borrowed(&self.pixels[self.layout.image_range(class, index)])
    }
}

/// Images without labels: what self-supervised meta-training sees.
///
/// Built from a dataset split; exposes only [`len`](Self::len), [`shape`](Self::shape) and
/// [`image`](Self::image). Why: the paper's claim is that no label is used during meta-training;
/// with this type, code that could read one does not compile.
#[derive(Clone)]
pub struct UnlabelledPool {
    source: Arc<dyn Dataset>,
    /// `(class, index)` in the source, per pool image. Private: never leaves this type.
    items: Vec<(u32, u32)>,
}

impl UnlabelledPool {
    /// Every image of `split`, labels dropped.
    pub fn new(split: Arc<dyn Dataset>) -> Self {
        let items = (0..split.num_classes())
            .flat_map(|c| (0..split.images_in_class(c)).map(move |i| (c as u32, i as u32)))
            .collect();
        UnlabelledPool {
            source: split,
            items,
        }
    }
    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Shape of every image.
    pub fn shape(&self) -> ImageShape {
        self.source.shape()
    }
    /// Pixels of image `index` (CHW `u8`). Panics if `index >= len()`.
    pub fn image(&self, index: usize) -> Cow<'_, [u8]> {
        let (c, i) = self.items[index];
        self.source.image(c as usize, i as usize)
    }
}

impl std::fmt::Debug for UnlabelledPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnlabelledPool")
            .field("source", &self.source.name())
            .field("len", &self.items.len())
            .field("shape", &self.shape())
            .finish()
    }
}

/// Opens one split of a dataset by name:
///
/// * `omniglot`: from `<data_dir>/omniglot`, Vinyals split, optional rotations;
/// * `miniimagenet` (or `mini-imagenet`): from `<data_dir>/miniimagenet`, either layout (see
///   [`mini_imagenet`]), Ravi & Larochelle split;
/// * `cifar-fs` (or `cifarfs`): from `<data_dir>/cifar-fs`, CIFAR-100 binary files or archive
///   (see [`cifar_fs`]), CIFAR-FS split;
/// * otherwise a path to an image folder (`root/<class>/<image>`, one split: every split name
///   gives the whole folder).
///
/// Images are resized to `shape`. `rotations` applies to Omniglot only. miniImageNet and CIFAR-FS
/// use the decoded-image cache as `$BMSSL_CACHE_DIR` / `$BMSSL_NO_CACHE` say
/// ([`cache::CacheOptions::from_env`]); [`open_split_with_cache`] takes the options explicitly.
pub fn open_split(
    dataset: &str,
    split: &str,
    shape: ImageShape,
    rotations: bool,
    data_dir: Option<&Path>,
) -> Result<Arc<dyn Dataset>> {
    open_split_with_cache(
        dataset,
        split,
        shape,
        rotations,
        data_dir,
        &cache::CacheOptions::from_env(),
    )
}

/// The dataset names [`open_split`] knows besides image-folder paths, with their aliases
/// normalised: `Some("omniglot" | "miniimagenet" | "cifar-fs")`, or `None` for a folder path.
pub fn known_dataset(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "omniglot" => Some("omniglot"),
        "miniimagenet" | "mini-imagenet" | "mini_imagenet" => Some(mini_imagenet::NAME),
        "cifar-fs" | "cifarfs" | "cifar_fs" => Some(cifar_fs::NAME),
        _ => None,
    }
}

/// [`open_split`] with explicit cache options (the CLI's `--cache-dir` / `--no-cache`).
pub fn open_split_with_cache(
    dataset: &str,
    split: &str,
    shape: ImageShape,
    rotations: bool,
    data_dir: Option<&Path>,
    cache: &cache::CacheOptions,
) -> Result<Arc<dyn Dataset>> {
    match known_dataset(dataset) {
        Some("omniglot") => {
            if shape.channels != 1 {
                return Err(Error::config(
                    "channels",
                    format!("Omniglot is grey (1 channel), not {}", shape.channels),
                ));
            }
            if shape.height != shape.width {
                return Err(Error::config("image_size", "Omniglot images are square"));
            }
            let dir = resolve_data_dir(data_dir).join("omniglot");
            let o = omniglot::Omniglot::load_with_cache(
                &dir,
                &omniglot::OmniglotOptions {
                    rotations,
                    image_size: shape.height,
                },
                cache,
            )?;
            let split: omniglot::Split = split.parse()?;
            return Ok(Arc::new(o.split(split)));
        }
        Some(mini_imagenet::NAME) => {
            let split: omniglot::Split = split.parse()?;
            let root = resolve_data_dir(data_dir).join(mini_imagenet::NAME);
            return Ok(Arc::new(mini_imagenet::MiniImageNet::load(
                &root, split, shape, cache,
            )?));
        }
        Some(cifar_fs::NAME) => {
            let split: omniglot::Split = split.parse()?;
            let root = resolve_data_dir(data_dir).join(cifar_fs::NAME);
            return Ok(Arc::new(cifar_fs::CifarFs::load(
                &root, split, shape, cache,
            )?));
        }
        _ => {}
    }
    let root = Path::new(dataset);
    if !root.is_dir() {
        return Err(Error::dataset(
            dataset,
            "is neither `omniglot`, `miniimagenet`, `cifar-fs` nor an existing image folder \
             (root/<class>/<image>.png|jpg)",
        ));
    }
    Ok(Arc::new(image_folder::ImageFolder::load(root, shape)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_data_dir_wins() {
        assert_eq!(
            resolve_data_dir(Some(Path::new("/x/y"))),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn the_pool_lists_every_image_of_the_split_once() {
        let shape = ImageShape::new(1, 2, 2);
        let ds =
            InMemoryDataset::from_classes("t", shape, vec![vec![1; 8], vec![2; 4], vec![3; 12]])
                .unwrap();
        let pool = UnlabelledPool::new(Arc::new(ds));
        assert_eq!(pool.len(), 6);
        let firsts: Vec<u8> = (0..6).map(|i| pool.image(i)[0]).collect();
        assert_eq!(firsts, vec![1, 1, 2, 3, 3, 3]);
    }

    #[test]
    fn a_ragged_class_buffer_is_an_error() {
        let err = InMemoryDataset::from_classes("t", ImageShape::new(1, 2, 2), vec![vec![0; 5]])
            .unwrap_err();
        assert!(err.to_string().contains("class 0"), "{err}");
    }
}

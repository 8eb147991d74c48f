//! A user's own images: `root/<class>/<image>.png|jpg|jpeg`, any size, grey or colour.
//!
//! Every image goes through the [image pipeline](super::image): converted to the requested
//! channels (1 = luma, 3 = RGB) and resized to exactly the requested height x width (aspect ratio
//! not kept, antialiased Triangle filter), then held in memory. Pixels are stored as they are (no
//! inversion, unlike Omniglot).
//!
//! Strictness, so that a typo never silently shrinks a dataset: an empty class folder, a file with
//! another extension, or a file that does not decode is an error naming the path. Hidden files
//! (`.DS_Store`...) and plain files directly under `root` are ignored.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::image::{check_image_file, has_image_extension, is_hidden, read_dir_sorted, utf8_name};
pub use super::image::{IMAGE_EXTENSIONS, MAX_IMAGE_ALLOC, MAX_IMAGE_FILE_BYTES, MAX_IMAGE_SIDE};
use super::{Dataset, ImageShape, InMemoryDataset};
use crate::{Error, Result};

/// A folder of class folders of images, loaded into memory.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    data: InMemoryDataset,
    class_names: Vec<String>,
    /// Image files, class by class.
    files: Vec<Vec<PathBuf>>,
}

impl ImageFolder {
    /// Load every image under `root` as `shape` (channels 1 or 3). Classes are the sub-folders in
    /// name order; images within a class are in file-name order.
    pub fn load(root: &Path, shape: ImageShape) -> Result<Self> {
        super::image::check_shape(shape)?;
        let mut classes: Vec<(String, PathBuf)> = Vec::new();
        for entry in read_dir_sorted(root)? {
            if is_hidden(&entry) {
                continue;
            }
            // A broken or looping link is an error, not a class silently left out.
            let meta = std::fs::metadata(&entry).map_err(|e| Error::io(&entry, e))?;
            if meta.is_dir() {
                classes.push((utf8_name(&entry)?, entry));
            }
        }
        if classes.is_empty() {
            return Err(Error::dataset(
                root.display().to_string(),
                "no class folders (expected root/<class>/<image>)",
            ));
        }
        let mut files: Vec<(usize, PathBuf)> = Vec::new();
        for (c, (_, dir)) in classes.iter().enumerate() {
            let before = files.len();
            for path in read_dir_sorted(dir)? {
                if is_hidden(&path) {
                    continue;
                }
                if path.is_dir() || !has_image_extension(&path) {
                    return Err(Error::corrupt(
                        &path,
                        "not an image file (expected .png, .jpg or .jpeg)",
                    ));
                }
                check_image_file(&path)?;
                files.push((c, path));
            }
            if files.len() == before {
                return Err(Error::dataset(
                    dir.display().to_string(),
                    "empty class folder: it holds no images",
                ));
            }
        }
        // Read + decode + resize in parallel; order is kept by collect.
        let decoded: Vec<Vec<u8>> = crate::error::collect_in_order(
            files
                .par_iter()
                .map(|(_, path)| super::image::load_file(path, shape)),
        )?;
        let mut per_class: Vec<Vec<u8>> = vec![Vec::new(); classes.len()];
        let mut class_files: Vec<Vec<PathBuf>> = vec![Vec::new(); classes.len()];
        for ((c, path), pixels) in files.into_iter().zip(decoded) {
            per_class[c].extend_from_slice(&pixels);
            class_files[c].push(path);
        }
        let data = InMemoryDataset::from_classes(root.display().to_string(), shape, per_class)?;
        Ok(ImageFolder {
            data,
            class_names: classes.into_iter().map(|(n, _)| n).collect(),
            files: class_files,
        })
    }

    /// Class folder names, in class-index order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
}

impl Dataset for ImageFolder {
    fn name(&self) -> &str {
        self.data.name()
    }
    fn num_classes(&self) -> usize {
        self.data.num_classes()
    }
    fn images_in_class(&self, class: usize) -> usize {
        self.data.images_in_class(class)
    }
    fn shape(&self) -> ImageShape {
        self.data.shape()
    }
    fn class_name(&self, class: usize) -> String {
        self.class_names[class].clone()
    }
    fn image_name(&self, class: usize, index: usize) -> String {
        self.files[class][index].display().to_string()
    }
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]> {
        self.data.image(class, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, v: u8) {
        image::RgbImage::from_pixel(w, h, image::Rgb([v, v / 2, 255 - v]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn images_of_any_size_are_resized_to_the_requested_shape() {
        let tmp = tempfile::tempdir().unwrap();
        for (class, n) in [("a", 2), ("b", 3)] {
            std::fs::create_dir(tmp.path().join(class)).unwrap();
            for i in 0..n {
                write_png(
                    &tmp.path().join(class).join(format!("{i}.png")),
                    10 + i,
                    7,
                    40 * i as u8,
                );
            }
        }
        std::fs::write(tmp.path().join("a/.DS_Store"), b"x").unwrap();
        let ds = ImageFolder::load(tmp.path(), ImageShape::new(3, 4, 5)).unwrap();
        assert_eq!(ds.class_names(), ["a", "b"]);
        assert_eq!((ds.num_classes(), ds.num_images()), (2, 5));
        let img = ds.image(1, 2);
        assert_eq!(img.len(), 60);
        // CHW: the blue plane of a uniform (80, 40, 175) image.
        assert_eq!(img[40], 175);
        let grey = ImageFolder::load(tmp.path(), ImageShape::new(1, 6, 6)).unwrap();
        assert_eq!(grey.image(0, 0).len(), 36);
    }

    #[test]
    fn an_empty_class_folder_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("full")).unwrap();
        write_png(&tmp.path().join("full/x.png"), 4, 4, 1);
        std::fs::create_dir(tmp.path().join("hollow")).unwrap();
        let err = ImageFolder::load(tmp.path(), ImageShape::new(1, 4, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hollow") && err.contains("empty"), "{err}");
    }

    #[test]
    fn a_corrupt_image_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("c")).unwrap();
        std::fs::write(tmp.path().join("c/broken.png"), b"\x89PNG definitely not").unwrap();
        let err = ImageFolder::load(tmp.path(), ImageShape::new(1, 4, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.png"), "{err}");
    }

    #[test]
    fn a_non_image_file_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("c")).unwrap();
        write_png(&tmp.path().join("c/x.png"), 4, 4, 1);
        std::fs::write(tmp.path().join("c/notes.txt"), b"hello").unwrap();
        let err = ImageFolder::load(tmp.path(), ImageShape::new(1, 4, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt"), "{err}");
    }

    fn load_err(root: &Path) -> String {
        ImageFolder::load(root, ImageShape::new(1, 4, 4))
            .unwrap_err()
            .to_string()
    }

    /// Issue 19: only regular files are read (a FIFO would hang), their size is checked before
    /// reading, a broken class link is an error, and a non-UTF-8 name is refused by name.
    #[cfg(unix)]
    #[test]
    fn only_regular_files_of_bounded_size_with_utf8_names_are_read() {
        use std::os::unix::ffi::OsStrExt;
        // A FIFO named like an image.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("c")).unwrap();
        write_png(&tmp.path().join("c/a.png"), 4, 4, 1);
        let fifo = tmp.path().join("c/fifo.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = load_err(tmp.path());
            assert!(
                err.contains("fifo.png") && err.contains("not a regular file"),
                "{err}"
            );
            std::fs::remove_file(&fifo).unwrap();
        }
        // A (sparse) file over the size limit: refused without reading it.
        let big = tmp.path().join("c/big.png");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_IMAGE_FILE_BYTES + 1)
            .unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("big.png") && err.contains("64 MiB"), "{err}");
        std::fs::remove_file(&big).unwrap();
        // A broken class link.
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), tmp.path().join("d")).unwrap();
        let err = load_err(tmp.path());
        assert!(err.contains("/d: No such file"), "{err}");
        std::fs::remove_file(tmp.path().join("d")).unwrap();
        // A class folder whose name is not UTF-8.
        let bad = tmp.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&bad).unwrap();
        write_png(&bad.join("a.png"), 4, 4, 1);
        let err = load_err(tmp.path());
        assert!(err.contains("not valid UTF-8"), "{err}");
    }
}

//! A user's own images: `root/<class>/<image>.png|jpg|jpeg`, any size, grey or colour.
//!
//! Every image is converted to the requested channels (1 = luma, 3 = RGB) and resized to exactly
//! the requested height x width (aspect ratio not kept) with the antialiased
//! [`FilterType::Triangle`](image::imageops::FilterType::Triangle) filter, then held in memory.
//! Pixels are stored as they are (no inversion, unlike Omniglot).
//!
//! Strictness, so that a typo never silently shrinks a dataset: an empty class folder, a file with
//! another extension, or a file that does not decode is an error naming the path. Hidden files
//! (`.DS_Store`...) and plain files directly under `root` are ignored.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::{Dataset, ImageShape, InMemoryDataset};
use crate::{Error, Result};

/// Extensions accepted as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// A folder of class folders of images, loaded into memory.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    data: InMemoryDataset,
    class_names: Vec<String>,
}

impl ImageFolder {
    /// Load every image under `root` as `shape` (channels 1 or 3). Classes are the sub-folders in
    /// name order; images within a class are in file-name order.
    pub fn load(root: &Path, shape: ImageShape) -> Result<Self> {
        if shape.channels != 1 && shape.channels != 3 {
            return Err(Error::config(
                "channels",
                format!("{} is not 1 or 3", shape.channels),
            ));
        }
        if shape.height == 0 || shape.width == 0 {
            return Err(Error::config(
                "image size",
                format!("{}x{} has no pixels", shape.height, shape.width),
            ));
        }
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
                let ok = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
                if path.is_dir() || !ok {
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
            files.par_iter().map(|(_, path)| load_image(path, shape)),
        )?;
        let mut per_class: Vec<Vec<u8>> = vec![Vec::new(); classes.len()];
        for ((c, _), pixels) in files.iter().zip(decoded) {
            per_class[*c].extend_from_slice(&pixels);
        }
        let data = InMemoryDataset::from_classes(root.display().to_string(), shape, per_class)?;
        Ok(ImageFolder {
            data,
            class_names: classes.into_iter().map(|(n, _)| n).collect(),
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
    fn image(&self, class: usize, index: usize) -> Cow<'_, [u8]> {
        self.data.image(class, index)
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        out.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The name of `path`'s last component, which must be UTF-8: names are labels (class names, CSV
/// rows), and a lossy conversion would make two different names one.
pub(crate) fn utf8_name(path: &Path) -> Result<String> {
    let name = path.file_name().unwrap_or(path.as_os_str());
    name.to_str().map(str::to_string).ok_or_else(|| {
        Error::corrupt(
            path,
            "the name is not valid UTF-8 (it would be confused with other names); rename it",
        )
    })
}

/// Largest image file read (bytes), checked before reading.
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Checks, without opening it, that `path` is a regular file (a link to one is fine) of at most
/// [`MAX_IMAGE_FILE_BYTES`]: a FIFO would block forever, a device would read without end.
pub(crate) fn check_image_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::corrupt(
            path,
            "not a regular file (a FIFO, socket or device); refusing to read it",
        ));
    }
    if meta.len() > MAX_IMAGE_FILE_BYTES {
        return Err(Error::corrupt(
            path,
            format!(
                "{} bytes, more than the {} MiB an image file may have; refusing to read it",
                meta.len(),
                MAX_IMAGE_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(meta.len())
}

/// Reads an image file within [`check_image_file`]'s limits (also if it grows meanwhile).
pub(crate) fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let len = check_image_file(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_IMAGE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
        return Err(Error::corrupt(
            path,
            format!(
                "more than the {} MiB an image file may have; refusing it",
                MAX_IMAGE_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Largest width or height decoded (pixels): larger images are refused before decoding.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most memory one image's decoder may allocate (bytes).
pub const MAX_IMAGE_ALLOC: u64 = 512 * 1024 * 1024;

/// Decodes an image (format from `format`, else guessed from the bytes) within
/// [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_ALLOC`], so that a header claiming a huge image is refused
/// with a message naming the limit instead of exhausting memory. The error is the reason only
/// (callers add the path).
pub(crate) fn decode_limited(
    bytes: &[u8],
    format: Option<image::ImageFormat>,
) -> std::result::Result<image::DynamicImage, String> {
    let reader = || -> std::result::Result<_, String> {
        let cursor = std::io::Cursor::new(bytes);
        let mut r = match format {
            Some(f) => image::ImageReader::with_format(cursor, f),
            None => image::ImageReader::new(cursor)
                .with_guessed_format()
                .map_err(|e| format!("not a readable image: {e}"))?,
        };
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_IMAGE_ALLOC);
        r.limits(limits);
        Ok(r)
    };
    let limit_message = |dims: String| {
        format!(
            "image{dims} is over the decoding limit ({MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels, {} MiB); refusing it",
            MAX_IMAGE_ALLOC >> 20
        )
    };
    // The header alone tells the size (read without limits: it allocates nothing): refuse
    // before decoding.
    let mut probe = reader()?;
    probe.no_limits();
    if let Ok((w, h)) = probe.into_dimensions() {
        if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
            return Err(limit_message(format!(" of {w}x{h} pixels")));
        }
    }
    reader()?.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => limit_message(String::new()),
        e => format!("not a readable image: {e}"),
    })
}

/// One file -> CHW `u8` of `shape`.
fn load_image(path: &Path, shape: ImageShape) -> Result<Vec<u8>> {
    let bytes = read_image_file(path)?;
    let img = decode_limited(&bytes, None).map_err(|reason| Error::corrupt(path, reason))?;
    let (w, h) = (shape.width as u32, shape.height as u32);
    let resize = |dims: (u32, u32)| dims != (w, h);
    Ok(if shape.channels == 1 {
        let g = img.to_luma8();
        let g = if resize(g.dimensions()) {
            image::imageops::resize(&g, w, h, FilterType::Triangle)
        } else {
            g
        };
        g.into_raw()
    } else {
        let rgb = img.to_rgb8();
        let rgb = if resize(rgb.dimensions()) {
            image::imageops::resize(&rgb, w, h, FilterType::Triangle)
        } else {
            rgb
        };
        // HWC -> CHW.
        let (hh, ww) = (shape.height, shape.width);
        let raw = rgb.into_raw();
        let mut chw = vec![0u8; 3 * hh * ww];
        for (p, px) in raw.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * hh * ww + p] = px[c];
            }
        }
        chw
    })
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

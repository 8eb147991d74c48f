//! The one image pipeline: every image file or encoded image that reaches a model goes through
//! here, whether it is loaded for training, evaluation, `adapt` or `embed`.
//!
//! ```text
//! file (a regular file of at most MAX_IMAGE_FILE_BYTES) -> bytes
//!       -> decode (header first, within MAX_IMAGE_SIDE / MAX_IMAGE_ALLOC)
//!       -> grey (luma) or RGB (alpha dropped; grey replicated into three channels)
//!       -> resize to height x width with the antialiased Triangle filter (aspect not kept;
//!          skipped when the size already matches)
//!       -> HWC -> CHW u8
//!       -> f32 in [0, 1] (v / 255), the network's input
//! ```
//!
//! The Triangle filter is widened by the reduction factor in the `image` crate, so a reduction is
//! area-weighted bilinear: PIL's `Image.resize(..., BILINEAR)` behind torchvision's `Resize` that
//! torchmeta and PsCo use. Dataset-specific steps (Omniglot's inversion, `adapt`'s automatic
//! inversion of dark-on-light drawings) happen after this pipeline, in their own modules.
//!
//! Also here: which files count as images (`.png`, `.jpg`, `.jpeg`, case-insensitive), hidden
//! files (`.DS_Store`...) and sorted directory listings, so that every loader reads a folder the
//! same way.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::ImageShape;
use crate::{Error, Result};

/// Extensions accepted as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Largest width or height decoded (pixels): larger images are refused before decoding.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most memory one image's decoder may allocate (bytes).
pub const MAX_IMAGE_ALLOC: u64 = 512 * 1024 * 1024;

/// Whether `path` ends in one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether the file name starts with a dot (`.DS_Store`, editors' temporary files).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every entry of `dir` (hidden ones included), sorted by path. Errors name the folder.
pub fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        out.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The name of `path`'s last component, which must be UTF-8: names are labels (class names, CSV
/// rows), and a lossy conversion would make two different names one.
pub fn utf8_name(path: &Path) -> Result<String> {
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
pub fn check_image_file(path: &Path) -> Result<u64> {
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
pub fn read_image_file(path: &Path) -> Result<Vec<u8>> {
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

/// Errors unless `shape` is grey (1 channel) or RGB (3) with at least one pixel: the only shapes
/// an image file can be converted to.
pub fn check_shape(shape: ImageShape) -> Result<()> {
    if shape.channels != 1 && shape.channels != 3 {
        return Err(Error::config(
            "channels",
            format!(
                "{}-channel images: only grey (1) or RGB (3) can be read from image files",
                shape.channels
            ),
        ));
    }
    if shape.height == 0 || shape.width == 0 {
        return Err(Error::config(
            "image size",
            format!("{}x{} has no pixels", shape.height, shape.width),
        ));
    }
    Ok(())
}

/// Decodes an image (format from `format`, else guessed from the bytes) within
/// [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_ALLOC`], so that a header claiming a huge image is refused
/// with a message naming the limit instead of exhausting memory. The error is the reason only
/// (callers add the path).
pub fn decode_limited(
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

/// Converts `img` to `shape.channels` (1: luma, 3: RGB), resizes it to `shape` with the
/// antialiased Triangle filter when the size differs, and writes it CHW into `out`
/// (`shape.numel()` bytes). `shape.channels` must be 1 or 3 ([`check_shape`]).
pub fn to_chw(img: image::DynamicImage, shape: ImageShape, out: &mut [u8]) {
    let (w, h) = (shape.width as u32, shape.height as u32);
    let plane = shape.height * shape.width;
    assert_eq!(out.len(), shape.numel(), "output buffer of the wrong size");
    if shape.channels == 1 {
        let g = img.into_luma8();
        let g = if g.dimensions() != (w, h) {
            image::imageops::resize(&g, w, h, FilterType::Triangle)
        } else {
            g
        };
        out.copy_from_slice(g.as_raw());
    } else {
        assert_eq!(shape.channels, 3, "images are grey or RGB");
        let rgb = img.into_rgb8();
        let rgb = if rgb.dimensions() != (w, h) {
            image::imageops::resize(&rgb, w, h, FilterType::Triangle)
        } else {
            rgb
        };
        // HWC -> CHW.
        for (p, px) in rgb.as_raw().chunks_exact(3).enumerate() {
            out[p] = px[0];
            out[plane + p] = px[1];
            out[2 * plane + p] = px[2];
        }
    }
}

/// Encoded bytes -> CHW `u8` of `shape` ([`decode_limited`] then [`to_chw`]). The error is the
/// reason only.
pub fn decode_to_chw(
    bytes: &[u8],
    format: Option<image::ImageFormat>,
    shape: ImageShape,
) -> std::result::Result<Vec<u8>, String> {
    let img = decode_limited(bytes, format)?;
    let mut out = vec![0u8; shape.numel()];
    to_chw(img, shape, &mut out);
    Ok(out)
}

/// One file -> CHW `u8` of `shape`, written into `out`. Errors name the file.
pub fn load_file_into(path: &Path, shape: ImageShape, out: &mut [u8]) -> Result<()> {
    let bytes = read_image_file(path)?;
    let img = decode_limited(&bytes, None).map_err(|reason| Error::corrupt(path, reason))?;
    to_chw(img, shape, out);
    Ok(())
}

/// One file -> CHW `u8` of `shape`. Errors name the file.
pub fn load_file(path: &Path, shape: ImageShape) -> Result<Vec<u8>> {
    let mut out = vec![0u8; shape.numel()];
    load_file_into(path, shape, &mut out)?;
    Ok(out)
}

/// Pixels -> the network's input: `v / 255` (so `[0, 1]`), as training's views and evaluation's
/// episodes convert them.
pub fn to_unit_f32(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&v| f32::from(v) / 255.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_rgb_files_of_any_size_become_chw_of_the_requested_shape() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.png");
        image::RgbImage::from_fn(10, 7, |x, _| image::Rgb([x as u8 * 20, 40, 200]))
            .save(&p)
            .unwrap();
        let rgb = load_file(&p, ImageShape::new(3, 4, 5)).unwrap();
        assert_eq!(rgb.len(), 60);
        assert!(rgb[20..40].iter().all(|&v| v == 40), "green plane");
        assert!(rgb[40..].iter().all(|&v| v == 200), "blue plane");
        let grey = load_file(&p, ImageShape::new(1, 6, 6)).unwrap();
        assert_eq!(grey.len(), 36);
        // Same size: no resampling at all.
        let same = load_file(&p, ImageShape::new(3, 7, 10)).unwrap();
        assert_eq!(&same[..10], &[0, 20, 40, 60, 80, 100, 120, 140, 160, 180]);
        assert_eq!(to_unit_f32(&[0, 255, 51]), vec![0.0, 1.0, 0.2]);
    }

    #[test]
    fn shapes_other_than_grey_or_rgb_are_refused() {
        assert!(check_shape(ImageShape::new(2, 4, 4)).is_err());
        assert!(check_shape(ImageShape::new(1, 0, 4)).is_err());
        assert!(check_shape(ImageShape::new(3, 4, 4)).is_ok());
    }
}

//! Using a trained model on your own images: adapt to a few labelled examples per class, then
//! classify new images.
//!
//! ```text
//! support/<class>/<image>.png|jpg|jpeg   a few images per class (at least 2 classes)
//! predict/<image>.png|jpg|jpeg           images to classify
//! ```
//!
//! Every image (any size, grey, grey+alpha, RGB or RGBA) is converted to the model's input: grey
//! models take the luminance, RGB models replicate a grey image into three channels (alpha is
//! dropped), then resized to `image_size x image_size` (Triangle filter, aspect not kept): the
//! [image pipeline](crate::data::image) that every loader uses. Omniglot-trained models saw white strokes (1) on a black
//! background (0); drawings are usually dark on light, so [`Invert::Auto`] inverts a grey-model
//! image whose mean pixel is above 0.5 (decided per image). RGB models are never auto-inverted.
//!
//! Adaptation is exactly the evaluation's adapt mode ([`crate::eval`]): the model's backbone and
//! projection with a fresh classifier over the support classes (zero or Proto-MAML initialised),
//! `inner_steps` SGD steps of the inner loss on the whole support set as one batch. The predict
//! images are then classified as one batch, as evaluation classifies an episode's queries (batch
//! norm uses that batch's statistics): predictions are best with more than a handful of images
//! and can shift slightly with the set of images classified together.
//!
//! Strictness: a missing folder, a class folder with no images, fewer than 2 classes, a file that
//! is not `.png/.jpg/.jpeg` or does not decode, and a sub-folder in the predict folder are errors
//! naming the path. Hidden files (`.DS_Store`) are ignored.
//!
//! Over 400 lines: listing the user's folders (with their checks), loading, adapting and the CSV
//! output are one command's library side; about 190 lines are tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::image::{has_image_extension, is_hidden, read_dir_sorted, utf8_name};
use crate::data::ImageShape;
use crate::eval::{HeadInit, Model, Scorer};
use crate::losses::softmax;
use crate::meta::InnerLoop;
use crate::{Error, Result};

/// Whether to invert images (`1 - x`) after conversion to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Invert {
    /// Grey models: invert an image whose mean pixel is above 0.5 (dark on light). RGB: never.
    Auto,
    /// Always.
    Yes,
    /// Never.
    No,
}

impl std::str::FromStr for Invert {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Invert::Auto),
            "yes" => Ok(Invert::Yes),
            "no" => Ok(Invert::No),
            _ => Err(Error::config(
                "invert",
                format!("`{s}` is not one of auto, yes, no"),
            )),
        }
    }
}

/// Reads one image file as the model's input: CHW `f32` in `[0, 1]` of `shape` (1 or 3
/// channels), inverted as `invert` says. Errors name the file.
pub fn load_image(path: &Path, shape: ImageShape, invert: Invert) -> Result<Vec<f32>> {
    if shape.channels != 1 && shape.channels != 3 {
        return Err(Error::config(
            "channels",
            format!(
                "the model takes {}-channel images; only grey (1) or RGB (3) models can read image files",
                shape.channels
            ),
        ));
    }
    if !has_image_extension(path) {
        return Err(Error::corrupt(
            path,
            "not an image file (expected .png, .jpg or .jpeg)",
        ));
    }
    let mut x = crate::data::image::to_unit_f32(&crate::data::image::load_file(path, shape)?);
    let flip = match invert {
        Invert::Yes => true,
        Invert::No => false,
        Invert::Auto => shape.channels == 1 && x.iter().sum::<f32>() / x.len() as f32 > 0.5,
    };
    if flip {
        for v in &mut x {
            *v = 1.0 - *v;
        }
    }
    Ok(x)
}

/// Entries of `dir`, hidden ones left out, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = read_dir_sorted(dir)?;
    out.retain(|p| !is_hidden(p));
    // Names are class names and CSV rows: refused, not collapsed, when not UTF-8.
    for p in &out {
        utf8_name(p)?;
    }
    Ok(out)
}

/// The image files directly in `dir`, by name. A sub-folder or a non-image file is an error
/// naming it; an empty folder is an error.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = entries(dir)?;
    for p in &files {
        if p.is_dir() {
            return Err(Error::corrupt(
                p,
                "a folder where image files were expected",
            ));
        }
        if !has_image_extension(p) {
            return Err(Error::corrupt(
                p,
                "not an image file (expected .png, .jpg or .jpeg)",
            ));
        }
    }
    if files.is_empty() {
        return Err(Error::dataset(
            dir.display().to_string(),
            "holds no images (.png, .jpg or .jpeg)",
        ));
    }
    Ok(files)
}

/// A labelled support set read from `dir/<class>/<image>`.
#[derive(Clone, Debug)]
pub struct SupportSet {
    /// Class folder names, in label order (sorted by name).
    pub class_names: Vec<String>,
    /// `[N, C, H, W]` images, class by class.
    pub images: Vec<f32>,
    /// Label of each image.
    pub labels: Vec<usize>,
    /// Source file of each image.
    pub files: Vec<PathBuf>,
}

/// Reads a support set: one sub-folder per class (at least 2), each with at least one image.
pub fn load_support(dir: &Path, shape: ImageShape, invert: Invert) -> Result<SupportSet> {
    let mut class_names = Vec::new();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for p in entries(dir)? {
        if !p.is_dir() {
            return Err(Error::corrupt(
                &p,
                "a file where class folders were expected (support/<class>/<image>)",
            ));
        }
        let class_files = image_files(&p).map_err(|e| match e {
            Error::Dataset { dataset, .. } => Error::dataset(
                dataset,
                "empty class folder: a support class needs at least one image",
            ),
            other => other,
        })?;
        labels.extend(std::iter::repeat_n(class_names.len(), class_files.len()));
        files.extend(class_files);
        class_names.push(
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    if class_names.len() < 2 {
        return Err(Error::dataset(
            dir.display().to_string(),
            format!(
                "{} class folder(s); a support set needs at least 2 (support/<class>/<image>)",
                class_names.len()
            ),
        ));
    }
    let images = load_all(&files, shape, invert)?;
    Ok(SupportSet {
        class_names,
        images,
        labels,
        files,
    })
}

/// Loads files in parallel, concatenated in order.
fn load_all(files: &[PathBuf], shape: ImageShape, invert: Invert) -> Result<Vec<f32>> {
    let per: Vec<Vec<f32>> =
        crate::error::collect_in_order(files.par_iter().map(|p| load_image(p, shape, invert)))?;
    Ok(per.concat())
}

/// How to adapt before predicting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptOptions {
    pub head: HeadInit,
    /// The inner loop to adapt with: the model's own ([`Model::inner`]) by default.
    pub inner: InnerLoop,
    pub invert: Invert,
}

impl AdaptOptions {
    /// Zero head, the model's inner steps and learning rate, automatic inversion.
    pub fn new(model: &Model) -> Self {
        AdaptOptions {
            head: HeadInit::Zero,
            inner: model.inner,
            invert: Invert::Auto,
        }
    }
}

/// The prediction for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub file: PathBuf,
    /// Index into the class names.
    pub class: usize,
    /// Probability of each class (softmax of the adapted classifier).
    pub probs: Vec<f32>,
}

/// Adapts `model` on `support` and classifies the images of `predict_dir` (one batch).
pub fn adapt_and_predict(
    model: &Model,
    support: &SupportSet,
    predict_dir: &Path,
    opts: &AdaptOptions,
) -> Result<Vec<Prediction>> {
    let files = image_files(predict_dir)?;
    let x = load_all(&files, model.image_shape(), opts.invert)?;
    let ways = support.class_names.len();
    let scorer = Scorer::new(model, ways)?;
    let w = scorer.adapt(&support.images, &support.labels, opts.head, opts.inner);
    let learner = scorer.episode_learner();
    let (out, _) = learner.infer(&w, &x, false);
    let probs = softmax(&out.logits, ways);
    Ok(files
        .into_iter()
        .zip(probs.chunks(ways))
        .map(|(file, p)| Prediction {
            file,
            class: crate::eval::argmax(p),
            probs: p.to_vec(),
        })
        .collect())
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `file,predicted_class,p_<class1>,p_<class2>,...`, one row per prediction; `file` is
/// the file name.
pub fn write_csv(
    out: &mut dyn Write,
    class_names: &[String],
    predictions: &[Prediction],
) -> std::io::Result<()> {
    let mut header = vec!["file".to_string(), "predicted_class".to_string()];
    header.extend(class_names.iter().map(|c| csv_field(&format!("p_{c}"))));
    writeln!(out, "{}", header.join(","))?;
    for p in predictions {
        let name = p
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut row = vec![csv_field(&name), csv_field(&class_names[p.class])];
        row.extend(p.probs.iter().map(|v| format!("{v:.6}")));
        writeln!(out, "{}", row.join(","))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArchSpec;

    fn model(channels: usize) -> Model {
        let arch = ArchSpec {
            hidden: 8,
            proj_dim: 8,
            ..ArchSpec::conv4(channels, 16, 5)
        };
        Model::random(arch, 0).unwrap()
    }

    /// Dark-on-light horizontal (class "h") or vertical ("v") bars (a third of the image dark),
    /// RGB, of any size.
    fn bars(path: &Path, vertical: bool, w: u32, h: u32) {
        image::RgbImage::from_fn(w, h, |x, y| {
            let on = if vertical {
                (x * 6 / w).is_multiple_of(3)
            } else {
                (y * 6 / h).is_multiple_of(3)
            };
            let v = if on { 20 } else { 230 };
            image::Rgb([v, v, v])
        })
        .save(path)
        .unwrap();
    }

    /// support/{h,v} with 2 images each, predict/ with 2 of each kind.
    fn folders() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (class, vertical) in [("h", false), ("v", true)] {
            let d = tmp.path().join("support").join(class);
            std::fs::create_dir_all(&d).unwrap();
            bars(&d.join("a.png"), vertical, 30, 30);
            bars(&d.join("b.jpg"), vertical, 40, 36);
        }
        let p = tmp.path().join("predict");
        std::fs::create_dir_all(&p).unwrap();
        for (i, vertical) in [false, true, false, true].into_iter().enumerate() {
            bars(&p.join(format!("img,{i}.png")), vertical, 30 + i as u32, 32);
        }
        std::fs::write(p.join(".DS_Store"), b"x").unwrap();
        tmp
    }

    fn opts(m: &Model) -> AdaptOptions {
        AdaptOptions {
            inner: m.inner.with(0.1, 30),
            ..AdaptOptions::new(m)
        }
    }

    #[test]
    fn adapting_on_two_classes_of_bars_predicts_the_bars_of_new_images() {
        let tmp = folders();
        for channels in [1, 3] {
            let m = model(channels);
            let s =
                load_support(&tmp.path().join("support"), m.image_shape(), Invert::Auto).unwrap();
            assert_eq!(s.class_names, ["h", "v"]);
            assert_eq!(s.labels, [0, 0, 1, 1]);
            let preds = adapt_and_predict(&m, &s, &tmp.path().join("predict"), &opts(&m)).unwrap();
            let classes: Vec<usize> = preds.iter().map(|p| p.class).collect();
            assert_eq!(classes, [0, 1, 0, 1], "{channels} channel(s): {preds:?}");
            for p in &preds {
                assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            let mut csv = Vec::new();
            write_csv(&mut csv, &s.class_names, &preds).unwrap();
            let csv = String::from_utf8(csv).unwrap();
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines[0], "file,predicted_class,p_h,p_v");
            assert!(lines[1].starts_with("\"img,0.png\",h,0."), "{csv}");
            assert_eq!(lines.len(), 5);
        }
    }

    #[test]
    fn auto_inversion_turns_dark_on_light_grey_images_into_light_on_dark() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.png");
        bars(&p, false, 16, 16);
        let shape = ImageShape::new(1, 16, 16);
        let auto = load_image(&p, shape, Invert::Auto).unwrap();
        let no = load_image(&p, shape, Invert::No).unwrap();
        assert!(no.iter().sum::<f32>() / 256.0 > 0.5);
        assert_eq!(auto, load_image(&p, shape, Invert::Yes).unwrap());
        for (a, b) in auto.iter().zip(&no) {
            assert!((a + b - 1.0).abs() < 1e-6);
        }
        // RGB models are never auto-inverted; grey becomes three equal planes.
        let rgb = load_image(&p, ImageShape::new(3, 16, 16), Invert::Auto).unwrap();
        assert_eq!(&rgb[..256], &no[..]);
        assert_eq!(&rgb[256..512], &no[..]);
    }

    #[test]
    fn an_empty_support_class_folder_is_an_error_naming_it() {
        let tmp = folders();
        std::fs::create_dir(tmp.path().join("support/zzz")).unwrap();
        let err = load_support(
            &tmp.path().join("support"),
            ImageShape::new(1, 16, 16),
            Invert::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("zzz") && err.contains("empty class folder"),
            "{err}"
        );
    }

    #[test]
    fn a_support_set_with_one_class_is_an_error() {
        let tmp = folders();
        std::fs::remove_dir_all(tmp.path().join("support/v")).unwrap();
        let err = load_support(
            &tmp.path().join("support"),
            ImageShape::new(1, 16, 16),
            Invert::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 2"), "{err}");
    }

    #[test]
    fn a_corrupt_image_is_an_error_naming_the_file() {
        let tmp = folders();
        std::fs::write(
            tmp.path().join("predict/broken.jpg"),
            b"\xff\xd8 not a jpeg",
        )
        .unwrap();
        let m = model(1);
        let s = load_support(&tmp.path().join("support"), m.image_shape(), Invert::Auto).unwrap();
        let err = adapt_and_predict(&m, &s, &tmp.path().join("predict"), &opts(&m))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.jpg") && err.contains("not a readable image"),
            "{err}"
        );
    }

    #[test]
    fn a_non_image_file_is_an_error_naming_the_file() {
        let tmp = folders();
        std::fs::write(tmp.path().join("support/h/notes.txt"), b"hello").unwrap();
        let err = load_support(
            &tmp.path().join("support"),
            ImageShape::new(1, 16, 16),
            Invert::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("notes.txt") && err.contains("not an image file"),
            "{err}"
        );
    }

    #[test]
    fn a_model_whose_channels_no_image_file_has_is_an_error() {
        let tmp = folders();
        let err = load_support(
            &tmp.path().join("support"),
            ImageShape::new(2, 16, 16),
            Invert::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("2-channel"), "{err}");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let err = load_support(
            Path::new("/no/such/support"),
            ImageShape::new(1, 16, 16),
            Invert::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/no/such/support"), "{err}");
    }
}

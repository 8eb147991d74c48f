//! Features out: one row per image, for a linear probe, scikit-learn, a vector database or a
//! nearest-centroid classifier (`bmssl embed`, the Python package's `Model.embed`).
//!
//! The rows are the frozen model's features, exactly what [`crate::eval`]'s proto mode compares
//! before it L2-normalises them: the flattened backbone output (`[N, F]`, F = 64 for Conv4 on
//! 28x28) or the projection head's output (`[N, proj_dim]`). Nothing is normalised here.
//!
//! **Batch norm.** The learner keeps no running statistics (MAML practice): batch norm always
//! normalises with the statistics of the images it is given together. [`BatchNormStats`] says
//! which images those are:
//!
//! * [`BatchNormStats::Set`] (the default): the whole set embedded in one call is one batch. A set
//!   of at most `batch_size` images is one forward pass, exactly as evaluation embeds an
//!   episode's support or query set; a larger set is computed in chunks, with each block's
//!   statistics gathered over every image first (f64, merged in chunk order), so an image's row
//!   depends on the set it is embedded with but not on the chunking, the thread count or the
//!   order of the images. It equals PyTorch's training-mode forward pass of the whole set as one
//!   batch (`examples/pytorch_load.py`). Cost: a set larger than `batch_size` takes a pass per
//!   block for the statistics plus one for the features; block outputs that fit in
//!   [`CACHE_BYTES`] are kept between passes, so that the early blocks are not rerun (Conv4 on
//!   Omniglot's 33,840 test images: about twice one forward pass).
//! * [`BatchNormStats::Batch`]: each run of `batch_size` consecutive images is its own batch (a
//!   training-mode forward pass per batch): one pass, but an image's row depends on its
//!   neighbours.
//!
//! Rows are computed in parallel (rayon) and combined in image order: the result is
//! bit-identical on any number of threads.
//!
//! Over 400 lines: feature extraction with its batch-norm modes and memory budget, the image
//! listing, and the writers of every output format (`.npy`, `.safetensors`, CSV and the labels
//! file) share one row layout; the tests are in `embed/tests.rs`.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::engine::batchnorm::EPS;
use crate::eval::{Features, Model};
use crate::model::{BnStats, Learner};
use crate::{Error, Result};

/// Which images share batch-norm statistics (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormStats {
    /// The whole set embedded together is one batch.
    Set,
    /// Every `batch_size` consecutive images are one batch.
    Batch,
}

impl std::str::FromStr for BatchNormStats {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "set" => Ok(BatchNormStats::Set),
            "batch" => Ok(BatchNormStats::Batch),
            _ => Err(Error::config(
                "batch-norm",
                format!("`{s}` is not one of set, batch"),
            )),
        }
    }
}

/// How to embed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedOptions {
    /// Backbone (flattened conv output) or projection-head features.
    pub features: Features,
    /// Images per forward pass (see [`BatchNormStats`]).
    pub batch_size: usize,
    pub batch_norm: BatchNormStats,
}

impl Default for EmbedOptions {
    /// Backbone features, batches of 256, whole-set statistics.
    fn default() -> Self {
        EmbedOptions {
            features: Features::Backbone,
            batch_size: 256,
            batch_norm: BatchNormStats::Set,
        }
    }
}

/// Rows of features, `[n, dim]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// The width of the rows `model` gives for `features`.
pub fn feature_dim(model: &Model, features: Features) -> usize {
    match features {
        Features::Backbone => model.arch.feature_dim(),
        Features::Projection => model.arch.proj_dim,
    }
}

/// Bytes of block outputs [`embed_with`] may keep in memory between passes (whole-set
/// statistics): a block's output is kept when it fits, so that the blocks before it are not run
/// again for the later blocks' statistics.
pub const CACHE_BYTES: usize = 1 << 30;

/// For each block, whether whole-set embedding of `n` images keeps its output in memory.
fn kept_outputs(model: &Model, n: usize, budget: usize) -> Vec<bool> {
    let blocks = model.arch.backbone.blocks();
    (0..blocks)
        .map(|k| {
            let side = model.arch.image_size >> (k + 1);
            // Kept only when at least two later passes read it (the next blocks' statistics
            // and the features), and it fits.
            k + 2 <= blocks && n.saturating_mul(model.arch.hidden * side * side * 4) <= budget
        })
        .collect()
}

/// How many passes over the images [`embed_with`] makes (for a progress bar over
/// `passes * n` images).
pub fn passes(model: &Model, n: usize, opts: &EmbedOptions) -> usize {
    if opts.batch_norm == BatchNormStats::Set && n > opts.batch_size.max(1) {
        let kept = kept_outputs(model, n, CACHE_BYTES)
            .iter()
            .filter(|&&k| k)
            .count();
        model.arch.backbone.blocks() + kept + 1
    } else {
        1
    }
}

/// Embeds images `0..n`, image `i` given by `image(i)` as CHW `f32` of the model's input shape
/// (values as training sees them: `[0, 1]`). `progress(k)` is called as `k` more images finish a
/// pass (from worker threads). Errors name the image index if an image has the wrong length or
/// holds NaN or an infinity.
pub fn embed_with<'a>(
    model: &Model,
    n: usize,
    image: &(dyn Fn(usize) -> Cow<'a, [f32]> + Sync),
    opts: &EmbedOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Embeddings> {
    embed_with_budget(model, n, image, opts, progress, CACHE_BYTES)
}

/// [`embed_with`] keeping at most `budget` bytes of block outputs between passes.
fn embed_with_budget<'a>(
    model: &Model,
    n: usize,
    image: &(dyn Fn(usize) -> Cow<'a, [f32]> + Sync),
    opts: &EmbedOptions,
    progress: &(dyn Fn(usize) + Sync),
    budget: usize,
) -> Result<Embeddings> {
    model.validate()?;
    if opts.batch_size == 0 {
        return Err(Error::config("batch_size", "must be at least 1"));
    }
    let learner = Learner::new(model.arch.clone())?;
    let numel = learner.image_len();
    let dim = feature_dim(model, opts.features);
    if n == 0 {
        return Ok(Embeddings {
            n,
            dim,
            data: Vec::new(),
        });
    }
    let batch = |r: std::ops::Range<usize>| -> Result<Vec<f32>> {
        let mut x = Vec::with_capacity(r.len() * numel);
        for i in r {
            let img = image(i);
            check_image(&img, i, numel)?;
            x.extend_from_slice(&img);
        }
        Ok(x)
    };
    let chunks: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(opts.batch_size)
        .map(|s| s..(s + opts.batch_size).min(n))
        .collect();
    let params = &model.params;
    let head = |f: Vec<f32>| match opts.features {
        Features::Backbone => f,
        Features::Projection => learner.project(params, &f),
    };
    let data: Vec<Vec<f32>> = if passes(model, n, opts) == 1 {
        // Each chunk is one training-mode forward pass (with Set, the only chunk).
        crate::error::collect_in_order(chunks.par_iter().map(|r| {
            let x = batch(r.clone())?;
            let want_proj = opts.features == Features::Projection;
            let (out, tape) = learner.infer(params, &x, want_proj);
            let rows = match out.projection {
                Some(z) => z,
                None => learner.features(&tape).to_vec(),
            };
            progress(r.len());
            Ok(rows)
        }))?
    } else {
        // Statistics block by block over the whole set, then the features. `kept` holds the
        // input of block `from` for every image (NCHW) once a block's output is kept.
        let hidden = model.arch.hidden;
        let keep = kept_outputs(model, n, budget);
        let mut stats: Vec<BnStats> = Vec::new();
        let mut kept: Option<Vec<f32>> = None;
        let mut from = 0;
        let input = |kept: Option<&[f32]>, from: usize, r: &std::ops::Range<usize>| match kept {
            None => batch(r.clone()),
            Some(k) => {
                let side = model.arch.image_size >> from;
                let per = hidden * side * side;
                Ok(k[r.start * per..r.end * per].to_vec())
            }
        };
        for (k, &keep_k) in keep.iter().enumerate() {
            let parts: Vec<ChannelMoments> =
                crate::error::collect_in_order(chunks.par_iter().map(|r| {
                    let x = input(kept.as_deref(), from, r)?;
                    let y = learner.backbone_with_stats(params, &x, from, &stats[from..], true);
                    progress(r.len());
                    Ok(ChannelMoments::of(&y, hidden))
                }))?;
            let total = parts
                .into_iter()
                .reduce(ChannelMoments::merge)
                .expect("at least one chunk");
            stats.push(total.stats());
            if keep_k {
                let outs: Vec<Vec<f32>> =
                    crate::error::collect_in_order(chunks.par_iter().map(|r| {
                        let x = input(kept.as_deref(), from, r)?;
                        let o =
                            learner.backbone_with_stats(params, &x, from, &stats[from..], false);
                        progress(r.len());
                        Ok(o)
                    }))?;
                kept = Some(outs.concat());
                from = k + 1;
            }
        }
        crate::error::collect_in_order(chunks.par_iter().map(|r| {
            let x = input(kept.as_deref(), from, r)?;
            let f = learner.backbone_with_stats(params, &x, from, &stats[from..], false);
            progress(r.len());
            Ok(head(f))
        }))?
    };
    Ok(Embeddings {
        n,
        dim,
        data: data.concat(),
    })
}

fn check_image(img: &[f32], i: usize, numel: usize) -> Result<()> {
    if img.len() != numel {
        return Err(Error::shape(
            format!("image {i}"),
            format!("{} values, the model takes {numel}", img.len()),
        ));
    }
    if let Some(p) = img.iter().position(|v| !v.is_finite()) {
        return Err(Error::shape(
            format!("image {i}"),
            format!("value {p} is {}: inputs must be finite", img[p]),
        ));
    }
    Ok(())
}

/// Embeds `x [N, C, H, W]` (`f32`, the model's input shape).
pub fn embed_array(model: &Model, x: &[f32], opts: &EmbedOptions) -> Result<Embeddings> {
    embed_array_with_progress(model, x, opts, &|_| {})
}

/// [`embed_array`] calling `progress(k)` as `k` more images finish a pass.
pub fn embed_array_with_progress(
    model: &Model,
    x: &[f32],
    opts: &EmbedOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Embeddings> {
    let numel = model.image_shape().numel();
    if numel == 0 || !x.len().is_multiple_of(numel) {
        return Err(Error::shape(
            "images",
            format!(
                "{} values is not a whole number of {} images",
                x.len(),
                model.image_shape()
            ),
        ));
    }
    embed_with(
        model,
        x.len() / numel,
        &|i| Cow::Borrowed(&x[i * numel..(i + 1) * numel]),
        opts,
        progress,
    )
}

/// Where each row of a dataset's embedding came from.
#[derive(Clone, Debug, PartialEq)]
pub struct RowLabel {
    /// Class index in the dataset (the folder's or split's class order); `None` for a flat folder
    /// of unlabelled images.
    pub class_index: Option<usize>,
    /// Class name (class folder, `alphabet/character/rot90` for Omniglot...); empty when none.
    pub class: String,
    /// The image: its file, or `<index in class>` for datasets read from archives.
    pub image: String,
}

/// Every image of `data`, class by class, as (labels, embeddings).
pub fn embed_dataset(
    model: &Model,
    data: &dyn Dataset,
    opts: &EmbedOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<RowLabel>, Embeddings)> {
    crate::eval::check_shape(model, data)?;
    let items: Vec<(usize, usize)> = (0..data.num_classes())
        .flat_map(|c| (0..data.images_in_class(c)).map(move |i| (c, i)))
        .collect();
    let e = embed_with(
        model,
        items.len(),
        &|k| {
            let (c, i) = items[k];
            Cow::Owned(crate::data::image::to_unit_f32(&data.image(c, i)))
        },
        opts,
        progress,
    )?;
    let labels = items
        .iter()
        .map(|&(c, i)| RowLabel {
            class_index: Some(c),
            class: data.class_name(c),
            image: data.image_name(c, i),
        })
        .collect();
    Ok((labels, e))
}

/// One image file to embed and its class (index, folder name), if it is in a class folder.
pub type ImageFile = (Option<(usize, String)>, PathBuf);

/// Image files to embed: `dir/<image>` (no classes) or `dir/<class>/<image>` (classes from the
/// folder names), in name order. Hidden files are skipped; anything else that is not an image
/// is an error naming it.
pub fn list_images(dir: &Path) -> Result<Vec<ImageFile>> {
    use crate::data::image::{is_hidden, read_dir_sorted};
    let entries: Vec<PathBuf> = read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| !is_hidden(p))
        .collect();
    if !entries.iter().any(|p| p.is_dir()) {
        return Ok(crate::predict::image_files(dir)?
            .into_iter()
            .map(|p| (None, p))
            .collect());
    }
    let mut out = Vec::new();
    for (class, p) in entries.into_iter().enumerate() {
        if !p.is_dir() {
            return Err(Error::corrupt(
                &p,
                "a file beside class folders (expected DIR/<image> or DIR/<class>/<image>)",
            ));
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for f in crate::predict::image_files(&p)? {
            out.push((Some((class, name.clone())), f));
        }
    }
    Ok(out)
}

/// Per-channel count, mean and sum of squared deviations (f64), mergeable (Chan et al.).
#[derive(Clone, Debug)]
struct ChannelMoments {
    count: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl ChannelMoments {
    /// Of `y [C, m]`.
    fn of(y: &[f32], channels: usize) -> Self {
        let m = y.len() / channels;
        let (mut mean, mut m2) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
        for row in y.chunks(m) {
            let mu = row.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64;
            mean.push(mu);
            m2.push(
                row.iter()
                    .map(|&v| (f64::from(v) - mu).powi(2))
                    .sum::<f64>(),
            );
        }
        ChannelMoments {
            count: m as f64,
            mean,
            m2,
        }
    }
    fn merge(a: Self, b: Self) -> Self {
        let count = a.count + b.count;
        let (mut mean, mut m2) = (a.mean, a.m2);
        for c in 0..mean.len() {
            let delta = b.mean[c] - mean[c];
            mean[c] += delta * b.count / count;
            m2[c] += b.m2[c] + delta * delta * a.count * b.count / count;
        }
        ChannelMoments { count, mean, m2 }
    }
    fn stats(&self) -> BnStats {
        BnStats {
            mean: self.mean.iter().map(|&m| m as f32).collect(),
            inv_std: self
                .m2
                .iter()
                .map(|&s| (1.0 / (s / self.count + EPS).sqrt()) as f32)
                .collect(),
        }
    }
}

/// File formats [`write`] knows, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// NumPy `.npy`, `<f4`, shape `(n, dim)`.
    Npy,
    /// safetensors, one F32 tensor `features` `[n, dim]` with metadata.
    Safetensors,
    /// CSV: a header `f0,f1,...`, then one row per image.
    Csv,
}

impl Format {
    /// From the extension of `path`; errors name the path and the known extensions.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("npy") => Ok(Format::Npy),
            Some("safetensors") => Ok(Format::Safetensors),
            Some("csv") => Ok(Format::Csv),
            _ => Err(Error::config(
                "out",
                format!(
                    "{}: unknown extension (expected .npy, .safetensors or .csv)",
                    path.display()
                ),
            )),
        }
    }
}

/// Bytes of a `.npy` file (format 1.0) holding `e` as little-endian f32, C order.
pub fn npy_bytes(e: &Embeddings) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        e.n, e.dim
    );
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * e.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &e.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `e` to `path` in the format its extension names, `metadata` going into the
/// safetensors header (ignored by the other formats). Written atomically.
pub fn write(path: &Path, e: &Embeddings, metadata: &[(&str, String)]) -> Result<()> {
    let bytes = match Format::from_path(path)? {
        Format::Npy => npy_bytes(e),
        Format::Csv => {
            let mut out = Vec::new();
            let header: Vec<String> = (0..e.dim).map(|j| format!("f{j}")).collect();
            writeln!(out, "{}", header.join(",")).map_err(|err| Error::io(path, err))?;
            for i in 0..e.n {
                let row: Vec<String> = e.row(i).iter().map(|v| format!("{v:e}")).collect();
                writeln!(out, "{}", row.join(",")).map_err(|err| Error::io(path, err))?;
            }
            out
        }
        Format::Safetensors => {
            let raw: Vec<u8> = e.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::tensor::Dtype::F32,
                vec![e.n, e.dim],
                &raw,
            )
            .map_err(|err| Error::shape("embeddings", err.to_string()))?;
            let meta: std::collections::HashMap<String, String> = metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            safetensors::tensor::serialize([("features", view)], &Some(meta))
                .map_err(|err| Error::shape("embeddings", err.to_string()))?
        }
    };
    crate::io::write_atomic(path, &bytes)
}

/// The labels file written beside `out`: `out` + `.labels.csv`.
pub fn labels_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".labels.csv");
    PathBuf::from(s)
}

/// Writes `row,class_index,class,image` (RFC 4180 quoting), one line per row, atomically.
pub fn write_labels(path: &Path, labels: &[RowLabel]) -> Result<()> {
    let mut out = String::from("row,class_index,class,image\n");
    for (i, l) in labels.iter().enumerate() {
        out.push_str(&format!(
            "{i},{},{},{}\n",
            l.class_index.map(|c| c.to_string()).unwrap_or_default(),
            csv_field(&l.class),
            csv_field(&l.image)
        ));
    }
    crate::io::write_atomic(path, out.as_bytes())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;

//! `bmssl embed`: one feature row per image, written as `.npy`, `.safetensors` or `.csv`, with
//! `OUT.labels.csv` beside it (row, class index, class name, image). See `bmssl::embed` and
//! docs/python.md.

use std::path::PathBuf;
use std::time::Instant;

use crate::progress::{Style, Ticker};
use anyhow::{bail, Context};
use bmssl::data::open_split;
use bmssl::embed::{self, BatchNormStats, EmbedOptions, RowLabel};
use bmssl::eval::Features;
use bmssl::model::ArchSpec;
use bmssl::predict::{load_image, Invert};
use clap::Args;
use rayon::prelude::*;

/// `bmssl embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Checkpoint file, a run directory (its final checkpoint), or `random` (a fresh 1-channel
    /// 28x28 Conv4).
    #[arg(long, value_name = "CKPT|RUN_DIR|random")]
    checkpoint: String,
    /// `omniglot`, `miniimagenet`, `cifar-fs` or a labelled image folder: every image of the
    /// split, class by class (as `eval` reads it).
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    dataset: Option<String>,
    /// Split of --dataset (train, val, test).
    #[arg(long, default_value = "test", requires = "dataset")]
    split: String,
    /// Your own images: DIR/<image> or DIR/<class>/<image> (.png, .jpg, .jpeg), read as `adapt`
    /// reads them (see --invert).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Output file: .npy, .safetensors or .csv (by the extension); OUT.labels.csv is written
    /// beside it.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// `backbone` (flattened conv output, what proto mode compares) or `projection`.
    #[arg(long, default_value = "backbone")]
    features: Features,
    /// Batch-norm statistics: `set` (the whole set as one batch; rows do not depend on batching)
    /// or `batch` (each --batch-size run of images is a batch).
    #[arg(long, default_value = "set")]
    batch_norm: BatchNormStats,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// --images: invert (`auto`: grey models, when the mean pixel is above 0.5, as `adapt`).
    #[arg(long, default_value = "auto")]
    invert: Invert,
    /// Omniglot: no 90/180/270-degree rotation classes.
    #[arg(long)]
    no_rotations: bool,
    /// Data directory (default: $BMSSL_DATA, else <exe>/../../data, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

/// Runs `bmssl embed`.
pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    // The output format first: a typo must not cost the embedding time.
    embed::Format::from_path(&a.out)?;
    let loaded =
        crate::cmd_eval::load_model(&a.checkpoint, || ArchSpec::conv4(1, 28, 5), 0, a.quiet)?;
    let model = &loaded.model;
    let shape = model.image_shape();
    let opts = EmbedOptions {
        features: a.features,
        batch_size: a.batch_size,
        batch_norm: a.batch_norm,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()?;
    let t0 = Instant::now();
    // The images, as the model's input, and where each came from.
    let (source, labels, x): (String, Vec<RowLabel>, Vec<f32>) = match (&a.dataset, &a.images) {
        (Some(d), None) => {
            let data = open_split(d, &a.split, shape, !a.no_rotations, a.data_dir.as_deref())
                .with_context(|| format!("opening dataset {d}"))?;
            let labels = (0..data.num_classes())
                .flat_map(|c| {
                    let data = &data;
                    (0..data.images_in_class(c)).map(move |i| RowLabel {
                        class_index: Some(c),
                        class: data.class_name(c),
                        image: data.image_name(c, i),
                    })
                })
                .collect();
            // Omniglot's rotations are computed on access: the pixels are gathered once here,
            // not once per pass.
            let items: Vec<(usize, usize)> = (0..data.num_classes())
                .flat_map(|c| (0..data.images_in_class(c)).map(move |i| (c, i)))
                .collect();
            bmssl::eval::check_shape(model, data.as_ref())?;
            let x: Vec<f32> = pool.install(|| {
                items
                    .par_iter()
                    .flat_map_iter(|&(c, i)| bmssl::data::image::to_unit_f32(&data.image(c, i)))
                    .collect()
            });
            (data.name().to_string(), labels, x)
        }
        (None, Some(dir)) => {
            let files =
                embed::list_images(dir).with_context(|| format!("reading {}", dir.display()))?;
            let x: Vec<Vec<f32>> = pool.install(|| {
                bmssl::error::collect_in_order(
                    files
                        .par_iter()
                        .map(|(_, p)| load_image(p, shape, a.invert)),
                )
            })?;
            let labels = files
                .iter()
                .map(|(class, p)| RowLabel {
                    class_index: class.as_ref().map(|c| c.0),
                    class: class.as_ref().map(|c| c.1.clone()).unwrap_or_default(),
                    image: p.display().to_string(),
                })
                .collect();
            (dir.display().to_string(), labels, x.concat())
        }
        _ => bail!("give one of --dataset or --images"),
    };
    let n = labels.len();
    if n == 0 {
        bail!("{source} holds no images");
    }
    let load_secs = t0.elapsed().as_secs_f64();
    if !a.quiet {
        eprintln!("read {n} images ({shape}) from {source} in {load_secs:.1} s");
    }
    let passes = embed::passes(model, n, &opts);
    let total = passes * n;
    let bar = Ticker::new(
        total as u64,
        "embedding (image passes)",
        Style::detect(a.quiet),
    );
    let t1 = Instant::now();
    let e = pool.install(|| {
        embed::embed_array_with_progress(model, &x, &opts, &|k| bar.inc_by(k as u64))
    })?;
    bar.finish();
    let secs = t1.elapsed().as_secs_f64();
    let checkpoint = loaded.describe(&a.checkpoint);
    let meta = [
        ("format", "bmssl-embeddings-v1".to_string()),
        ("checkpoint", checkpoint.to_string()),
        ("source", source.clone()),
        ("features", serde_json::to_value(opts.features)?.to_string()),
        (
            "batch_norm",
            serde_json::to_value(opts.batch_norm)?.to_string(),
        ),
        ("batch_size", opts.batch_size.to_string()),
        ("image_shape", shape.to_string()),
    ];
    embed::write(&a.out, &e, &meta).with_context(|| format!("writing {}", a.out.display()))?;
    let labels_path = embed::labels_path(&a.out);
    embed::write_labels(&labels_path, &labels)
        .with_context(|| format!("writing {}", labels_path.display()))?;
    if !a.quiet {
        eprintln!(
            "embedded {n} images -> {n} x {} {} features ({} batch norm, {passes} pass(es)) in \
             {secs:.1} s ({:.0} images/s; {:.1} s in all); wrote {} and {}",
            e.dim,
            serde_json::to_value(opts.features)?.as_str().unwrap_or("?"),
            serde_json::to_value(opts.batch_norm)?
                .as_str()
                .unwrap_or("?"),
            n as f64 / secs.max(1e-9),
            t0.elapsed().as_secs_f64(),
            a.out.display(),
            labels_path.display()
        );
    }
    Ok(())
}

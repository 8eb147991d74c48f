//! `bmssl data ...`: look at datasets and at the tasks built from them.
//!
//! Over 400 lines: its three subcommands share the dataset flags (`SourceArgs`) and loaders, and
//! the task preview draws its own tiles and frames (no plotting library for an image grid); each
//! part is short, and splitting them would spread one command's flags over several files.
//!
//! * `bmssl data inspect <omniglot | miniimagenet | cifar-fs | PATH>`: classes and images per
//!   split, image shape, rotations or on-disk layout, decoded-image cache, load time.
//! * `bmssl data tasks --preview tasks.png`: draw one meta-batch (a row per pseudo-class, support
//!   views in blue frames, query views in orange frames, tasks separated by a grey bar).
//! * `bmssl data tasks --bench`: meta-batches per second for the given task shape.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bmssl::augment::{AugmentLevel, Augmenter};
use bmssl::data::cache::CacheOptions;
use bmssl::data::cifar_fs::{self, CifarFs};
use bmssl::data::image_folder::ImageFolder;
use bmssl::data::mini_imagenet::{self, MiniImageNet};
use bmssl::data::omniglot::{Omniglot, OmniglotOptions, Split};
use bmssl::data::{
    known_dataset, open_split_with_cache, resolve_data_dir, Dataset, ImageShape, UnlabelledPool,
};
use bmssl::tasks::{build_meta_batch, ImageBatch, MetaBatch, TaskShape};
use clap::{Args, Subcommand};

/// `bmssl data` subcommands.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Print classes and images per split, image shape, rotations and load time.
    Inspect(InspectArgs),
    /// Build meta-batches of unlabelled tasks (section 4.1): preview one as a PNG, or benchmark.
    Tasks(TasksArgs),
}

/// Where the images come from.
#[derive(Args)]
pub struct SourceArgs {
    /// Data directory (default: $BMSSL_DATA, else <exe>/../../data, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Omniglot: do not add the 90/180/270-degree rotations as extra classes.
    #[arg(long)]
    no_rotations: bool,
    /// Side of the square images after resizing [default: 28; miniimagenet 84; cifar-fs 32].
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
    /// Image folders, miniimagenet, cifar-fs: 1 (grey) or 3 (RGB) channels.
    #[arg(long, default_value_t = 3)]
    channels: usize,
    /// omniglot, miniimagenet, cifar-fs: directory of the decoded-image cache
    /// [default: $BMSSL_CACHE_DIR, else <dataset root>/.bmssl-cache].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// omniglot, miniimagenet, cifar-fs: decode every image, neither read nor write the cache
    /// (also: BMSSL_NO_CACHE=1).
    #[arg(long)]
    no_cache: bool,
}

impl SourceArgs {
    /// The image side: the flag, else the dataset's conventional size.
    fn side(&self, dataset: &str) -> usize {
        self.image_size.unwrap_or(match known_dataset(dataset) {
            Some(mini_imagenet::NAME) => mini_imagenet::DEFAULT_SIZE,
            Some(cifar_fs::NAME) => 32,
            _ => 28,
        })
    }
    /// Cache options: the flags over the environment.
    fn cache(&self) -> CacheOptions {
        let mut c = CacheOptions::from_env();
        if self.cache_dir.is_some() {
            c.dir = self.cache_dir.clone();
        }
        c.disabled |= self.no_cache;
        c
    }
}

/// `bmssl data inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// `omniglot`, `miniimagenet`, `cifar-fs`, or a path to an image folder
    /// (root/<class>/<image>.png|jpg|jpeg).
    dataset: String,
    #[command(flatten)]
    source: SourceArgs,
}

/// `bmssl data tasks`.
#[derive(Args)]
pub struct TasksArgs {
    /// `omniglot`, `miniimagenet`, `cifar-fs`, or a path to an image folder.
    #[arg(long, default_value = "omniglot")]
    dataset: String,
    /// Split to draw images from (train, val, test; image folders have one).
    #[arg(long, default_value = "train")]
    split: String,
    #[command(flatten)]
    source: SourceArgs,
    /// Write one meta-batch as a PNG grid to this file.
    #[arg(long, value_name = "PNG")]
    preview: Option<PathBuf>,
    /// Measure meta-batches per second.
    #[arg(long)]
    bench: bool,
    /// Seconds to run the benchmark for.
    #[arg(long, default_value_t = 3.0)]
    bench_seconds: f64,
    /// Run seed: every random choice derives from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which meta-batch of the run to draw.
    #[arg(long, default_value_t = 0)]
    batch_index: u64,
    /// [N] unlabelled source images per meta-batch.
    #[arg(long, default_value_t = 20)]
    images_per_batch: usize,
    /// [M] augmented views per image (= support + query views).
    #[arg(long, default_value_t = 4)]
    views: usize,
    /// [K] tasks per meta-batch (must divide N).
    #[arg(long, default_value_t = 4)]
    tasks_per_batch: usize,
    /// [M1] views per image in the support set.
    #[arg(long, default_value_t = 1)]
    support_views: usize,
    /// [M2] views per image in the query set.
    #[arg(long, default_value_t = 3)]
    query_views: usize,
    /// Augmentation: default (PsCo: crop + flip), a1, a2, a3, a4 (docs/augmentation.md).
    #[arg(long, default_value = "default")]
    augment: String,
    /// Preview upscaling factor [default: 3 for 28 px, 2 for 32 px, 1 for 84 px].
    #[arg(long)]
    scale: Option<usize>,
}

/// Run a `bmssl data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect(args) => inspect(&args),
        DataCommand::Tasks(args) => tasks(&args),
    }
}

fn is_omniglot(name: &str) -> bool {
    known_dataset(name) == Some("omniglot")
}

fn load_omniglot(source: &SourceArgs) -> anyhow::Result<Omniglot> {
    let dir = resolve_data_dir(source.data_dir.as_deref()).join("omniglot");
    let options = OmniglotOptions {
        rotations: !source.no_rotations,
        image_size: source.side("omniglot"),
    };
    Omniglot::load_with_cache(&dir, &options, &source.cache())
        .with_context(|| format!("loading Omniglot from {}", dir.display()))
}

fn load_folder(path: &Path, source: &SourceArgs) -> anyhow::Result<ImageFolder> {
    if !path.is_dir() {
        bail!(
            "dataset `{}` is neither `omniglot` nor an existing folder",
            path.display()
        );
    }
    let side = source.side("");
    let shape = ImageShape::new(source.channels, side, side);
    ImageFolder::load(path, shape)
        .with_context(|| format!("loading image folder {}", path.display()))
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if is_omniglot(&args.dataset) {
        let omni = load_omniglot(&args.source)?;
        let load = start.elapsed();
        let in_folder = |f: &str| omni.characters().iter().filter(|c| c.folder == f).count();
        let dir = omni
            .dir()
            .canonicalize()
            .unwrap_or_else(|_| omni.dir().to_path_buf());
        println!("dataset      omniglot ({})", dir.display());
        println!(
            "characters   {} (background {}, evaluation {})",
            omni.characters().len(),
            in_folder("background"),
            in_folder("evaluation")
        );
        println!("images       {} (before rotations)", omni.num_images());
        println!(
            "image shape  {} (from 105x105, Triangle filter; inverted: strokes 1, background 0)",
            omni.shape()
        );
        let rot = omni.options().rotations;
        println!(
            "rotations    {}",
            if rot {
                "on (x4 classes: 0/90/180/270 degrees)"
            } else {
                "off"
            }
        );
        println!("split        characters  classes   images");
        for s in Split::ALL {
            let d = omni.split(s);
            println!(
                "  {:<10} {:>10} {:>8} {:>8}",
                s.as_str(),
                omni.split_characters(s),
                d.num_classes(),
                d.num_images()
            );
        }
        println!("load time    {:.2} s", load.as_secs_f64());
    } else if let Some(name @ (mini_imagenet::NAME | cifar_fs::NAME)) = known_dataset(&args.dataset)
    {
        inspect_benchmark(name, &args.source)?;
    } else {
        let ds = load_folder(Path::new(&args.dataset), &args.source)?;
        let load = start.elapsed();
        println!("dataset      image folder {}", args.dataset);
        println!("classes      {}", ds.num_classes());
        println!("images       {}", ds.num_images());
        let (min, max) = (0..ds.num_classes())
            .map(|c| ds.images_in_class(c))
            .fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        println!("per class    {min} to {max}");
        println!("image shape  {} (resized, Triangle filter)", ds.shape());
        println!("rotations    off");
        println!("split        all (one split: the whole folder)");
        println!("load time    {:.2} s", load.as_secs_f64());
    }
    Ok(())
}

/// `data inspect miniimagenet | cifar-fs`: every split, with layout, split source and cache.
fn inspect_benchmark(name: &str, source: &SourceArgs) -> anyhow::Result<()> {
    let root = resolve_data_dir(source.data_dir.as_deref()).join(name);
    let side = source.side(name);
    let shape = ImageShape::new(source.channels, side, side);
    let cache = source.cache();
    let root_shown = root.canonicalize().unwrap_or_else(|_| root.clone());
    println!("dataset      {name} ({})", root_shown.display());
    let mut rows = Vec::new();
    let total = Instant::now();
    for split in Split::ALL {
        let start = Instant::now();
        let (ds, detail, split_src, status, decoded): (
            Box<dyn Dataset>,
            String,
            String,
            String,
            usize,
        ) = if name == mini_imagenet::NAME {
            let d = MiniImageNet::load(&root, split, shape, &cache)
                .with_context(|| format!("loading {name}/{split} from {}", root.display()))?;
            let layout = d.layout().to_string();
            let src = d.split_source().to_string();
            let st = d.cache_status().to_string();
            let n = d.decoded_images();
            (Box::new(d), layout, src, st, n)
        } else {
            let d = CifarFs::load(&root, split, shape, &cache)
                .with_context(|| format!("loading {name}/{split} from {}", root.display()))?;
            let from = d.source().to_string();
            let src = d.split_source().to_string();
            let st = d.cache_status().to_string();
            let n = d.decoded_images();
            (Box::new(d), from, src, st, n)
        };
        rows.push((
            split,
            ds.num_classes(),
            ds.num_images(),
            start.elapsed(),
            status,
            decoded,
        ));
        if split == Split::Train {
            println!(
                "{:<12} {detail}",
                if name == mini_imagenet::NAME {
                    "layout"
                } else {
                    "source"
                }
            );
            println!("class split  {split_src}");
            println!(
                "image shape  {shape} ({})",
                if name == cifar_fs::NAME && side == 32 {
                    "native 32x32, no resize"
                } else {
                    "resized, Triangle filter"
                }
            );
            match cache.file_for(&root, "") {
                Some(f) => println!(
                    "cache dir    {}",
                    f.parent().map_or(f.clone(), Path::to_path_buf).display()
                ),
                None => println!("cache dir    off"),
            }
        }
    }
    println!("split        classes   images  load s  decoded  cache");
    for (split, classes, images, secs, status, decoded) in rows {
        println!(
            "  {:<10} {classes:>7} {images:>8} {:>7.2} {decoded:>8}  {status}",
            split.as_str(),
            secs.as_secs_f64()
        );
    }
    println!("load time    {:.2} s", total.elapsed().as_secs_f64());
    Ok(())
}

fn tasks(args: &TasksArgs) -> anyhow::Result<()> {
    let seconds = args.bench_seconds;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= bmssl::limits::MAX_SECONDS) {
        anyhow::bail!(
            "invalid value for `bench-seconds`: must be a positive number of seconds up to {}, got {seconds}",
            bmssl::limits::MAX_SECONDS
        );
    }
    if args.preview.is_none() && !args.bench {
        bail!("nothing to do: pass --preview <PNG> and/or --bench");
    }
    let level: AugmentLevel = args.augment.parse()?;
    let shape = TaskShape {
        images_per_batch: args.images_per_batch,
        views: args.views,
        tasks_per_batch: args.tasks_per_batch,
        support_views: args.support_views,
        query_views: args.query_views,
    };
    // Fail fast on an impossible shape; the pool size is checked once the data is loaded.
    shape.validate(usize::MAX)?;
    let start = Instant::now();
    let side = args.source.side(&args.dataset);
    let split: Arc<dyn Dataset> = if is_omniglot(&args.dataset) {
        let s: Split = args.split.parse()?;
        Arc::new(load_omniglot(&args.source)?.split(s))
    } else if known_dataset(&args.dataset).is_some() {
        let shape = ImageShape::new(args.source.channels, side, side);
        open_split_with_cache(
            &args.dataset,
            &args.split,
            shape,
            false,
            args.source.data_dir.as_deref(),
            &args.source.cache(),
        )
        .with_context(|| format!("loading {}/{}", args.dataset, args.split))?
    } else {
        Arc::new(load_folder(Path::new(&args.dataset), &args.source)?)
    };
    let name = split.name().to_string();
    let pool = UnlabelledPool::new(split);
    eprintln!(
        "loaded {name}: {} unlabelled images in {:.2} s",
        pool.len(),
        start.elapsed().as_secs_f64()
    );
    shape.validate(pool.len())?;
    let aug = Augmenter::from_level(level, side, side);

    if let Some(path) = &args.preview {
        let mb = build_meta_batch(&pool, &shape, &aug, args.seed, args.batch_index)?;
        let scale = args.scale.unwrap_or((84 / side.max(1)).clamp(1, 3));
        write_preview(&mb, scale.max(1), path)?;
        println!(
            "wrote {}: {} tasks x {} ways, {} support + {} query views per way, augment {level}",
            path.display(),
            shape.tasks_per_batch,
            shape.ways(),
            shape.support_views,
            shape.query_views
        );
    }
    if args.bench {
        // Warm-up (first allocation of the thread pool).
        build_meta_batch(&pool, &shape, &aug, args.seed, 0)?;
        let budget = Duration::from_secs_f64(args.bench_seconds.max(0.1));
        let start = Instant::now();
        let mut batches = 0u64;
        while start.elapsed() < budget {
            build_meta_batch(&pool, &shape, &aug, args.seed, batches + 1)?;
            batches += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let per_s = batches as f64 / secs;
        println!(
            "task construction: {per_s:.0} meta-batches/s ({:.0} views/s) over {batches} meta-batches, \
             N={} M={} K={} M1={} M2={}, augment {level}, {} rayon threads",
            per_s * (shape.images_per_batch * shape.views) as f64,
            shape.images_per_batch,
            shape.views,
            shape.tasks_per_batch,
            shape.support_views,
            shape.query_views,
            rayon::current_num_threads()
        );
    }
    Ok(())
}

/// Frame colours: support blue, query orange; task separator grey; canvas dark.
const SUPPORT: [u8; 3] = [40, 110, 255];
const QUERY: [u8; 3] = [255, 140, 0];
const SEPARATOR: [u8; 3] = [150, 150, 150];
const CANVAS: [u8; 3] = [24, 24, 24];
/// Frame width, gap between tiles, extra gap between support and query, task separator height.
const FRAME: usize = 2;
const GAP: usize = 4;
const SQ_GAP: usize = 12;
const TASK_BAR: usize = 6;

/// Draw a meta-batch: one row per pseudo-class, support views then query views.
fn write_preview(mb: &MetaBatch, scale: usize, path: &Path) -> anyhow::Result<()> {
    let Some(first) = mb.tasks.first() else {
        bail!("empty meta-batch")
    };
    let (vh, vw) = (first.support.height * scale, first.support.width * scale);
    let (th, tw) = (vh + 2 * FRAME, vw + 2 * FRAME);
    let m1 = first.support.n / first.ways;
    let m2 = first.query.n / first.ways;
    let width = GAP + m1 * (tw + GAP) + SQ_GAP + m2 * (tw + GAP);
    let rows: usize = mb.tasks.iter().map(|t| t.ways).sum();
    let height = GAP + rows * (th + GAP) + (mb.tasks.len() - 1) * (TASK_BAR + GAP);
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb(CANVAS));
    let mut y = GAP;
    for (k, task) in mb.tasks.iter().enumerate() {
        if k > 0 {
            fill(&mut canvas, 0, y, width, TASK_BAR, SEPARATOR);
            y += TASK_BAR + GAP;
        }
        for way in 0..task.ways {
            let mut x = GAP;
            for v in 0..m1 {
                draw_tile(
                    &mut canvas,
                    &task.support,
                    way * m1 + v,
                    x,
                    y,
                    scale,
                    SUPPORT,
                );
                x += tw + GAP;
            }
            x += SQ_GAP;
            for v in 0..m2 {
                draw_tile(&mut canvas, &task.query, way * m2 + v, x, y, scale, QUERY);
                x += tw + GAP;
            }
            y += th + GAP;
        }
    }
    canvas
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", path.display()))
}

fn fill(canvas: &mut image::RgbImage, x: usize, y: usize, w: usize, h: usize, colour: [u8; 3]) {
    for yy in y..y + h {
        for xx in x..x + w {
            canvas.put_pixel(xx as u32, yy as u32, image::Rgb(colour));
        }
    }
}

/// One view (`batch` image `i`, CHW in [0, 1]) upscaled by `scale` inside a coloured frame.
fn draw_tile(
    canvas: &mut image::RgbImage,
    batch: &ImageBatch,
    i: usize,
    x: usize,
    y: usize,
    scale: usize,
    frame: [u8; 3],
) {
    let (h, w, c) = (batch.height, batch.width, batch.channels);
    fill(
        canvas,
        x,
        y,
        w * scale + 2 * FRAME,
        h * scale + 2 * FRAME,
        frame,
    );
    let img = batch.image(i);
    for yy in 0..h * scale {
        for xx in 0..w * scale {
            let p = (yy / scale) * w + xx / scale;
            let px =
                |ch: usize| (img[ch.min(c - 1) * h * w + p].clamp(0.0, 1.0) * 255.0).round() as u8;
            let rgb = [px(0), px(1), px(2)];
            canvas.put_pixel(
                (x + FRAME + xx) as u32,
                (y + FRAME + yy) as u32,
                image::Rgb(rgb),
            );
        }
    }
}

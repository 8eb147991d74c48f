use super::*;
use crate::data::{ImageShape, InMemoryDataset};
use crate::episodes::sample_episode;
use crate::eval::{evaluate, EvalOptions, Mode, Scorer, Setting};
use crate::model::ArchSpec;

fn small_model(seed: u64) -> Model {
    let arch = ArchSpec {
        hidden: 8,
        proj_dim: 6,
        ..ArchSpec::conv4(1, 16, 5)
    };
    Model::random(arch, seed).unwrap()
}

/// `classes` classes of `per_class` 16x16 images: a class's random pattern plus per-image noise,
/// so that classes are separable but not trivially and accuracies vary between episodes.
fn noisy_classes(classes: usize, per_class: usize, seed: u64) -> InMemoryDataset {
    use rand::Rng;
    let mut r = crate::rng::derive(seed, &[7]);
    let bufs = (0..classes)
        .map(|_| {
            let pattern: Vec<i32> = (0..256).map(|_| r.gen_range(0..256)).collect();
            (0..per_class)
                .flat_map(|_| {
                    pattern
                        .iter()
                        .map(|&p| (p + r.gen_range(-110..110)).clamp(0, 255) as u8)
                        .collect::<Vec<u8>>()
                })
                .collect()
        })
        .collect();
    InMemoryDataset::from_classes("noisy", ImageShape::new(1, 16, 16), bufs).unwrap()
}

fn images(n: usize, seed: u64) -> Vec<f32> {
    use rand::Rng;
    let mut r = crate::rng::derive(seed, &[3]);
    (0..n * 256).map(|_| r.gen::<f32>()).collect()
}

fn opts(batch_size: usize, batch_norm: BatchNormStats, features: Features) -> EmbedOptions {
    EmbedOptions {
        features,
        batch_size,
        batch_norm,
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn whole_set_statistics_in_chunks_equal_one_forward_pass_of_the_whole_set() {
    let m = small_model(1);
    let x = images(37, 1);
    for features in [Features::Backbone, Features::Projection] {
        let one = embed_array(&m, &x, &opts(1000, BatchNormStats::Set, features)).unwrap();
        assert_eq!(one.dim, feature_dim(&m, features));
        assert_eq!(one.n, 37);
        for chunk in [1, 5, 36] {
            let o = opts(chunk, BatchNormStats::Set, features);
            let chunked = embed_array(&m, &x, &o).unwrap();
            let d = max_abs_diff(&one.data, &chunked.data);
            assert!(d < 2e-5, "{features:?}, chunks of {chunk}: {d}");
            // Without keeping block outputs (every pass from the images): the same rows.
            let recomputed = embed_with_budget(
                &m,
                37,
                &|i| Cow::Borrowed(&x[i * 256..(i + 1) * 256]),
                &o,
                &|_| {},
                0,
            )
            .unwrap();
            let d = max_abs_diff(&recomputed.data, &chunked.data);
            assert!(
                d < 1e-6,
                "{features:?}, chunks of {chunk}, no kept outputs: {d}"
            );
        }
        assert_eq!(
            passes(&m, 37, &opts(5, BatchNormStats::Set, features)),
            4 + 3 + 1
        );
        assert_eq!(passes(&m, 37, &opts(37, BatchNormStats::Set, features)), 1);
    }
}

#[test]
fn rows_do_not_depend_on_threads_and_set_rows_not_on_order() {
    let m = small_model(2);
    let x = images(30, 2);
    let o = opts(4, BatchNormStats::Set, Features::Backbone);
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| embed_array(&m, &x, &o).unwrap())
    };
    assert_eq!(on(1), on(2));
    // Reversed order: the same rows, reversed (up to the order of the f64 statistics sums).
    let rev: Vec<f32> = x.chunks(256).rev().flatten().copied().collect();
    let r = embed_array(&m, &rev, &o).unwrap();
    let fwd = on(2);
    for i in 0..30 {
        let d = max_abs_diff(fwd.row(i), r.row(29 - i));
        assert!(d < 1e-5, "row {i}: {d}");
    }
}

#[test]
fn batch_mode_is_one_training_mode_forward_pass_per_batch() {
    let m = small_model(3);
    let x = images(10, 3);
    let o = opts(4, BatchNormStats::Batch, Features::Backbone);
    assert_eq!(passes(&m, 10, &o), 1);
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let e = embed_array_with_progress(&m, &x, &o, &|k| {
        progress.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(progress.into_inner(), 10);
    let learner = Learner::new(m.arch.clone()).unwrap();
    let (_, tape) = learner.infer(&m.params, &x[4 * 256..8 * 256], false);
    assert_eq!(&e.data[4 * e.dim..8 * e.dim], learner.features(&tape));
}

/// Nearest centroid (cosine, as proto mode) over embed's rows: predicted class of each query.
fn nearest_centroid(
    rows: &Embeddings,
    support: &[usize],
    labels: &[usize],
    query: &[usize],
) -> Vec<usize> {
    let ways = labels.iter().max().unwrap() + 1;
    let d = rows.dim;
    let unit = |v: &[f32]| {
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter().map(|a| a / n).collect::<Vec<f32>>()
    };
    let mut protos = vec![vec![0.0f32; d]; ways];
    let mut count = vec![0.0f32; ways];
    for (&i, &y) in support.iter().zip(labels) {
        for (p, v) in protos[y].iter_mut().zip(unit(rows.row(i))) {
            *p += v;
        }
        count[y] += 1.0;
    }
    let protos: Vec<Vec<f32>> = protos
        .into_iter()
        .zip(count)
        .map(|(p, c)| unit(&p.iter().map(|v| v / c).collect::<Vec<f32>>()))
        .collect();
    query
        .iter()
        .map(|&i| {
            let q = unit(rows.row(i));
            let sims: Vec<f32> = protos
                .iter()
                .map(|p| p.iter().zip(&q).map(|(a, b)| a * b).sum())
                .collect();
            crate::eval::argmax(&sims)
        })
        .collect()
}

/// The check: nearest-centroid over `embed`'s output reproduces `eval --mode proto`.
/// Embedding each episode's support and query sets as sets gives proto mode's predictions
/// exactly; embedding the whole dataset once (whole-set statistics) gives its accuracy within
/// noise.
#[test]
fn nearest_centroid_over_embed_output_reproduces_proto_mode_accuracy() {
    let m = small_model(4);
    let data = noisy_classes(12, 10, 4);
    let setting = Setting { ways: 5, shots: 2 };
    let eval_opts = EvalOptions {
        queries: 5,
        episodes: 40,
        ..EvalOptions::new(Mode::Proto, &m)
    };
    let proto = evaluate(&m, &data, setting, &eval_opts, &|| {}).unwrap();
    assert!(proto.summary.std > 0.0, "episodes should differ");
    assert!(
        (0.3..0.98).contains(&proto.summary.mean),
        "{:?}",
        proto.summary
    );
    let o = EmbedOptions::default();
    // Per episode: support and query embedded as two sets -> the same predictions.
    let scorer = Scorer::new(&m, 5).unwrap();
    for i in 0..eval_opts.episodes {
        let ep = sample_episode(&data, 5, 2, 5, 0, i).unwrap();
        let s = embed_array(&m, &ep.support.data, &o).unwrap();
        let q = embed_array(&m, &ep.query.data, &o).unwrap();
        let both = Embeddings {
            n: s.n + q.n,
            dim: s.dim,
            data: [s.data, q.data].concat(),
        };
        let support: Vec<usize> = (0..ep.support_labels.len()).collect();
        let query: Vec<usize> = (support.len()..both.n).collect();
        let ours = nearest_centroid(&both, &support, &ep.support_labels, &query);
        let theirs = scorer.proto_predict(
            &ep.support.data,
            &ep.support_labels,
            &ep.query.data,
            Features::Backbone,
        );
        assert_eq!(ours, theirs, "episode {i}");
        let acc = ours
            .iter()
            .zip(&ep.query_labels)
            .filter(|(a, b)| a == b)
            .count() as f64
            / ours.len() as f64;
        assert_eq!(acc, proto.accuracies[i as usize], "episode {i}");
    }
    // The whole dataset embedded once (chunks of 16: the multi-pass path), then the same
    // episodes' images looked up by (class, index).
    let (labels, rows) = embed_dataset(
        &m,
        &data,
        &EmbedOptions {
            batch_size: 16,
            ..o
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(labels.len(), 120);
    let row_of = |c: usize, k: usize| c * 10 + k;
    let mut accs = Vec::new();
    for i in 0..eval_opts.episodes {
        let ep = sample_episode(&data, 5, 2, 5, 0, i).unwrap();
        // Find each episode image's row by its pixels (the episode does not expose indices).
        let find = |img: &[f32]| {
            (0..12)
                .flat_map(|c| (0..10).map(move |k| (c, k)))
                .find(|&(c, k)| crate::data::image::to_unit_f32(&data.image(c, k)) == img)
                .map(|(c, k)| row_of(c, k))
                .expect("episode image is in the dataset")
        };
        let support: Vec<usize> = ep.support.data.chunks(256).map(find).collect();
        let query: Vec<usize> = ep.query.data.chunks(256).map(find).collect();
        let pred = nearest_centroid(&rows, &support, &ep.support_labels, &query);
        let acc = pred
            .iter()
            .zip(&ep.query_labels)
            .filter(|(a, b)| a == b)
            .count() as f64
            / pred.len() as f64;
        accs.push(acc);
    }
    let ours = crate::eval::summarize(&accs).unwrap();
    let noise = 2.0 * (proto.summary.ci95.powi(2) + ours.ci95.powi(2)).sqrt();
    assert!(
        (ours.mean - proto.summary.mean).abs() <= noise.max(0.05),
        "whole-set rows: {ours:?}; proto mode: {:?}",
        proto.summary
    );
}

#[test]
fn nan_or_a_wrong_length_is_an_error_naming_the_image() {
    let m = small_model(0);
    let mut x = images(3, 0);
    x[256 + 5] = f32::NAN;
    let err = embed_array(&m, &x, &EmbedOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 1") && err.contains("NaN"), "{err}");
    let err = embed_array(&m, &x[..300], &EmbedOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("300 values") && err.contains("1x16x16"),
        "{err}"
    );
}

#[test]
fn the_three_file_formats_hold_the_rows() {
    let e = Embeddings {
        n: 2,
        dim: 3,
        data: vec![1.0, -2.5, 0.125, 3.0, 4.0, 1e-7],
    };
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("f.npy");
    write(&npy, &e, &[]).unwrap();
    let b = std::fs::read(&npy).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'shape': (2, 3)") && header.ends_with('\n'),
        "{header}"
    );
    let vals: Vec<f32> = b[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(vals, e.data);

    let st = tmp.path().join("f.safetensors");
    write(&st, &e, &[("checkpoint", "x.safetensors".into())]).unwrap();
    let bytes = std::fs::read(&st).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f = t.tensor("features").unwrap();
    assert_eq!(f.shape(), [2, 3]);
    assert_eq!(f.data().len(), 24);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata().as_ref().unwrap()["checkpoint"],
        "x.safetensors"
    );

    let csv = tmp.path().join("f.CSV");
    write(&csv, &e, &[]).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "f0,f1,f2");
    let back: Vec<f32> = lines[1..]
        .iter()
        .flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap()))
        .collect();
    assert_eq!(back, e.data);

    let err = write(&tmp.path().join("f.txt"), &e, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains(".npy, .safetensors or .csv"), "{err}");
    assert_eq!(
        labels_path(&npy).file_name().unwrap().to_str().unwrap(),
        "f.npy.labels.csv"
    );
}

//! `bmssl embed` gives the features that PyTorch computes from the same checkpoint
//! (`examples/pytorch_load.py`), checked without torch against a committed fixture:
//!
//! * `tests/golden/interop-conv4.safetensors`: a trained Conv4 checkpoint (MetaSSL, 300
//!   meta-steps on Omniglot, optimiser state dropped);
//! * `tests/golden/interop-conv4-features.safetensors`: 16 Omniglot test images as the network
//!   sees them (`images`, `[16, 1, 28, 28]`, in `[0, 1]`) and the features PyTorch computed for
//!   them with `examples/pytorch_load.py --fixture` (whole-set batch norm: `backbone_set`,
//!   `projection_set`; batches of 8: `backbone_batch8`).
//!
//! Regenerate (torch needed only for the second step):
//!
//! ```text
//! BMSSL_INTEROP_CKPT=RUN_DIR/checkpoints/step-0000300.safetensors BMSSL_INTEROP_OUT=/tmp/interop \
//!     BMSSL_INTEROP_N=16 cargo test -p bmssl --test pytorch_interop -- --ignored
//! python examples/pytorch_load.py /tmp/interop/checkpoint.safetensors \
//!     --images /tmp/interop/images.npy --fixture /tmp/interop/features.safetensors
//! ```
//!
//! then copy `checkpoint.safetensors` and `features.safetensors` over the two fixture files.
//! With a larger `BMSSL_INTEROP_N` (33840: the whole test split) the first step also writes
//! bmssl's own features (`bmssl_backbone_set.npy`...) for a by-hand comparison
//! (`--compare`).

use std::path::{Path, PathBuf};

use bmssl::embed::{embed_array, BatchNormStats, EmbedOptions, Embeddings};
use bmssl::eval::{Features, Model};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn tensor(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::tensor::Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn embed_gives_the_features_pytorch_computes_from_the_same_checkpoint() {
    let ckpt = bmssl::checkpoint::load(&golden("interop-conv4.safetensors")).unwrap();
    let model = Model::from_checkpoint(&ckpt).unwrap();
    let bytes = std::fs::read(golden("interop-conv4-features.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (shape, images) = tensor(&st, "images");
    assert_eq!(shape, [16, 1, 28, 28]);
    let cases = [
        ("backbone_set", Features::Backbone, BatchNormStats::Set, 256),
        // The multi-pass path (statistics gathered over chunks of 5) gives the same rows.
        ("backbone_set", Features::Backbone, BatchNormStats::Set, 5),
        (
            "projection_set",
            Features::Projection,
            BatchNormStats::Set,
            256,
        ),
        (
            "projection_set",
            Features::Projection,
            BatchNormStats::Set,
            3,
        ),
        (
            "backbone_batch8",
            Features::Backbone,
            BatchNormStats::Batch,
            8,
        ),
    ];
    for (name, features, batch_norm, batch_size) in cases {
        let (shape, want) = tensor(&st, name);
        let got = embed_array(
            &model,
            &images,
            &EmbedOptions {
                features,
                batch_size,
                batch_norm,
            },
        )
        .unwrap();
        assert_eq!([got.n, got.dim], [shape[0], shape[1]], "{name}");
        let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let err = got
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}, batch size {batch_size}: max |bmssl - torch| = {err:.2e} (max |feature| {scale:.2})");
        assert!(
            err <= 1e-5,
            "{name}, batch size {batch_size}: max abs difference {err}"
        );
    }
}

/// Writes the inputs of the fixture (see the module documentation). Ignored: run by hand.
#[test]
#[ignore]
fn write_interop_inputs() {
    use bmssl::data::omniglot::{Omniglot, OmniglotOptions, Split};
    use bmssl::data::Dataset;
    let src = std::env::var("BMSSL_INTEROP_CKPT").expect("BMSSL_INTEROP_CKPT=checkpoint");
    let out = PathBuf::from(std::env::var("BMSSL_INTEROP_OUT").expect("BMSSL_INTEROP_OUT=dir"));
    let n: usize = std::env::var("BMSSL_INTEROP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    std::fs::create_dir_all(&out).unwrap();
    let mut ckpt = bmssl::checkpoint::load(Path::new(&src)).unwrap();
    ckpt.optimizer = None;
    ckpt.state.clear();
    bmssl::checkpoint::save(&out.join("checkpoint.safetensors"), &ckpt).unwrap();
    let omni = Omniglot::load(
        &bmssl::data::repo_data_dir().join("omniglot"),
        &OmniglotOptions::default(),
    )
    .unwrap();
    let test = omni.split(Split::Test);
    let all: Vec<(usize, usize)> = (0..test.num_classes())
        .flat_map(|c| (0..test.images_in_class(c)).map(move |i| (c, i)))
        .collect();
    // Spread over classes, rotations and drawings; every image when n is the whole split.
    let picked: Vec<(usize, usize)> = if n >= all.len() {
        all
    } else {
        (0..n).map(|k| all[(k * 7919) % all.len()]).collect()
    };
    let x: Vec<f32> = picked
        .iter()
        .flat_map(|&(c, i)| bmssl::data::image::to_unit_f32(&test.image(c, i)))
        .collect();
    let rows = |data: Vec<f32>, dim: usize| Embeddings {
        n: picked.len(),
        dim,
        data,
    };
    std::fs::write(
        out.join("images.npy"),
        bmssl::embed::npy_bytes(&rows(x.clone(), 784)),
    )
    .unwrap();
    let model = Model::from_checkpoint(&ckpt).unwrap();
    for (name, features) in [
        ("backbone", Features::Backbone),
        ("projection", Features::Projection),
    ] {
        let e = embed_array(
            &model,
            &x,
            &EmbedOptions {
                features,
                ..EmbedOptions::default()
            },
        )
        .unwrap();
        std::fs::write(
            out.join(format!("bmssl_{name}_set.npy")),
            bmssl::embed::npy_bytes(&e),
        )
        .unwrap();
    }
}

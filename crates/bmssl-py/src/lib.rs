//! `import bmssl`: the bmssl library from Python (PyO3). Numpy in, numpy out; the work runs with
//! the GIL released; every library error is a `bmssl.BmsslError` (a `ValueError`) carrying the
//! one-line message the CLI prints.

use std::path::PathBuf;

use bmssl::data::{open_split, Dataset, ImageShape, UnlabelledPool};
use bmssl::embed::{BatchNormStats, EmbedOptions};
use bmssl::eval::{EvalOptions, Features, HeadInit, Mode, Scorer, Setting};
use bmssl::model::{ArchSpec, Learner};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

pyo3::create_exception!(
    _bmssl,
    BmsslError,
    PyValueError,
    "An error of the bmssl library (bad input, a corrupt checkpoint, a missing dataset...)."
);

fn err(e: impl std::fmt::Display) -> PyErr {
    // One line, as the CLI prints it.
    let text = e.to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    BmsslError::new_err(line.join(" "))
}

fn parse<T: std::str::FromStr>(s: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(err)
}

/// `x` as a C-contiguous float32 `[N, C, H, W]` of the model's shape, copied out of Python.
fn images(x: &Bound<'_, PyAny>, shape: ImageShape, what: &str) -> PyResult<Vec<f32>> {
    let arr = x.downcast::<PyArrayDyn<f32>>().map_err(|_| {
        let dtype = x
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| x.get_type().to_string());
        err(format!(
            "{what}: expected a numpy float32 array [N, {}, {}, {}], got {dtype}",
            shape.channels, shape.height, shape.width
        ))
    })?;
    let dims = arr.shape().to_vec();
    if dims.len() != 4 || dims[1..] != [shape.channels, shape.height, shape.width] {
        return Err(err(format!(
            "{what}: shape {dims:?} is not [N, {}, {}, {}] (the model's input)",
            shape.channels, shape.height, shape.width
        )));
    }
    let ro = arr.readonly();
    Ok(ro.as_array().iter().copied().collect())
}

/// A trained model: `bmssl.load(path)`.
#[pyclass(module = "bmssl", frozen)]
struct Model {
    inner: bmssl::eval::Model,
    path: String,
}

#[pymethods]
impl Model {
    /// The checkpoint file it was loaded from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }
    /// `(channels, height, width)` of the images it takes.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        let s = self.inner.image_shape();
        (s.channels, s.height, s.width)
    }
    /// The architecture (backbone, in_channels, image_size, hidden, proj_dim, ways...).
    #[getter]
    fn arch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.inner.arch).map_err(err)?;
        py.import("json")?.call_method1("loads", (text,))
    }
    /// Inner-loop steps and learning rate the model adapts with.
    #[getter]
    fn inner_steps(&self) -> usize {
        self.inner.inner.inner_steps
    }
    #[getter]
    fn inner_lr(&self) -> f64 {
        self.inner.inner.inner_lr
    }

    /// Features of `x` (float32 `[N, C, H, W]` in `[0, 1]`): `[N, F]`, the rows of `bmssl embed`.
    #[pyo3(signature = (x, features = "backbone", batch_norm = "set", batch_size = 256))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        features: &str,
        batch_norm: &str,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = images(x, self.inner.image_shape(), "images")?;
        let opts = EmbedOptions {
            features: parse::<Features>(features)?,
            batch_norm: parse::<BatchNormStats>(batch_norm)?,
            batch_size,
        };
        let model = &self.inner;
        let e = py
            .allow_threads(|| bmssl::embed::embed_array(model, &x, &opts))
            .map_err(err)?;
        let a = numpy::ndarray::Array2::from_shape_vec((e.n, e.dim), e.data).map_err(err)?;
        Ok(a.into_pyarray(py))
    }

    /// Adapts to a labelled support set (`support_x` float32 `[N, C, H, W]`, `support_y` class
    /// indices 0..ways-1, every class present) as `bmssl adapt` does: a fresh classifier, then
    /// `steps` SGD steps of the inner loss (the model's own by default). Returns an
    /// `AdaptedModel`.
    #[pyo3(signature = (support_x, support_y, steps = None, lr = None, head = "zero"))]
    fn adapt(
        &self,
        py: Python<'_>,
        support_x: &Bound<'_, PyAny>,
        support_y: &Bound<'_, PyAny>,
        steps: Option<usize>,
        lr: Option<f64>,
        head: &str,
    ) -> PyResult<AdaptedModel> {
        let x = images(support_x, self.inner.image_shape(), "support_x")?;
        let n = x.len() / self.inner.image_shape().numel();
        let labels: Vec<i64> = support_y
            .call_method0("tolist")
            .and_then(|l| l.extract())
            .or_else(|_| support_y.extract())
            .map_err(|_| err("support_y: expected a 1-D array or list of class indices"))?;
        if labels.len() != n {
            return Err(err(format!(
                "support_y: {} labels for {n} support images",
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l < 0) {
            return Err(err(format!("support_y: label {bad} is negative")));
        }
        let labels: Vec<usize> = labels.into_iter().map(|l| l as usize).collect();
        let ways = labels.iter().max().map_or(0, |m| m + 1);
        if ways < 2 {
            return Err(err("support_y: a support set needs at least 2 classes"));
        }
        if let Some(c) = (0..ways).find(|c| !labels.contains(c)) {
            return Err(err(format!(
                "support_y: class {c} has no support image (labels must be 0..{})",
                ways - 1
            )));
        }
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let per = self.inner.image_shape().numel();
            return Err(err(format!(
                "support image {}: value {} is {v}: inputs must be finite",
                i / per,
                i % per
            )));
        }
        let head: HeadInit = parse(head)?;
        let steps = steps.unwrap_or(self.inner.inner.inner_steps);
        let lr = lr.unwrap_or(self.inner.inner.inner_lr);
        let model = &self.inner;
        let weights = py
            .allow_threads(|| -> bmssl::Result<Vec<f32>> {
                let scorer = Scorer::new(model, ways)?;
                Ok(scorer.adapt(&x, &labels, head, model.inner.with(lr, steps)))
            })
            .map_err(err)?;
        Ok(AdaptedModel {
            arch: ArchSpec {
                ways,
                ..self.inner.arch.clone()
            },
            weights,
        })
    }

    fn __repr__(&self) -> String {
        let a = &self.inner.arch;
        format!(
            "bmssl.Model({:?} {}x{}x{}, {} features, path={:?})",
            a.backbone,
            a.in_channels,
            a.image_size,
            a.image_size,
            a.feature_dim(),
            self.path
        )
    }
}

/// A model adapted to a support set: `Model.adapt(...)`.
#[pyclass(module = "bmssl", frozen)]
struct AdaptedModel {
    arch: ArchSpec,
    weights: Vec<f32>,
}

impl AdaptedModel {
    fn logits(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize)> {
        let shape = ImageShape::new(
            self.arch.in_channels,
            self.arch.image_size,
            self.arch.image_size,
        );
        let x = images(x, shape, "x")?;
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(err(format!(
                "image {}: value {} is {v}: inputs must be finite",
                i / shape.numel(),
                i % shape.numel()
            )));
        }
        let arch = self.arch.clone();
        let w = &self.weights;
        let logits = py
            .allow_threads(|| -> bmssl::Result<Vec<f32>> {
                let learner = Learner::new(arch)?;
                Ok(learner.infer(w, &x, false).0.logits)
            })
            .map_err(err)?;
        Ok((logits, self.arch.ways))
    }
}

#[pymethods]
impl AdaptedModel {
    /// Number of classes it was adapted to.
    #[getter]
    fn ways(&self) -> usize {
        self.arch.ways
    }
    /// Predicted class of each image of `x` (float32 `[N, C, H, W]`; one batch, as `bmssl adapt`
    /// classifies its folder).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (logits, ways) = self.logits(py, x)?;
        let pred: Vec<i64> = bmssl::eval::argmax_rows(&logits, ways)
            .into_iter()
            .map(|c| c as i64)
            .collect();
        Ok(pred.into_pyarray(py))
    }
    /// Class probabilities `[N, ways]` (softmax of the adapted classifier).
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (logits, ways) = self.logits(py, x)?;
        let p = bmssl::losses::softmax(&logits, ways);
        let n = p.len() / ways;
        let a = numpy::ndarray::Array2::from_shape_vec((n, ways), p).map_err(err)?;
        Ok(a.into_pyarray(py))
    }
}

/// Loads a checkpoint file or a run directory (its final checkpoint).
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
    let r = py
        .allow_threads(|| bmssl::checkpoint::resolve(&path))
        .map_err(|e| err(format!("loading checkpoint {}: {e}", path.display())))?;
    let inner = bmssl::eval::Model::from_checkpoint(&r.checkpoint)
        .map_err(|e| err(format!("checkpoint {}: {e}", path.display())))?;
    Ok(Model {
        inner,
        path: r.path.display().to_string(),
    })
}

/// Mean few-shot accuracy over fixed episodes, as `bmssl eval`: a dict, the record an `eval.json`
/// holds per setting (mean, ci95, std, episodes, seconds, the per-episode accuracies, and the
/// setting, mode, split, queries and episode seed they came from).
#[pyfunction]
#[pyo3(signature = (model, dataset = "omniglot", split = "test", ways = 5, shots = 1, queries = 15,
    episodes = 2000, mode = "adapt", seed = 0, data_dir = None, rotations = true))]
#[allow(clippy::too_many_arguments)]
fn evaluate<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    dataset: &str,
    split: &str,
    ways: usize,
    shots: usize,
    queries: usize,
    episodes: u64,
    mode: &str,
    seed: u64,
    data_dir: Option<PathBuf>,
    rotations: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let m: bmssl::eval::Model = if let Ok(m) = model.downcast::<Model>() {
        m.get().inner.clone()
    } else {
        let path: PathBuf = model
            .extract()
            .map_err(|_| err("model: expected a bmssl.Model or a checkpoint path"))?;
        load(py, path)?.inner
    };
    let mode: Mode = parse(mode)?;
    let setting: Setting = parse(&format!("{ways}w{shots}s"))?;
    let r = py
        .allow_threads(|| -> bmssl::Result<_> {
            let data = open_split(
                dataset,
                split,
                m.image_shape(),
                rotations,
                data_dir.as_deref(),
            )?;
            let opts = EvalOptions {
                queries,
                episodes,
                seed,
                ..EvalOptions::new(mode, &m)
            };
            bmssl::eval::EvalRecord::measure(&m, data.as_ref(), split, setting, &opts, &|| {})
        })
        .map_err(err)?;
    let text = serde_json::to_string(&r).map_err(err)?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Meta-trains as `bmssl train --config C --run-dir RUN_DIR --no-eval` (resuming when RUN_DIR
/// holds a checkpoint): `config` is a dict of config.toml's keys or a path to a TOML file.
/// Returns the final checkpoint's path.
#[pyfunction]
#[pyo3(signature = (config, run_dir, data_dir = None))]
fn train(
    py: Python<'_>,
    config: &Bound<'_, PyAny>,
    run_dir: PathBuf,
    data_dir: Option<PathBuf>,
) -> PyResult<String> {
    let (text, source) = if let Ok(d) = config.downcast::<PyDict>() {
        let json: String = py
            .import("json")?
            .call_method1("dumps", (d,))?
            .downcast_into::<PyString>()?
            .to_string();
        let value: toml::Value = serde_json::from_str(&json).map_err(err)?;
        (
            toml::to_string(&value).map_err(err)?,
            "config dict".to_string(),
        )
    } else {
        let path: PathBuf = config
            .extract()
            .map_err(|_| err("config: expected a dict or a path to a TOML file"))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        (text, path.display().to_string())
    };
    let cfg = bmssl::config::TrainConfig::from_toml(&text, &source).map_err(err)?;
    let outcome = py
        .allow_threads(|| -> bmssl::Result<_> {
            cfg.validate()?;
            let run = bmssl::train::RunDir::create(&run_dir)?;
            let shape = cfg.data.shape();
            let split = open_split(
                &cfg.data.dataset,
                &cfg.data.split,
                shape,
                cfg.data.rotations,
                data_dir.as_deref(),
            )?;
            let data = if cfg.method.uses_labels() {
                bmssl::train::TrainingData::Labelled(split)
            } else {
                bmssl::train::TrainingData::Unlabelled(UnlabelledPool::new(split))
            };
            let val: Option<std::sync::Arc<dyn Dataset>> = if cfg.run.validation_episodes >= 2 {
                let split = if bmssl::data::known_dataset(&cfg.data.dataset).is_some() {
                    "val"
                } else {
                    &cfg.data.split
                };
                Some(open_split(
                    &cfg.data.dataset,
                    split,
                    shape,
                    cfg.data.rotations,
                    data_dir.as_deref(),
                )?)
            } else {
                None
            };
            let mut validator = val
                .as_deref()
                .map(|v| bmssl::train::validator(&cfg, v, EvalOptions::DEFAULT_QUERIES));
            bmssl::train::train(
                &run,
                &cfg,
                &data,
                validator
                    .as_mut()
                    .map(|v| v as &mut bmssl::train::Validator<'_>),
                &mut bmssl::train::Silent,
            )
        })
        .map_err(err)?;
    Ok(outcome.final_checkpoint.display().to_string())
}

#[pymodule]
fn _bmssl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("BmsslError", m.py().get_type::<BmsslError>())?;
    m.add_class::<Model>()?;
    m.add_class::<AdaptedModel>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    Ok(())
}

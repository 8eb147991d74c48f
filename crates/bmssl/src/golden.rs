//! Agreement with PyTorch: recomputes the outer loss and meta-gradient stored in a golden file
//! written by `python bmssl_torch.py golden [options]`, in f64, from the stored inputs and parameters.

use crate::meta::outer::{meta_gradient, TaskTensors};
use crate::meta::{BootstrapSpec, InnerLoop, MetaSpec, Method, OuterLoss, Target};
use crate::model::{ArchSpec, Learner};
use crate::npz::{read_npz, NpyArray};
use crate::objective::InnerLoss;
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The reference's options, as stored in the golden file's `config_json`.
#[derive(Clone, Debug, Deserialize)]
pub struct ReferenceOptions {
    pub method: String,
    pub n_images: usize,
    pub blocks: usize,
    pub m1: usize,
    pub m2: usize,
    pub inner_steps: usize,
    pub delta: usize,
    pub inner_lr: f64,
    pub lam: f64,
    pub tau: f64,
    pub channels: usize,
    pub size: usize,
    pub first_order: bool,
    #[serde(default = "paper")]
    pub target: String,
    /// `--method additive`: the KL's weight.
    #[serde(default)]
    pub mu: Option<f64>,
}

fn paper() -> String {
    "paper".into()
}

impl ReferenceOptions {
    /// Our meta-gradient specification for these options.
    pub fn meta_spec(&self) -> Result<MetaSpec> {
        let method = match self.method.as_str() {
            "bmssl" | "additive" => Method::Bmssl,
            "metassl" => Method::Metassl,
            m => {
                return Err(Error::config(
                    "method",
                    format!("unknown method {m:?} in golden file"),
                ))
            }
        };
        let target = match self.target.as_str() {
            "paper" => Target::Paper,
            "query-step" => Target::QueryStep,
            t => {
                return Err(Error::config(
                    "target",
                    format!("unknown target {t:?} in golden file"),
                ))
            }
        };
        Ok(MetaSpec {
            method,
            target,
            inner: InnerLoop {
                inner_lr: self.inner_lr,
                inner_steps: self.inner_steps,
                inner_loss: InnerLoss {
                    contrastive_weight: self.lam,
                    temperature: self.tau,
                    ..InnerLoss::PAPER
                },
            },
            bootstrap_steps: self.delta,
            first_order: self.first_order,
            zero_head: false,
            bootstrap: BootstrapSpec {
                outer: if self.method == "additive" {
                    OuterLoss::Additive
                } else {
                    OuterLoss::Kl
                },
                mu: self.mu.unwrap_or(BootstrapSpec::PAPER.mu),
                ..BootstrapSpec::PAPER
            },
        })
    }
}

/// Error of one parameter tensor's meta-gradient.
#[derive(Clone, Debug)]
pub struct TensorError {
    pub name: String,
    /// `max |ours - reference|`
    pub max_abs: f64,
    /// `max_abs / max(max |reference|, 1e-6 * G)`, G the largest reference entry of any tensor
    /// (a conv bias ahead of batch-norm has an exactly-zero true gradient; the floor judges such a
    /// tensor against the gradient's overall scale instead of against rounding noise).
    pub relative: f64,
}

/// The comparison of our f64 meta-gradient with the reference's.
#[derive(Clone, Debug)]
pub struct GoldenReport {
    pub options: ReferenceOptions,
    pub outer_loss_reference: f64,
    pub outer_loss_ours: f64,
    pub tensors: Vec<TensorError>,
}

impl GoldenReport {
    /// Largest relative error over all tensors and the outer loss.
    pub fn max_relative(&self) -> f64 {
        let loss_rel = (self.outer_loss_ours - self.outer_loss_reference).abs()
            / self.outer_loss_reference.abs().max(1e-12);
        self.tensors
            .iter()
            .map(|t| t.relative)
            .fold(loss_rel, f64::max)
    }
}

fn take<'a>(
    arrays: &'a BTreeMap<String, NpyArray>,
    key: &str,
    path: &Path,
) -> Result<&'a NpyArray> {
    arrays
        .get(key)
        .ok_or_else(|| Error::corrupt(path, format!("golden file has no array {key:?}")))
}

/// Reads a golden file and recomputes its meta-gradient.
pub fn check_golden(path: &Path) -> Result<GoldenReport> {
    let arrays = read_npz(path)?;
    let cfg_bytes: Vec<u8> = take(&arrays, "config_json", path)?
        .data
        .iter()
        .map(|&b| b as u8)
        .collect();
    let options: ReferenceOptions = serde_json::from_slice(&cfg_bytes)
        .map_err(|e| Error::corrupt(path, format!("config_json: {e}")))?;
    if options.blocks == 0 || !options.n_images.is_multiple_of(options.blocks) {
        return Err(Error::corrupt(
            path,
            "config_json: n_images is not a multiple of blocks",
        ));
    }
    let spec = options.meta_spec()?;
    let learner = Learner::new(ArchSpec::conv4(
        options.channels,
        options.size,
        options.n_images / options.blocks,
    ))?;
    let mut theta = vec![0.0f64; learner.num_params()];
    for e in &learner.layout.entries {
        let a = take(&arrays, &format!("param/{}", e.name), path)?;
        if a.shape != e.shape {
            return Err(Error::shape(
                format!("param/{}", e.name),
                format!("file has {:?}, learner expects {:?}", a.shape, e.shape),
            ));
        }
        theta[e.range()].copy_from_slice(&a.data);
    }
    let labels = |a: &NpyArray| a.data.iter().map(|&v| v as usize).collect::<Vec<_>>();
    let tasks = (0..options.blocks)
        .map(|i| -> Result<TaskTensors<f64>> {
            let get = |part: &str| take(&arrays, &format!("task{i}/{part}"), path);
            Ok(TaskTensors {
                support_x: get("support_x")?.data.clone(),
                support_y: labels(get("support_y")?),
                query_x: get("query_x")?.data.clone(),
                query_y: labels(get("query_y")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (grad, stats) = meta_gradient(&learner, &theta, &tasks, &spec);
    let outer_loss_ours = stats.iter().map(|s| s.outer_loss).sum::<f64>() / stats.len() as f64;
    let reference: Vec<(&str, &NpyArray)> = learner
        .layout
        .entries
        .iter()
        .map(|e| {
            Ok((
                e.name.as_str(),
                take(&arrays, &format!("grad/{}", e.name), path)?,
            ))
        })
        .collect::<Result<_>>()?;
    let scale = reference
        .iter()
        .flat_map(|(_, a)| a.data.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let tensors = learner
        .layout
        .entries
        .iter()
        .zip(&reference)
        .map(|(e, (_, want))| {
            let got = &grad[e.range()];
            let max_abs = got
                .iter()
                .zip(&want.data)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            let denom = want
                .data
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()))
                .max(1e-6 * scale)
                .max(f64::MIN_POSITIVE);
            TensorError {
                name: e.name.clone(),
                max_abs,
                relative: max_abs / denom,
            }
        })
        .collect();
    Ok(GoldenReport {
        options,
        outer_loss_reference: take(&arrays, "outer_loss", path)?.data[0],
        outer_loss_ours,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name)
    }

    fn assert_agrees(name: &str) {
        let r = check_golden(&fixture(name)).unwrap();
        assert!(
            r.max_relative() < 1e-6,
            "{name}: max relative error {:e}: {:#?}",
            r.max_relative(),
            r.tensors
        );
    }

    #[test]
    fn bmssl_paper_target_second_order_agrees_with_pytorch() {
        assert_agrees("bmssl-paper-L2-d3.npz");
    }

    #[test]
    fn bmssl_query_step_target_second_order_agrees_with_pytorch() {
        assert_agrees("bmssl-querystep-L3-d2.npz");
    }

    #[test]
    fn bmssl_query_step_first_order_agrees_with_pytorch() {
        assert_agrees("bmssl-querystep-first-order.npz");
    }

    #[test]
    fn metassl_rgb_second_order_agrees_with_pytorch() {
        assert_agrees("metassl-rgb32-L3-m2.npz");
    }

    #[test]
    fn maml_cross_entropy_objective_agrees_with_pytorch() {
        assert_agrees("maml-L1-cross-entropy.npz");
    }

    #[test]
    fn a_missing_golden_file_names_its_path() {
        let err = check_golden(Path::new("no/such/golden.npz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such/golden.npz"), "{err}");
    }
}

//! Test-time adaptation chosen on validation: adapt mode's inner step size and number of steps,
//! picked per setting from a grid on validation episodes, then used on the test split
//! (`bmssl eval --tune-adapt`, docs/evaluation.md "Choosing the test-time step").
//!
//! Why: adapt mode's protocol reuses the checkpoint's training inner loop (alpha, L) at test time.
//! A 5-shot episode has five times the support images a 1-shot-trained inner loop saw, and at
//! alpha = 0.4 over 5 steps it overshoots (the BMSSL study measured 86.7% -> 94.4% on 5w5s
//! validation by halving alpha); a one-step checkpoint (L = 1) is scored with one step. Choosing
//! both on validation, never on the split that is reported, is the fair protocol.
//!
//! One adaptation per (episode, step size) is scored after every step count of the grid
//! ([`Scorer::adapt_more`]), so a grid of S step counts costs its largest count, not their sum;
//! the accuracies are bit-identical to separate `evaluate` calls (tested).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::eval::{episode, prepare, summarize, EvalOptions, Mode, Model, Setting, Summary};
use crate::{Error, Result};

/// Most step sizes or step counts a grid may hold (each step size is one adaptation per episode).
pub const MAX_GRID_AXIS: usize = 32;

/// The (step size, steps) pairs tried: every step size with every step count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptGrid {
    /// Inner step sizes, ascending, distinct.
    pub lrs: Vec<f64>,
    /// Step counts, ascending, distinct.
    pub steps: Vec<usize>,
}

impl AdaptGrid {
    /// Step sizes tried by default (with the checkpoint's own): MAML's 0.4 and halvings of it.
    pub const DEFAULT_LRS: [f64; 4] = [0.05, 0.1, 0.2, 0.4];
    /// Step counts tried by default (with the checkpoint's own).
    pub const DEFAULT_STEPS: [usize; 3] = [1, 5, 10];

    /// A grid of `lrs` x `steps` (sorted, duplicates dropped), each value within its bound.
    pub fn new(lrs: &[f64], steps: &[usize]) -> Result<Self> {
        if lrs.is_empty() || steps.is_empty() {
            return Err(Error::config(
                if lrs.is_empty() {
                    "tune_lrs"
                } else {
                    "tune_steps"
                },
                "the grid needs at least one value",
            ));
        }
        for &lr in lrs {
            crate::limits::positive("tune_lrs", lr)?;
        }
        for &s in steps {
            crate::limits::size("tune_steps", s, 0, crate::limits::MAX_INNER_STEPS)?;
        }
        let mut lrs = lrs.to_vec();
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        let mut steps = steps.to_vec();
        steps.sort_unstable();
        steps.dedup();
        crate::limits::size("tune_lrs", lrs.len(), 1, MAX_GRID_AXIS)?;
        crate::limits::size("tune_steps", steps.len(), 1, MAX_GRID_AXIS)?;
        Ok(AdaptGrid { lrs, steps })
    }

    /// The default grid for `model`: [`Self::DEFAULT_LRS`] x [`Self::DEFAULT_STEPS`], each with the
    /// model's own value added, so the protocol's choice is always one of the candidates.
    pub fn default_for(model: &Model) -> Result<Self> {
        let mut lrs = Self::DEFAULT_LRS.to_vec();
        lrs.push(model.inner.inner_lr);
        let mut steps = Self::DEFAULT_STEPS.to_vec();
        steps.push(model.inner.inner_steps);
        Self::new(&lrs, &steps)
    }
}

/// One grid point's validation result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    pub lr: f64,
    pub steps: usize,
    pub summary: Summary,
    /// Accuracy of each validation episode, in episode order.
    pub accuracies: Vec<f64>,
}

/// The choice for one setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub setting: Setting,
    /// Every grid point, step sizes outermost.
    pub grid: Vec<GridPoint>,
    /// Index into `grid` of the chosen point: the highest validation mean; ties go to the
    /// earlier point (the smaller step size, then fewer steps).
    pub chosen: usize,
}

impl Tuned {
    /// The chosen point.
    pub fn best(&self) -> &GridPoint {
        &self.grid[self.chosen]
    }

    /// `base` with the chosen step size and steps.
    pub fn apply(&self, base: &EvalOptions) -> EvalOptions {
        EvalOptions {
            adapt: base.adapt.with(self.best().lr, self.best().steps),
            ..base.clone()
        }
    }
}

/// Scores every point of `grid` on `opts.episodes` episodes of `setting` drawn from `data` (the
/// validation split) with `opts`' queries, seed and head, and chooses the best. `on_episode` is
/// called once per finished episode (from worker threads).
pub fn tune_adapt(
    model: &Model,
    data: &dyn Dataset,
    setting: Setting,
    opts: &EvalOptions,
    grid: &AdaptGrid,
    on_episode: &(dyn Fn() + Sync),
) -> Result<Tuned> {
    if opts.mode != Mode::Adapt {
        return Err(Error::config(
            "mode",
            "choosing the test-time step applies to adapt mode only",
        ));
    }
    let grid = AdaptGrid::new(&grid.lrs, &grid.steps)?;
    let scorer = prepare(model, data, setting, opts)?;
    // Per episode: the accuracy at every grid point, step sizes outermost.
    let per_episode =
        crate::error::collect_in_order((0..opts.episodes).into_par_iter().map(|i| {
            let ep = episode(data, setting, opts, i)?;
            let (x, y) = (&ep.support.data, &ep.support_labels);
            let mut accs = Vec::with_capacity(grid.lrs.len() * grid.steps.len());
            for &lr in &grid.lrs {
                let mut w = scorer.adapt(x, y, opts.head, opts.adapt.with(lr, 0));
                let mut done = 0;
                for &s in &grid.steps {
                    scorer.adapt_more(&mut w, x, y, opts.adapt.with(lr, s - done));
                    done = s;
                    accs.push(scorer.adapted_accuracy(&w, &ep));
                }
            }
            on_episode();
            Ok(accs)
        }))?;
    let mut points = Vec::new();
    for (li, &lr) in grid.lrs.iter().enumerate() {
        for (si, &steps) in grid.steps.iter().enumerate() {
            let k = li * grid.steps.len() + si;
            let accuracies: Vec<f64> = per_episode.iter().map(|a| a[k]).collect();
            points.push(GridPoint {
                lr,
                steps,
                summary: summarize(&accuracies)?,
                accuracies,
            });
        }
    }
    let mut chosen = 0;
    for (k, p) in points.iter().enumerate() {
        if p.summary.mean > points[chosen].summary.mean {
            chosen = k;
        }
    }
    Ok(Tuned {
        setting,
        grid: points,
        chosen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageShape, InMemoryDataset};
    use crate::eval::evaluate;
    use crate::eval::tests::small_model;

    /// `classes` classes of `per_class` 16x16 images of seeded noise around a class pattern.
    fn noisy(classes: usize, per_class: usize) -> InMemoryDataset {
        use rand::Rng;
        let mut rng = crate::rng::derive(7, &[]);
        let bufs = (0..classes)
            .map(|c| {
                let mut b = Vec::new();
                for _ in 0..per_class {
                    for p in 0..256 {
                        let on = (p * (c + 3) / 17) % 2 == 0;
                        let noise: u8 = rng.gen_range(0..120);
                        b.push(if on { 255 - noise } else { noise });
                    }
                }
                b
            })
            .collect();
        InMemoryDataset::from_classes("noisy", ImageShape::new(1, 16, 16), bufs).unwrap()
    }

    fn opts(model: &Model) -> EvalOptions {
        EvalOptions {
            queries: 2,
            episodes: 6,
            ..EvalOptions::new(Mode::Adapt, model)
        }
    }

    #[test]
    fn every_grid_point_scores_exactly_what_a_separate_evaluation_at_it_scores() {
        let model = small_model(1);
        let data = noisy(8, 4);
        let setting = Setting { ways: 3, shots: 1 };
        let grid = AdaptGrid::new(&[0.3, 0.05], &[3, 0, 1]).unwrap();
        let tuned = tune_adapt(&model, &data, setting, &opts(&model), &grid, &|| {}).unwrap();
        assert_eq!(tuned.grid.len(), 6);
        for p in &tuned.grid {
            let o = EvalOptions {
                adapt: model.inner.with(p.lr, p.steps),
                ..opts(&model)
            };
            let r = evaluate(&model, &data, setting, &o, &|| {}).unwrap();
            assert_eq!(r.accuracies, p.accuracies, "lr {} steps {}", p.lr, p.steps);
        }
    }

    #[test]
    fn the_chosen_point_has_the_highest_validation_mean_and_ties_go_to_the_earlier_point() {
        let model = small_model(2);
        let data = noisy(8, 4);
        let grid = AdaptGrid::new(&[0.05, 0.2, 0.8], &[0, 1, 4]).unwrap();
        let setting = Setting { ways: 4, shots: 2 };
        let tuned = tune_adapt(&model, &data, setting, &opts(&model), &grid, &|| {}).unwrap();
        let best = tuned.best().summary.mean;
        for (k, p) in tuned.grid.iter().enumerate() {
            assert!(p.summary.mean <= best);
            if k < tuned.chosen {
                assert!(
                    p.summary.mean < best,
                    "an earlier point ties the chosen one"
                );
            }
        }
        // Zero steps from a zero head predict class 0 everywhere: 1 / ways, the same for every
        // step size, so a grid of only zero steps ties everywhere and keeps the first point.
        let zero = AdaptGrid::new(&[0.1, 0.2], &[0]).unwrap();
        let t = tune_adapt(&model, &data, setting, &opts(&model), &zero, &|| {}).unwrap();
        assert_eq!(t.chosen, 0);
        assert!((t.best().summary.mean - 0.25).abs() < 1e-12);
        let applied = tuned.apply(&opts(&model));
        assert_eq!(applied.adapt.inner_lr, tuned.best().lr);
        assert_eq!(applied.adapt.inner_steps, tuned.best().steps);
    }

    #[test]
    fn the_choice_is_the_same_for_one_and_two_threads() {
        let model = small_model(3);
        let data = noisy(8, 4);
        let grid = AdaptGrid::new(&[0.1, 0.4], &[1, 2]).unwrap();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    tune_adapt(
                        &model,
                        &data,
                        Setting { ways: 3, shots: 1 },
                        &opts(&model),
                        &grid,
                        &|| {},
                    )
                    .unwrap()
                })
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn a_grid_is_sorted_deduplicated_and_bounded() {
        let g = AdaptGrid::new(&[0.4, 0.1, 0.4], &[5, 1, 5]).unwrap();
        assert_eq!(g.lrs, vec![0.1, 0.4]);
        assert_eq!(g.steps, vec![1, 5]);
        let e = AdaptGrid::new(&[], &[1]).unwrap_err().to_string();
        assert!(e.contains("tune_lrs"), "{e}");
        let e = AdaptGrid::new(&[0.1], &[]).unwrap_err().to_string();
        assert!(e.contains("tune_steps"), "{e}");
        let e = AdaptGrid::new(&[-0.1], &[1]).unwrap_err().to_string();
        assert!(e.contains("tune_lrs"), "{e}");
        let e = AdaptGrid::new(&[f64::NAN], &[1]).unwrap_err().to_string();
        assert!(e.contains("tune_lrs"), "{e}");
        let e = AdaptGrid::new(&[0.1], &[usize::MAX])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tune_steps"), "{e}");
        let many: Vec<f64> = (1..=40).map(|i| i as f64 / 100.0).collect();
        let e = AdaptGrid::new(&many, &[1]).unwrap_err().to_string();
        assert!(e.contains("tune_lrs"), "{e}");
    }

    #[test]
    fn the_default_grid_holds_the_checkpoints_own_step_size_and_steps() {
        let mut model = small_model(4);
        model.inner.inner_lr = 0.3;
        model.inner.inner_steps = 7;
        let g = AdaptGrid::default_for(&model).unwrap();
        assert_eq!(g.lrs, vec![0.05, 0.1, 0.2, 0.3, 0.4]);
        assert_eq!(g.steps, vec![1, 5, 7, 10]);
    }

    #[test]
    fn proto_mode_is_refused() {
        let model = small_model(5);
        let data = noisy(8, 4);
        let o = EvalOptions {
            mode: Mode::Proto,
            ..opts(&model)
        };
        let g = AdaptGrid::new(&[0.1], &[1]).unwrap();
        let e = tune_adapt(&model, &data, Setting { ways: 3, shots: 1 }, &o, &g, &|| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("adapt mode"), "{e}");
    }
}

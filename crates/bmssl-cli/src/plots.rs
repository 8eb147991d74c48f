//! PNG plots of a run's curves, drawn from its `metrics.jsonl` with `plotters`.
//!
//! Over 400 lines: the three chart kinds every command draws (lines with smoothing, error bars,
//! the learning/loss pair) and the run's own plots share one font, one PNG writer and the axis
//! labelling, which would otherwise be copied into each.
//! The font (DejaVu Sans, its licence beside it in `assets/`) is compiled in, so plotting needs no
//! system fonts.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Cannot fail for a valid font; a failure would only cost the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Size of every plot in pixels.
const W: u32 = 900;
const H: u32 = 540;

/// Encodes RGB pixels as a PNG and writes it atomically: a failed write (full disk) leaves the
/// previous plot, never a truncated or empty file.
fn write_png(path: &Path, pixels: &[u8]) -> Result<()> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, W, H, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    bmssl::io::write_atomic(path, &png)?;
    Ok(())
}

/// One named curve: (x, y) points.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Half-widths of a 95% interval at each point, drawn as a shaded band with the points marked
    /// (validation curves); `None` for a plain line.
    pub ci95: Option<Vec<f64>>,
}

/// Tick labels of an x axis: integers only when every x is a whole number (meta-steps), so a
/// short run's axis never reads 0.2, 0.4 steps; otherwise six decimals, trimmed (tick positions
/// are sums of floats: 0.30000000000000004).
fn x_tick_label(x: f64, integral: bool) -> String {
    if integral {
        let i = x.round();
        return if (x - i).abs() < 1e-9 {
            format!("{}", i as i64)
        } else {
            String::new()
        };
    }
    let t = format!("{x:.6}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

/// Draws curves on one chart and writes a PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    register_font();
    let pts: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &&(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    for s in series {
        for (&(x, y), &c) in s.points.iter().zip(s.ci95.iter().flatten()) {
            if x.is_finite() && y.is_finite() && c.is_finite() {
                y0 = y0.min(y - c);
                y1 = y1.max(y + c);
            }
        }
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let integral = pts.iter().all(|p| p.0.fract() == 0.0);
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut pixels = vec![0u8; (W * H * 3) as usize];
    let root = BitMapBackend::with_buffer(&mut pixels, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| x_tick_label(*x, integral))
        .draw()?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let ok: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if let Some(ci) = &s.ci95 {
            // The 95% band: upper edge left to right, lower edge back.
            let band: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .zip(ci)
                .filter(|(p, c)| p.0.is_finite() && p.1.is_finite() && c.is_finite())
                .map(|(&(x, y), &c)| (x, y, c))
                .collect();
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(x, y, c)| (x, y + c))
                .chain(band.iter().rev().map(|&(x, y, c)| (x, y - c)))
                .collect();
            if band.len() >= 2 {
                chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.15).filled())))?;
            }
            chart.draw_series(ok.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        chart
            .draw_series(LineSeries::new(ok.iter().copied(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    write_png(path, &pixels)
}

/// Moving average over a trailing window (curves of single meta-batches are noisy).
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    let mut out = Vec::with_capacity(finite.len());
    let mut sum = 0.0;
    for i in 0..finite.len() {
        sum += finite[i].1;
        if i >= window {
            sum -= finite[i - window].1;
        }
        out.push((finite[i].0, sum / (i + 1).min(window) as f64));
    }
    out
}

/// Writes `plots/losses.png`, `plots/validation.png` and `plots/speed.png` from a run's metrics.
pub fn plot_run(run_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        return Ok(Vec::new()); // nothing trained (e.g. `--method scratch`)
    }
    let text = std::fs::read_to_string(&metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let col = |key: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?)))
            .collect()
    };
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let steps = col("outer_loss").len().max(1);
    let window = (steps / 50).clamp(1, 100);
    let mut written = Vec::new();
    let outer = bmssl::train::RunDir {
        root: run_dir.to_path_buf(),
    }
    .load_config()
    .ok()
    .map_or_else(|| "outer loss".to_string(), |cfg| outer_loss_name(&cfg));
    let losses = dir.join("losses.png");
    line_chart(
        &losses,
        &format!("Losses (moving average over {window} meta-steps)"),
        "meta-step",
        "loss",
        &[
            Series {
                name: outer,
                points: smooth(&col("outer_loss"), window),
                ..Series::default()
            },
            Series {
                name: "inner loss before adaptation (support)".into(),
                points: smooth(&col("inner_loss_before"), window),
                ..Series::default()
            },
            Series {
                name: "inner loss after adaptation (support)".into(),
                points: smooth(&col("inner_loss_after"), window),
                ..Series::default()
            },
        ],
    )?;
    written.push(losses);
    let val = col("val_accuracy");
    if !val.is_empty() {
        let path = dir.join("validation.png");
        let pct: Vec<(f64, f64)> = val.iter().map(|&(s, a)| (s, 100.0 * a)).collect();
        // Rows with an accuracy carry its interval (older runs may lack it: no band then).
        let ci: Vec<f64> = rows
            .iter()
            .filter(|r| r.get("val_accuracy").and_then(|v| v.as_f64()).is_some())
            .map(|r| {
                r.get("val_ci95")
                    .and_then(|v| v.as_f64())
                    .map_or(f64::NAN, |c| 100.0 * c)
            })
            .collect();
        line_chart(
            &path,
            "Validation accuracy (5-way 1-shot, 95% interval shaded)",
            "meta-step",
            "accuracy (%)",
            &[Series {
                name: "validation".into(),
                points: pct,
                ci95: Some(ci),
            }],
        )?;
        written.push(path);
    }
    let speed = dir.join("speed.png");
    line_chart(
        &speed,
        "Meta-training speed",
        "meta-step",
        "meta-steps / s",
        &[Series {
            name: "meta-steps/s".into(),
            points: smooth(&col("meta_steps_per_s"), window),
            ..Series::default()
        }],
    )?;
    written.push(speed);
    Ok(written)
}

/// What a run's outer loss is, for the legend: the KL to BMSSL's target, the query loss plus mu x
/// that KL, or the query loss of MetaSSL / MAML; the step's loss for the other methods.
pub fn outer_loss_name(cfg: &bmssl::config::TrainConfig) -> String {
    use bmssl::config::TrainMethod as M;
    let query = if cfg.inner.contrastive_weight > 0.0 {
        "query CE + lambda SupCon"
    } else {
        "query CE"
    };
    match cfg.method {
        M::Bmssl => match cfg.bootstrap.outer_loss {
            bmssl::meta::OuterLoss::Kl => "outer loss: KL(target || prediction)".into(),
            bmssl::meta::OuterLoss::Additive => {
                format!(
                    "outer loss: {query} + {} x KL(target || prediction)",
                    cfg.bootstrap.mu
                )
            }
        },
        M::Metassl | M::Maml | M::Umtra => format!("outer loss: {query}"),
        _ => "training loss".into(),
    }
}

/// One named line with a 95% error bar at each point: (x, mean, half-width).
pub struct ErrorSeries {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Draws lines with vertical error bars and writes a PNG. With `categories`, x = 0, 1, 2...
/// are labelled with those names (an axis of non-numbers).
pub fn error_bar_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    categories: Option<&[String]>,
    series: &[ErrorSeries],
) -> Result<()> {
    register_font();
    let pts: Vec<(f64, f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, m, c) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(m - c);
        y1 = y1.max(m + c);
    }
    // Room beside the outermost bars.
    let xpad = ((x1 - x0) * 0.05).max(if categories.is_some() { 0.5 } else { 1e-6 });
    let (x0, x1) = (x0 - xpad, x1 + xpad);
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut pixels = vec![0u8; (W * H * 3) as usize];
    let root = BitMapBackend::with_buffer(&mut pixels, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let label = |x: &f64| match categories {
        Some(c) => {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() {
                c[i as usize].clone()
            } else {
                String::new()
            }
        }
        None => x_tick_label(*x, false),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .x_label_formatter(&label);
    if let Some(c) = categories {
        mesh.x_labels(c.len() * 4 + 1);
    }
    mesh.draw()?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let ok: Vec<(f64, f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(
                ok.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(
            ok.iter()
                .map(|&(x, m, e)| ErrorBar::new_vertical(x, m - e, m, m + e, c.filled(), 10)),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    write_png(path, &pixels)
}

/// The two charts every experiment directory gets from its curves: training-time validation
/// accuracy (fractions, drawn in %) and outer loss against meta-step, one line per run.
pub fn learning_and_loss_charts(
    learning: (&std::path::Path, &str),
    loss: (&std::path::Path, &str),
    curves: &[bmssl::reproduce::report::Curves],
) -> anyhow::Result<()> {
    line_chart(
        learning.0,
        learning.1,
        "meta-step",
        "accuracy (%)",
        &curves
            .iter()
            .map(|(name, val, _)| Series {
                name: name.clone(),
                points: val.iter().map(|&(s, a)| (s, 100.0 * a)).collect(),
                ..Series::default()
            })
            .collect::<Vec<_>>(),
    )?;
    line_chart(
        loss.0,
        loss.1,
        "meta-step",
        "outer loss",
        &curves
            .iter()
            .map(|(name, _, loss)| Series {
                name: name.clone(),
                points: loss.clone(),
                ..Series::default()
            })
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmssl::config::{TrainConfig, TrainMethod};

    #[test]
    fn meta_step_axes_are_labelled_with_whole_numbers_only() {
        assert_eq!(x_tick_label(100.0, true), "100");
        assert_eq!(x_tick_label(0.4, true), "");
        assert_eq!(x_tick_label(0.30000000000000004, false), "0.3");
        assert_eq!(x_tick_label(-0.0, false), "0");
    }

    #[test]
    fn the_loss_legend_names_each_methods_outer_loss() {
        let shipped = outer_loss_name(&TrainConfig::for_method(TrainMethod::Bmssl));
        assert!(
            shipped.contains("query CE + lambda SupCon + 0.3 x KL"),
            "{shipped}"
        );
        let paper =
            outer_loss_name(&TrainConfig::for_method(TrainMethod::Bmssl).with_paper_bootstrap());
        assert_eq!(paper, "outer loss: KL(target || prediction)");
        let metassl = outer_loss_name(&TrainConfig::for_method(TrainMethod::Metassl));
        assert_eq!(metassl, "outer loss: query CE + lambda SupCon");
        assert_eq!(
            outer_loss_name(&TrainConfig::for_method(TrainMethod::Simclr)),
            "training loss"
        );
    }

    #[test]
    fn a_validation_curve_with_its_band_is_drawn_and_a_band_widens_the_axis() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v.png");
        let series = Series {
            name: "validation".into(),
            points: vec![(0.0, 40.0), (100.0, 60.0), (200.0, 70.0)],
            ci95: Some(vec![2.0, 1.5, f64::NAN]),
        };
        line_chart(&path, "t", "meta-step", "accuracy (%)", &[series]).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (W, H));
    }
}

//! PNG plots of a run's curves, drawn from its `metrics.jsonl` with `plotters`.
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
    bmssl::checkpoint::write_atomic(path, &png)?;
    Ok(())
}

/// One named curve: (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
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
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
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
        .draw()?;
    let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        chart
            .draw_series(LineSeries::new(
                s.points
                    .iter()
                    .copied()
                    .filter(|p| p.0.is_finite() && p.1.is_finite()),
                c.stroke_width(2),
            ))?
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
    let losses = dir.join("losses.png");
    line_chart(
        &losses,
        &format!("Losses (moving average over {window} meta-steps)"),
        "meta-step",
        "loss",
        &[
            Series {
                name: "outer loss".into(),
                points: smooth(&col("outer_loss"), window),
            },
            Series {
                name: "inner loss before adaptation (support)".into(),
                points: smooth(&col("inner_loss_before"), window),
            },
            Series {
                name: "inner loss after adaptation (support)".into(),
                points: smooth(&col("inner_loss_after"), window),
            },
        ],
    )?;
    written.push(losses);
    let val = col("val_accuracy");
    if !val.is_empty() {
        let path = dir.join("validation.png");
        let pct: Vec<(f64, f64)> = val.iter().map(|&(s, a)| (s, 100.0 * a)).collect();
        line_chart(
            &path,
            "Validation accuracy (5-way 1-shot)",
            "meta-step",
            "accuracy (%)",
            &[Series {
                name: "validation".into(),
                points: pct,
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
        }],
    )?;
    written.push(speed);
    Ok(written)
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
        // Tick positions are sums of floats (0.30000000000000004): six decimals, trimmed.
        None => {
            let t = format!("{x:.6}");
            let t = t.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" {
                "0".into()
            } else {
                t.to_string()
            }
        }
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
            })
            .collect::<Vec<_>>(),
    )
}

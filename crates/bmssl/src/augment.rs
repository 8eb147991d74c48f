//! Data augmentation: the views of section 4.1 are random transformations of one source image.
//!
//! Everything works on [`Image`]s, `f32` CHW in `[0, 1]`, and draws its randomness from a
//! caller-supplied `&mut impl Rng`, so a view is a pure function of (image, generator state).
//!
//! Pipeline, in order (the SimCLR / PsCo order; a stage is skipped when its setting is `None` or
//! its probability is 0):
//! 1. [`RandomResizedCrop`] to the output size: torchvision's algorithm (10 attempts, then a
//!    centre crop clamped to the ratio range), bilinear sampling.
//! 2. Horizontal flip with probability `hflip`.
//! 3. [`ColorJitter`] with probability `p`: brightness, contrast, saturation, hue in a random
//!    order (as torchvision). On 1-channel images saturation and hue do nothing.
//! 4. Random grayscale with probability `grayscale` (no-op on 1-channel images).
//! 5. [`GaussianBlur`] with probability `p`, sigma uniform in a range.
//!
//! ## Levels (paper Table 5; parameters are our choice, also in `docs/augmentation.md`)
//!
//! | level | kinds | crop scale | flip | colour jitter (b, c, s, h), p | grayscale p | blur sigma, p |
//! |---|---|---|---|---|---|---|
//! | `default` (PsCo) | 2 | 0.2-1.0 | 0.5 | - | - | - |
//! | `a1` one kind, mild | 1 | 0.5-1.0 | - | - | - | - |
//! | `a2` one kind, strong | 1 | 0.08-1.0 | - | - | - | - |
//! | `a3` five kinds, mild | 5 | 0.5-1.0 | 0.5 | (0.2, 0.2, 0.2, 0.05), 0.8 | 0.1 | 0.1-1.0, 0.2 |
//! | `a4` five kinds, strong | 5 | 0.08-1.0 | 0.5 | (0.4, 0.4, 0.4, 0.1), 0.8 | 0.2 | 0.1-2.0, 0.5 |
//!
//! All crops use the aspect-ratio range 3/4-4/3.
//!
//! Over 400 lines: every augmentation stage (crop, flip, colour jitter, hue, greyscale, blur) and
//! the levels of Table 5 that combine them; about 90 lines are tests.

use rand::Rng;

/// One image, `f32` CHW (`data.len() == channels * height * width`), values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// 1 or 3.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `[channels][height][width]`.
    pub data: Vec<f32>,
}

impl Image {
    /// `u8` CHW pixels -> `[0, 1]` floats (divide by 255).
    pub fn from_u8(channels: usize, height: usize, width: usize, pixels: &[u8]) -> Self {
        debug_assert_eq!(pixels.len(), channels * height * width);
        Image {
            channels,
            height,
            width,
            data: crate::data::image::to_unit_f32(pixels),
        }
    }
    fn plane(&self) -> usize {
        self.height * self.width
    }
}

/// Which augmentation recipe; serde names `"default"`, `"a1"` ... `"a4"`. See the module table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AugmentLevel {
    /// PsCo's Omniglot recipe: RandomResizedCrop (0.2-1.0) + horizontal flip.
    #[default]
    Default,
    /// One kind, mild: crop scale 0.5-1.0 only.
    A1,
    /// One kind, strong: crop scale 0.08-1.0 only.
    A2,
    /// Five kinds, mild: crop, flip, colour jitter, grayscale, blur with mild settings.
    A3,
    /// Five kinds, strong: the same five with strong settings.
    A4,
}

impl AugmentLevel {
    /// Every level, for help texts and tests.
    pub const ALL: [AugmentLevel; 5] = [
        AugmentLevel::Default,
        AugmentLevel::A1,
        AugmentLevel::A2,
        AugmentLevel::A3,
        AugmentLevel::A4,
    ];

    /// The serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            AugmentLevel::Default => "default",
            AugmentLevel::A1 => "a1",
            AugmentLevel::A2 => "a2",
            AugmentLevel::A3 => "a3",
            AugmentLevel::A4 => "a4",
        }
    }

    /// The settings of this level (module table).
    pub fn config(self) -> AugmentConfig {
        let crop = |lo: f32| {
            Some(RandomResizedCrop {
                scale: (lo, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            })
        };
        let none = AugmentConfig {
            crop: None,
            hflip: 0.0,
            jitter: None,
            grayscale: 0.0,
            blur: None,
        };
        match self {
            AugmentLevel::Default => AugmentConfig {
                crop: crop(0.2),
                hflip: 0.5,
                ..none
            },
            AugmentLevel::A1 => AugmentConfig {
                crop: crop(0.5),
                ..none
            },
            AugmentLevel::A2 => AugmentConfig {
                crop: crop(0.08),
                ..none
            },
            AugmentLevel::A3 => AugmentConfig {
                crop: crop(0.5),
                hflip: 0.5,
                jitter: Some(ColorJitter {
                    brightness: 0.2,
                    contrast: 0.2,
                    saturation: 0.2,
                    hue: 0.05,
                    p: 0.8,
                }),
                grayscale: 0.1,
                blur: Some(GaussianBlur {
                    sigma: (0.1, 1.0),
                    p: 0.2,
                }),
            },
            AugmentLevel::A4 => AugmentConfig {
                crop: crop(0.08),
                hflip: 0.5,
                jitter: Some(ColorJitter {
                    brightness: 0.4,
                    contrast: 0.4,
                    saturation: 0.4,
                    hue: 0.1,
                    p: 0.8,
                }),
                grayscale: 0.2,
                blur: Some(GaussianBlur {
                    sigma: (0.1, 2.0),
                    p: 0.5,
                }),
            },
        }
    }
}

impl std::fmt::Display for AugmentLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AugmentLevel {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        AugmentLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                crate::Error::config(
                    "augment",
                    format!("`{s}` is not one of default, a1, a2, a3, a4"),
                )
            })
    }
}

/// torchvision's `RandomResizedCrop` parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomResizedCrop {
    /// Range of the crop area as a fraction of the image area.
    pub scale: (f32, f32),
    /// Range of the crop's width / height.
    pub ratio: (f32, f32),
}

/// torchvision's `ColorJitter`, applied with probability `p` (`RandomApply`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColorJitter {
    /// Brightness factor drawn from `[max(0, 1-b), 1+b]`.
    pub brightness: f32,
    /// Contrast factor drawn from `[max(0, 1-c), 1+c]`.
    pub contrast: f32,
    /// Saturation factor drawn from `[max(0, 1-s), 1+s]`.
    pub saturation: f32,
    /// Hue shift drawn from `[-h, h]` (fraction of a turn, h <= 0.5).
    pub hue: f32,
    /// Probability of applying the jitter at all.
    pub p: f32,
}

/// Gaussian blur with sigma uniform in `sigma`, applied with probability `p`; kernel radius
/// `ceil(2 sigma)`, reflect padding, separable.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaussianBlur {
    /// Range of the standard deviation, in pixels of the output.
    pub sigma: (f32, f32),
    /// Probability of blurring.
    pub p: f32,
}

/// All augmentation settings; `None` / probability 0 turns a stage off.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Random resized crop; without it the image is resized whole (bilinear) to the output size.
    pub crop: Option<RandomResizedCrop>,
    /// Probability of a horizontal flip.
    pub hflip: f32,
    /// Colour jitter.
    pub jitter: Option<ColorJitter>,
    /// Probability of converting to grey (RGB only).
    pub grayscale: f32,
    /// Gaussian blur.
    pub blur: Option<GaussianBlur>,
}

/// Makes views: an [`AugmentConfig`] plus the output size.
#[derive(Clone, Debug, PartialEq)]
pub struct Augmenter {
    /// Settings.
    pub config: AugmentConfig,
    /// Output rows.
    pub out_height: usize,
    /// Output columns.
    pub out_width: usize,
}

impl Augmenter {
    /// An augmenter with explicit settings.
    pub fn new(config: AugmentConfig, out_height: usize, out_width: usize) -> Self {
        Augmenter {
            config,
            out_height,
            out_width,
        }
    }

    /// An augmenter for `level` producing `out_height x out_width` views.
    pub fn from_level(level: AugmentLevel, out_height: usize, out_width: usize) -> Self {
        Augmenter::new(level.config(), out_height, out_width)
    }

    /// One random view of `src` (`[C][H][W]` -> `[C][out_height][out_width]`).
    pub fn apply<R: Rng + ?Sized>(&self, src: &Image, rng: &mut R) -> Image {
        let c = &self.config;
        let (top, left, h, w) = match c.crop {
            Some(crop) => crop_params(src.height, src.width, crop, rng),
            None => (0.0, 0.0, src.height as f32, src.width as f32),
        };
        let mut img = resample_bilinear(src, top, left, h, w, self.out_height, self.out_width);
        if c.hflip > 0.0 && rng.gen::<f32>() < c.hflip {
            hflip(&mut img);
        }
        if let Some(j) = c.jitter {
            if j.p > 0.0 && rng.gen::<f32>() < j.p {
                color_jitter(&mut img, j, rng);
            }
        }
        if c.grayscale > 0.0 && rng.gen::<f32>() < c.grayscale {
            to_grayscale(&mut img);
        }
        if let Some(b) = c.blur {
            if b.p > 0.0 && rng.gen::<f32>() < b.p {
                let sigma = uniform(rng, b.sigma.0, b.sigma.1);
                gaussian_blur(&mut img, sigma);
            }
        }
        img
    }
}

/// Uniform in `[lo, hi]`, tolerating `lo == hi`.
fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.gen::<f32>()
}

/// torchvision `RandomResizedCrop.get_params`: `(top, left, height, width)` in source pixels.
fn crop_params<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    crop: RandomResizedCrop,
    rng: &mut R,
) -> (f32, f32, f32, f32) {
    let (hf, wf) = (height as f32, width as f32);
    let area = hf * wf;
    let (log_lo, log_hi) = (crop.ratio.0.ln(), crop.ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, crop.scale.0, crop.scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return (top as f32, left as f32, h as f32, w as f32);
        }
    }
    // Fallback: central crop, clamped to the ratio range.
    let in_ratio = wf / hf;
    let (w, h) = if in_ratio < crop.ratio.0 {
        (
            width,
            ((wf / crop.ratio.0).round() as usize).clamp(1, height),
        )
    } else if in_ratio > crop.ratio.1 {
        (
            ((hf * crop.ratio.1).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    (
        ((height - h) / 2) as f32,
        ((width - w) / 2) as f32,
        h as f32,
        w as f32,
    )
}

/// Bilinear resampling of the window `(top, left, h, w)` to `out_h x out_w` (half-pixel centres,
/// `align_corners = False`), edge-clamped.
fn resample_bilinear(
    src: &Image,
    top: f32,
    left: f32,
    h: f32,
    w: f32,
    out_h: usize,
    out_w: usize,
) -> Image {
    let (sh, sw) = (src.height, src.width);
    let sy = h / out_h as f32;
    let sx = w / out_w as f32;
    // Precompute the horizontal taps once per column.
    let cols: Vec<(usize, usize, f32)> = (0..out_w)
        .map(|x| {
            let fx = (left + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = fx.floor() as usize;
            (x0, (x0 + 1).min(sw - 1), fx - x0 as f32)
        })
        .collect();
    let mut data = vec![0.0f32; src.channels * out_h * out_w];
    for c in 0..src.channels {
        let plane = &src.data[c * sh * sw..(c + 1) * sh * sw];
        let out = &mut data[c * out_h * out_w..(c + 1) * out_h * out_w];
        for y in 0..out_h {
            let fy = (top + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(sh - 1);
            let ty = fy - y0 as f32;
            let (r0, r1) = (
                &plane[y0 * sw..(y0 + 1) * sw],
                &plane[y1 * sw..(y1 + 1) * sw],
            );
            for (x, &(x0, x1, tx)) in cols.iter().enumerate() {
                let a = r0[x0] + (r0[x1] - r0[x0]) * tx;
                let b = r1[x0] + (r1[x1] - r1[x0]) * tx;
                out[y * out_w + x] = a + (b - a) * ty;
            }
        }
    }
    Image {
        channels: src.channels,
        height: out_h,
        width: out_w,
        data,
    }
}

fn hflip(img: &mut Image) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Luma (ITU-R 601, as torchvision) of pixel `p`.
fn luma(img: &Image, p: usize) -> f32 {
    if img.channels == 3 {
        let n = img.plane();
        0.299 * img.data[p] + 0.587 * img.data[n + p] + 0.114 * img.data[2 * n + p]
    } else {
        img.data[p]
    }
}

fn to_grayscale(img: &mut Image) {
    if img.channels != 3 {
        return;
    }
    let n = img.plane();
    for p in 0..n {
        let l = luma(img, p);
        for c in 0..3 {
            img.data[c * n + p] = l;
        }
    }
}

fn color_jitter<R: Rng + ?Sized>(img: &mut Image, j: ColorJitter, rng: &mut R) {
    let factor = |rng: &mut R, x: f32| uniform(rng, (1.0 - x).max(0.0), 1.0 + x);
    // Random order of the four adjustments, as torchvision.
    let mut order = [0usize, 1, 2, 3];
    rand::seq::SliceRandom::shuffle(&mut order[..], rng);
    for op in order {
        match op {
            0 if j.brightness > 0.0 => {
                let b = factor(rng, j.brightness);
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (*v * b).clamp(0.0, 1.0));
            }
            1 if j.contrast > 0.0 => {
                let k = factor(rng, j.contrast);
                let n = img.plane();
                let mean = (0..n).map(|p| luma(img, p)).sum::<f32>() / n as f32;
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (k * *v + (1.0 - k) * mean).clamp(0.0, 1.0));
            }
            2 if j.saturation > 0.0 && img.channels == 3 => {
                let s = factor(rng, j.saturation);
                let n = img.plane();
                for p in 0..n {
                    let l = luma(img, p);
                    for c in 0..3 {
                        let v = &mut img.data[c * n + p];
                        *v = (s * *v + (1.0 - s) * l).clamp(0.0, 1.0);
                    }
                }
            }
            3 if j.hue > 0.0 && img.channels == 3 => {
                let shift = uniform(rng, -j.hue, j.hue);
                shift_hue(img, shift);
            }
            _ => {}
        }
    }
}

/// Rotate every pixel's hue by `shift` turns (HSV round trip).
fn shift_hue(img: &mut Image, shift: f32) {
    let n = img.plane();
    for p in 0..n {
        let (r, g, b) = (img.data[p], img.data[n + p], img.data[2 * n + p]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        if d <= 0.0 {
            continue; // grey: hue undefined, unchanged
        }
        let h = if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        } / 6.0;
        let h = (h + shift).rem_euclid(1.0) * 6.0;
        let (s, v) = (d / max, max);
        let i = h.floor();
        let f = h - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match i as i32 % 6 {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        img.data[p] = nr;
        img.data[n + p] = ng;
        img.data[2 * n + p] = nb;
    }
}

/// Separable Gaussian blur, reflect padding.
fn gaussian_blur(img: &mut Image, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let radius = (2.0 * sigma).ceil().max(1.0) as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let (h, w) = (img.height as isize, img.width as isize);
    let reflect = |i: isize, n: isize| -> usize {
        let mut i = i;
        if n == 1 {
            return 0;
        }
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let mut tmp = vec![0.0f32; img.plane()];
    for c in 0..img.channels {
        let plane = &mut img.data[c * img.height * img.width..(c + 1) * img.height * img.width];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &kv) in kernel.iter().enumerate() {
                    acc += kv * plane[(y * w) as usize + reflect(x + k as isize - radius, w)];
                }
                tmp[(y * w + x) as usize] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &kv) in kernel.iter().enumerate() {
                    acc += kv * tmp[reflect(y + k as isize - radius, h) * w as usize + x as usize];
                }
                plane[(y * w + x) as usize] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    fn ramp(channels: usize, h: usize, w: usize) -> Image {
        let data = (0..channels * h * w)
            .map(|i| (i % 97) as f32 / 96.0)
            .collect();
        Image {
            channels,
            height: h,
            width: w,
            data,
        }
    }

    #[test]
    fn every_level_keeps_shape_and_range() {
        for level in AugmentLevel::ALL {
            let aug = Augmenter::from_level(level, 28, 28);
            for channels in [1, 3] {
                let mut r = rng::derive(1, &[level as u64, channels as u64]);
                for _ in 0..20 {
                    let v = aug.apply(&ramp(channels, 40, 33), &mut r);
                    assert_eq!((v.channels, v.height, v.width), (channels, 28, 28));
                    assert!(
                        v.data
                            .iter()
                            .all(|x| (0.0..=1.0).contains(x) && x.is_finite()),
                        "{level}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_same_generator_state_gives_the_same_view() {
        let aug = Augmenter::from_level(AugmentLevel::A4, 20, 20);
        let img = ramp(3, 28, 28);
        let a = aug.apply(&img, &mut rng::derive(9, &[1]));
        let b = aug.apply(&img, &mut rng::derive(9, &[1]));
        assert_eq!(a, b);
    }

    #[test]
    fn crops_stay_inside_the_image_and_respect_the_ranges() {
        let crop = RandomResizedCrop {
            scale: (0.2, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        };
        let mut r = rng::derive(3, &[]);
        for _ in 0..500 {
            let (t, l, h, w) = crop_params(28, 28, crop, &mut r);
            assert!(t >= 0.0 && l >= 0.0 && t + h <= 28.0 && l + w <= 28.0);
            assert!(h * w >= 0.15 * 784.0, "area {}", h * w);
        }
    }

    #[test]
    fn an_identity_window_resamples_to_the_same_image() {
        let img = ramp(1, 9, 7);
        assert_eq!(resample_bilinear(&img, 0.0, 0.0, 9.0, 7.0, 9, 7), img);
    }

    #[test]
    fn levels_parse_from_their_serde_names() {
        for level in AugmentLevel::ALL {
            assert_eq!(level.as_str().parse::<AugmentLevel>().unwrap(), level);
            assert_eq!(
                serde_json::to_string(&level).unwrap(),
                format!("\"{}\"", level.as_str())
            );
        }
        assert!("a5"
            .parse::<AugmentLevel>()
            .unwrap_err()
            .to_string()
            .contains("a5"));
    }

    #[test]
    fn hue_shift_by_a_full_turn_changes_nothing() {
        let mut img = ramp(3, 4, 4);
        let before = img.clone();
        shift_hue(&mut img, 1.0);
        for (a, b) in img.data.iter().zip(&before.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

//! Results drawn on their frame the way PySDK's `image_overlay` draws them with its OpenCV
//! backend (`_draw_primitives.py`): boxes `overlay_line_width` wide, per-class colours from
//! `overlay_color` (PySDK's palette for detection models by default), a filled caption above
//! (or below) each box with the label and/or probability, landmarks with their connections,
//! `overlay_blur` boxes, `overlay_alpha` blending, and classification results as text lines in
//! a band added under the image. Drawing uses `imageproc`; text uses DejaVu Sans (shipped in
//! assets/fonts with its licence) where PySDK's OpenCV backend uses the Hershey plain font, so
//! glyph shapes differ while caption boxes keep OpenCV's metrics. Oriented boxes (`angle`)
//! are drawn as rotated polygons; segmentation masks (see `masks`) are blended in with their
//! class colour under the other details.
mod masks;

use crate::error::{Error, Result};
use crate::image_ops::{self, CoordConverter, RgbImage};
use crate::runtime::Tensor;
use ab_glyph::{FontRef, PxScale};
use image::{ImageBuffer, Rgb};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

type Canvas = ImageBuffer<Rgb<u8>, Vec<u8>>;

static FONT_DATA: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Height and baseline of OpenCV's FONT_HERSHEY_PLAIN at scale 1 (cv2.getTextSize).
const HERSHEY_H: f32 = 10.0;
const HERSHEY_BASELINE: f32 = 6.0;
/// DejaVu Sans pixel height of the glyphs at font scale 1 (their width is stretched to the
/// Hershey text's).
const FONT_PX: f32 = 15.0;
/// cv2.getTextSize width of each printable ASCII character alone (' '..='~') with
/// FONT_HERSHEY_PLAIN at scale 1; a string's width is the sum of (width - 1), plus 1.
const HERSHEY_W: [u8; 95] = [
    9, 6, 9, 12, 11, 14, 13, 5, 7, 7, 11, 13, 6, 13, 6, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 6, 6, 11, 13, 11, 10, 15, 11, 11, 12, 11, 11, 10, 12, 11,
    5, 8, 11, 10, 13, 11, 12, 11, 12, 11, 11, 11, 12, 11, 13, 11, 11, 11, 7, 11, 7, 13, 11, 7, 10, 11, 11, 11, 11, 9, 11, 11, 5, 6, 10, 5, 15, 11, 11, 11, 11,
    9, 10, 9, 11, 9, 13, 11, 11, 11, 7, 5, 7, 11,
];

/// Width OpenCV gives `text` in FONT_HERSHEY_PLAIN at `scale`.
fn hershey_width(text: &str, scale: f32) -> i32 {
    if text.is_empty() {
        return 0;
    }
    let w1: i32 = text.chars().map(|c| HERSHEY_W.get((c as usize).wrapping_sub(32)).map_or(10, |&w| w as i32 - 1)).sum::<i32>() + 1;
    (w1 as f32 * scale).round() as i32
}
/// PySDK's `GlobalOptions.blur_scale` / `blur_min_kernel`.
const BLUR_SCALE: u32 = 20;
const BLUR_MIN_KERNEL: u32 = 5;

/// Output encodings of an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

/// Which boxes `overlay_blur` blurs.
#[derive(Debug, Clone, PartialEq)]
pub enum Blur {
    None,
    All,
    Labels(Vec<String>),
}

/// The overlay settings of a model (PySDK's `overlay_*` properties).
#[derive(Debug, Clone)]
pub struct Settings {
    /// One colour, or a list (`many`) picked per class.
    pub colors: Vec<[u8; 3]>,
    pub many: bool,
    pub line_width: i32,
    pub show_labels: bool,
    pub show_probabilities: bool,
    pub font_scale: f32,
    pub alpha: f32,
    /// `overlay_alpha` is "auto" (PySDK: 0.5 for segmentation masks, 1 for other details).
    pub alpha_auto: bool,
    pub blur: Blur,
    /// Fill colour of the band added under a classification overlay.
    pub fill: [u8; 3],
}

/// PySDK's `InferenceResults.generate_colors()`: 256 colours spreading the bits of the index.
pub fn palette() -> Vec<[u8; 3]> {
    (0..256u32)
        .map(|x| {
            let mut c = [0u8; 3];
            for (ch, out) in c.iter_mut().enumerate() {
                // Bits of channel `ch`: x's bits 2-ch, 5-ch, ... (LSB first) become the byte's MSB first.
                let mut v = 0u8;
                for k in 0..8 {
                    let bit = 3 * k + (2 - ch as u32);
                    if bit < 24 && (x >> bit) & 1 == 1 {
                        v |= 0x80 >> k;
                    }
                }
                *out = v;
            }
            c
        })
        .collect()
}

/// The colours a PySDK detection model starts with: the palette from index 1, one per label,
/// the first replaced by yellow.
pub fn detection_colors(num_labels: usize) -> Vec<[u8; 3]> {
    let p = palette();
    let n = num_labels.clamp(1, 255);
    let mut c: Vec<[u8; 3]> = p[1..=n].to_vec();
    c[0] = [255, 255, 0];
    c
}

fn rgb(v: &Value) -> Option<[u8; 3]> {
    let a = v.as_array()?;
    if a.len() != 3 {
        return None;
    }
    let mut c = [0u8; 3];
    for (i, x) in a.iter().enumerate() {
        c[i] = x.as_u64().filter(|&n| n <= 255)? as u8;
    }
    Some(c)
}

impl Settings {
    /// From a model's `overlay_*` properties; `color` is its `overlay_color` (one colour or a
    /// list: the model's default is PySDK's palette for detection models).
    pub fn from_properties(props: &Map<String, Value>, color: &Value, fill: [u8; 3]) -> Settings {
        let (colors, many) = match color {
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_array) => (a.iter().filter_map(rgb).collect::<Vec<_>>(), true),
            v => (vec![rgb(v).unwrap_or([255, 255, 0])], false),
        };
        let colors = if colors.is_empty() { vec![[255, 255, 0]] } else { colors };
        let (alpha, alpha_auto) = match props.get("overlay_alpha") {
            Some(Value::Number(n)) => (n.as_f64().unwrap_or(1.0) as f32, false),
            _ => (1.0, true),
        };
        let blur = match props.get("overlay_blur") {
            Some(Value::String(s)) if s == "all" => Blur::All,
            Some(Value::String(s)) => Blur::Labels(vec![s.clone()]),
            Some(Value::Array(a)) => Blur::Labels(a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()),
            _ => Blur::None,
        };
        Settings {
            colors,
            many,
            line_width: props.get("overlay_line_width").and_then(Value::as_i64).unwrap_or(3) as i32,
            show_labels: props.get("overlay_show_labels").and_then(Value::as_bool).unwrap_or(true),
            show_probabilities: props.get("overlay_show_probabilities").and_then(Value::as_bool).unwrap_or(false),
            font_scale: props.get("overlay_font_scale").and_then(Value::as_f64).unwrap_or(1.0) as f32,
            alpha,
            alpha_auto,
            blur,
            fill,
        }
    }
}

/// PySDK's `_format_num`: integers as they are, floats with two decimals.
fn format_num(v: &Value) -> String {
    if v.is_i64() || v.is_u64() {
        v.to_string()
    } else {
        format!("{:.2}", v.as_f64().unwrap_or(0.0))
    }
}

fn luminance(c: [u8; 3]) -> f32 {
    0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32
}

/// Where a model's input sits in the original image: what masks in model-input coordinates
/// and semantic class maps need to be drawn.
#[derive(Debug, Clone)]
pub struct Geometry {
    pub model_w: u32,
    pub model_h: u32,
    /// Model-input to original-image coordinates for this frame.
    pub converter: CoordConverter,
    /// The model's results are a semantic `Segmentation` class map.
    pub semantic: bool,
}

struct Draw<'a> {
    original: Canvas,
    image: Canvas,
    /// Details go on a black layer blended in at the end (alpha < 1 or masks present).
    layered: bool,
    font: FontRef<'a>,
    s: &'a Settings,
}

/// PySDK's blend weights: `Fraction(alpha).limit_denominator(255)` as (numerator, denominator).
fn fraction(a: f32) -> (u32, u32) {
    let a = a.clamp(0.0, 1.0) as f64;
    let mut best = (a.round() as u32, 1u32);
    for den in 1..=255u32 {
        let num = (a * den as f64).round() as u32;
        if (num as f64 / den as f64 - a).abs() < (best.0 as f64 / best.1 as f64 - a).abs() - 1e-12 {
            best = (num, den);
        }
    }
    best
}

/// `layer`'s non-black pixels blended onto `base` with weight `alpha` (PySDK's `_alpha_blend`).
fn blend(base: &mut Canvas, layer: &Canvas, alpha: f32) {
    let (an, ad) = fraction(alpha);
    let (bn, bd) = fraction(1.0 - alpha);
    for (o, d) in base.pixels_mut().zip(layer.pixels()) {
        if d.0 != [0, 0, 0] {
            for c in 0..3 {
                o.0[c] = ((d.0[c] as u32 * an) / ad + (o.0[c] as u32 * bn) / bd).min(255) as u8;
            }
        }
    }
}

impl<'a> Draw<'a> {
    fn new(original: Canvas, s: &'a Settings) -> Result<Draw<'a>> {
        Self::with_layers(original, s, false)
    }

    fn with_layers(original: Canvas, s: &'a Settings, masks: bool) -> Result<Draw<'a>> {
        let font = FontRef::try_from_slice(FONT_DATA).map_err(|e| Error::internal(format!("overlay font: {e}")))?;
        let layered = s.alpha < 1.0 || masks;
        let (original, image) = if layered {
            let black = Canvas::new(original.width(), original.height());
            (original, black)
        } else if s.blur != Blur::None {
            // Blurred boxes read the original pixels.
            (original.clone(), original)
        } else {
            // Drawn in place: no copy of the frame (the original is not read again).
            (Canvas::new(0, 0), original)
        };
        Ok(Draw { original, image, layered, font, s })
    }

    /// The glyph scale for `text`: FONT_PX high, as wide as OpenCV's Hershey text.
    fn scale(&self, text: &str) -> PxScale {
        let y = FONT_PX * self.s.font_scale;
        let (w, _) = imageproc::drawing::text_size(PxScale::from(y), &self.font, text);
        let want = hershey_width(text, self.s.font_scale);
        let x = if w > 0 && want > 0 { y * want as f32 / w as f32 } else { y };
        PxScale { x, y }
    }

    /// (width, height, baseline) with OpenCV's Hershey-plain metrics.
    fn text_size(&self, text: &str) -> (i32, i32, i32) {
        let fs = self.s.font_scale;
        let (h, base) = if (fs - 1.0).abs() < 1e-6 {
            (HERSHEY_H as i32, HERSHEY_BASELINE as i32)
        } else {
            ((9.0 * fs + 1.0).round() as i32, (4.0 * fs + 2.0).round() as i32)
        };
        (hershey_width(text, fs), h + base, base)
    }

    /// Text whose OpenCV baseline origin is at (x, y).
    fn put_text(&mut self, x: i32, y: i32, color: [u8; 3], text: &str) {
        let scale = self.scale(text);
        // Place the glyphs so their baseline sits where OpenCV's would.
        use ab_glyph::{Font, ScaleFont};
        let ascent = self.font.as_scaled(scale).ascent();
        imageproc::drawing::draw_text_mut(&mut self.image, Rgb(color), x, y - ascent.round() as i32, scale, &self.font, text);
    }

    fn fill_rect(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, color: [u8; 3]) {
        let (w, h) = (self.image.width() as i32, self.image.height() as i32);
        let (x1, y1, x2, y2) = (x1.max(0), y1.max(0), x2.min(w - 1), y2.min(h - 1));
        if x2 < x1 || y2 < y1 {
            return;
        }
        let r = imageproc::rect::Rect::at(x1, y1).of_size((x2 - x1 + 1) as u32, (y2 - y1 + 1) as u32);
        imageproc::drawing::draw_filled_rect_mut(&mut self.image, r, Rgb(color));
    }

    /// cv2.rectangle with `width`: each edge a band `width` wide centred on it.
    fn draw_box(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, width: i32, color: [u8; 3]) {
        // OpenCV's thick lines: 1, 3, 5, 5, 7, ... pixels for widths 1, 2, 3, 4, 5, ...
        let half = if width <= 1 { 0 } else { (width + 1) / 2 };
        let (a, b) = (half, half);
        let (x1, x2) = (x1.min(x2), x1.max(x2));
        let (y1, y2) = (y1.min(y2), y1.max(y2));
        self.fill_rect(x1 - a, y1 - a, x2 + b, y1 + b, color);
        self.fill_rect(x1 - a, y2 - a, x2 + b, y2 + b, color);
        self.fill_rect(x1 - a, y1 - a, x1 + b, y2 + b, color);
        self.fill_rect(x2 - a, y1 - a, x2 + b, y2 + b, color);
    }

    /// cv2.line with `width`: integer end points, OpenCV's thick-line widths (1, 3, 5, 5, 7,
    /// ... pixels for 1, 2, 3, 4, 5, ...) and round ends.
    fn draw_line(&mut self, p: (f32, f32), q: (f32, f32), width: i32, color: [u8; 3]) {
        let (p, q) = ((p.0.trunc(), p.1.trunc()), (q.0.trunc(), q.1.trunc()));
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let len = (dx * dx + dy * dy).sqrt();
        if width <= 1 {
            imageproc::drawing::draw_line_segment_mut(&mut self.image, p, q, Rgb(color));
            return;
        }
        let r = (width + 1) / 2;
        if len >= 0.5 {
            let half = r as f32 + 0.5;
            let (nx, ny) = (-dy / len * half, dx / len * half);
            let pts = [(p.0 + nx, p.1 + ny), (q.0 + nx, q.1 + ny), (q.0 - nx, q.1 - ny), (p.0 - nx, p.1 - ny)];
            let poly: Vec<imageproc::point::Point<i32>> = pts.iter().map(|&(x, y)| imageproc::point::Point::new(x.round() as i32, y.round() as i32)).collect();
            if poly.first() != poly.last() {
                imageproc::drawing::draw_polygon_mut(&mut self.image, &poly, Rgb(color));
            }
        }
        imageproc::drawing::draw_filled_circle_mut(&mut self.image, (p.0 as i32, p.1 as i32), r, Rgb(color));
        imageproc::drawing::draw_filled_circle_mut(&mut self.image, (q.0 as i32, q.1 as i32), r, Rgb(color));
    }

    /// PySDK's `draw_text_label`: a filled caption box kept inside the image.
    fn draw_text_label(&mut self, (x1, y1, x2, y2): (i32, i32, i32, i32), color: [u8; 3], text: &str, line_width: i32, rotated: bool) {
        let margin = 1;
        let (tw, th, base) = self.text_size(text);
        let (bw, bh) = (tw + 2 * margin, th + base + 2 * margin);
        let (w, h) = (self.image.width() as i32, self.image.height() as i32);
        let half = line_width / 2 + line_width % 2;
        let (ty, top) = if y1 >= bh {
            (y1 - bh + margin - half, true)
        } else if y2 + bh < h {
            (y2 + margin + half, false)
        } else {
            (y1 + margin, true)
        };
        // A rotated box's caption hangs from the corner it is drawn at.
        let (cx1, cx2) = match (rotated, top) {
            (true, true) => (x1, x1),
            (true, false) => (x2, x2),
            _ => (x1, x2),
        };
        let tx = if cx1 + bw < w {
            cx1 + margin - half
        } else if cx2 >= bw {
            cx2 - bw + margin + half
        } else if w >= bw {
            w - bw + margin
        } else {
            margin
        };
        self.fill_rect(tx - margin, ty - margin, tx + tw + margin, ty + th + base + margin, color);
        let text_color = if luminance(color) > 180.0 { [1, 1, 1] } else { [255, 255, 255] };
        self.put_text(tx, ty + th - 2, text_color, text);
    }

    /// cv2.blur of the box's pixels of the original image (kernel from the image size,
    /// reflect-101 borders inside the box).
    fn blur_box(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        let (w, h) = (self.image.width(), self.image.height());
        let (kx, ky) = ((w / BLUR_SCALE).max(BLUR_MIN_KERNEL) as i32, (h / BLUR_SCALE).max(BLUR_MIN_KERNEL) as i32);
        let clampx = |v: f32| (v as i32).clamp(0, w as i32);
        let clampy = |v: f32| (v as i32).clamp(0, h as i32);
        let (bx1, bx2) = (clampx(x1.min(x2)), clampx(x1.max(x2)));
        let (by1, by2) = (clampy(y1.min(y2)), clampy(y1.max(y2)));
        let (bw, bh) = (bx2 - bx1, by2 - by1);
        if bw <= 0 || bh <= 0 {
            return;
        }
        let reflect = |i: i32, n: i32| -> i32 {
            if n == 1 {
                return 0;
            }
            let mut i = i;
            while i < 0 || i >= n {
                i = if i < 0 { -i } else { 2 * n - 2 - i };
            }
            i
        };
        let (ax, ay) = (kx / 2, ky / 2);
        let (bwu, bhu) = (bw as usize, bh as usize);
        // Separable box sums: rows first (reflect-101 inside the box), then columns.
        let mut rows = vec![0u32; bwu * bhu * 3];
        for y in 0..bh {
            for x in 0..bw {
                let mut sum = [0u32; 3];
                for dx in 0..kx {
                    let sx = reflect(x + dx - ax, bw) + bx1;
                    let p = self.original.get_pixel(sx as u32, (y + by1) as u32).0;
                    for c in 0..3 {
                        sum[c] += p[c] as u32;
                    }
                }
                rows[(y as usize * bwu + x as usize) * 3..][..3].copy_from_slice(&sum);
            }
        }
        let n = (kx * ky) as u32;
        for y in 0..bh {
            for x in 0..bw {
                let mut sum = [0u32; 3];
                for dy in 0..ky {
                    let sy = reflect(y + dy - ay, bh) as usize;
                    let r = &rows[(sy * bwu + x as usize) * 3..][..3];
                    for c in 0..3 {
                        sum[c] += r[c];
                    }
                }
                let px = [((sum[0] + n / 2) / n) as u8, ((sum[1] + n / 2) / n) as u8, ((sum[2] + n / 2) / n) as u8];
                self.image.put_pixel((x + bx1) as u32, (y + by1) as u32, Rgb(px));
            }
        }
    }

    /// The original with the drawing blended in (`overlay_alpha` < 1), or the drawing.
    fn finish(self) -> Canvas {
        self.finish_with(None)
    }

    /// Like `finish`, with a segmentation layer blended in first at its own weight.
    fn finish_with(self, segm: Option<(Canvas, f32)>) -> Canvas {
        if !self.layered {
            return self.image;
        }
        let mut out = self.original;
        if let Some((layer, a)) = segm {
            blend(&mut out, &layer, a);
        }
        blend(&mut out, &self.image, self.s.alpha);
        out
    }

    /// cv2.polylines(closed) with `width`: each edge a thick line with round ends.
    fn draw_polygon(&mut self, pts: &[(i32, i32)], width: i32, color: [u8; 3]) {
        for (i, &p) in pts.iter().enumerate() {
            let q = pts[(i + 1) % pts.len()];
            self.draw_line((p.0 as f32, p.1 as f32), (q.0 as f32, q.1 as f32), width, color);
        }
    }
}

fn is_detection_result(results: &[Value]) -> bool {
    results.iter().any(|r| r.get("bbox").is_some() || r.get("landmarks").is_some() || r.get("mask").is_some())
}

/// The colour of a detection: PySDK's `_deduce_color` (class id, else the label's id).
fn deduce_color(s: &Settings, r: &Value, labels: &BTreeMap<i64, String>, next: &mut usize) -> [u8; 3] {
    if !s.many {
        return s.colors[0];
    }
    let label = r.get("label").and_then(Value::as_str);
    let id = r.get("category_id").and_then(Value::as_i64);
    let id = match (label, id) {
        (None, None) => {
            *next += 1;
            return s.colors[(*next - 1) % s.colors.len()];
        }
        (None, Some(id)) => id,
        (Some(l), Some(id)) if labels.is_empty() || labels.get(&id).map(String::as_str) == Some(l) => id,
        (Some(l), _) => labels.iter().find(|(_, v)| v.as_str() == l).map(|(k, _)| *k).unwrap_or(labels.keys().max().map_or(0, |m| m + 1)),
    };
    s.colors[id.rem_euclid(s.colors.len() as i64) as usize]
}

fn caption(s: &Settings, r: &Value) -> String {
    let label = r.get("label").and_then(Value::as_str);
    let mut capt = if s.show_labels { label.unwrap_or("").to_string() } else { String::new() };
    if s.show_probabilities {
        if let Some(score) = r.get("score") {
            capt = match label {
                Some(l) if s.show_labels => format!("{l}: {}", format_num(score)),
                _ => format_num(score),
            };
        }
    }
    capt
}

/// Draw `results` on `image` (pixels of the original frame, RGB).
pub fn draw(image: &RgbImage, results: &[Value], s: &Settings, labels: &BTreeMap<i64, String>) -> Result<RgbImage> {
    draw_with(image, results, &[], s, labels, None)
}

/// `draw` for every family: `tensors` are the result's tensors (a semantic class map may be
/// one), `geometry` the model's input placement (needed by run-length masks in model-input
/// coordinates and by semantic class maps).
pub fn draw_with(
    image: &RgbImage,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<RgbImage> {
    draw_owned(image.clone(), results, tensors, s, labels, geometry)
}

/// `draw_with` on a frame the caller gives away: detections without blur, alpha or masks
/// are drawn into its pixels without a copy.
pub fn draw_owned(
    image: RgbImage,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<RgbImage> {
    let original = Canvas::from_raw(image.width, image.height, image.data).ok_or_else(|| Error::invalid("overlay: pixel buffer size mismatch"))?;
    let out = match geometry {
        Some(g) if g.semantic => draw_semantic(original, results, tensors, s, g)?,
        _ if is_detection_result(results) => draw_detections(original, results, s, labels, geometry)?,
        _ => draw_classification(original, results, s)?,
    };
    Ok(RgbImage { width: out.width(), height: out.height(), data: out.into_raw() })
}

/// Does the model's results need `Geometry` to be drawn (masks, class maps)?
pub fn needs_geometry(results: &[Value], semantic: bool) -> bool {
    semantic || results.iter().any(|r| r.get("mask").is_some())
}

/// Class indices coloured with `lut(index)`; index 0 stays black (nothing drawn).
fn colour_map(map: &masks::ClassMap, lut: impl Fn(u8) -> [u8; 3]) -> Canvas {
    let mut layer = Canvas::new(map.w, map.h);
    for (px, &id) in layer.pixels_mut().zip(&map.ids) {
        if id != 0 {
            px.0 = lut(id);
        }
    }
    layer
}

/// PySDK's `SegmentationResults.image_overlay`: the class map resized over the frame, each
/// class in `overlay_color[class]` (cycled), blended at `overlay_alpha` (0.5 when "auto").
fn draw_semantic(original: Canvas, results: &[Value], tensors: &[Tensor], s: &Settings, g: &Geometry) -> Result<Canvas> {
    let [r] = results else { return Err(Error::invalid(format!("Segmentation overlay: results must hold exactly one class map, not {}", results.len()))) };
    let map = masks::semantic(r, tensors, g, original.width(), original.height())?;
    let mut layer = Canvas::new(map.w, map.h);
    for (px, &id) in layer.pixels_mut().zip(&map.ids) {
        px.0 = s.colors[id as usize % s.colors.len()];
    }
    let alpha = if s.alpha_auto { 0.5 } else { s.alpha };
    let mut out = original;
    blend(&mut out, &layer, alpha);
    Ok(out)
}

/// PySDK's `xywhr2xy_corners`: the corners of an oriented box, starting at the top-most
/// (then left-most) one, truncated to integers.
fn obb_corners(b: &[f32], angle: f32) -> [(i32, i32); 4] {
    let (cx, cy, w, h) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, b[2] - b[0], b[3] - b[1]);
    let (c, s) = (angle.cos(), angle.sin());
    let v1 = (w / 2.0 * c, w / 2.0 * s);
    let v2 = (-h / 2.0 * s, h / 2.0 * c);
    let pts = [
        (cx - v1.0 - v2.0, cy - v1.1 - v2.1),
        (cx + v1.0 - v2.0, cy + v1.1 - v2.1),
        (cx + v1.0 + v2.0, cy + v1.1 + v2.1),
        (cx - v1.0 + v2.0, cy - v1.1 + v2.1),
    ];
    let min_y = pts.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
    let min_x = pts.iter().filter(|p| p.1 == min_y).map(|p| p.0).fold(f32::INFINITY, f32::min);
    let start = pts.iter().position(|p| p.0 == min_x && p.1 == min_y).unwrap_or(0);
    std::array::from_fn(|i| {
        let p = pts[(start + i) % 4];
        (p.0 as i32, p.1 as i32)
    })
}

fn draw_detections(original: Canvas, results: &[Value], s: &Settings, labels: &BTreeMap<i64, String>, geometry: Option<&Geometry>) -> Result<Canvas> {
    let has_masks = results.iter().any(|r| r.get("mask").is_some());
    let mut d = Draw::with_layers(original, s, has_masks)?;
    let lw = s.line_width;
    let spacer = 3 * lw;
    let mut next = 0usize;
    let (iw, ih) = (d.image.width(), d.image.height());
    let mut mask_map: Option<masks::ClassMap> = None;
    for r in results {
        let color = deduce_color(s, r, labels, &mut next);
        let label = r.get("label").and_then(Value::as_str);
        if let Some(b) = r.get("bbox").and_then(Value::as_array).filter(|b| b.len() == 4) {
            let f: Vec<f32> = b.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect();
            let angle = r.get("angle").and_then(Value::as_f64);
            let blur = angle.is_none()
                && match &s.blur {
                    Blur::None => false,
                    Blur::All => true,
                    Blur::Labels(l) => label.is_some_and(|x| l.iter().any(|y| y == x)),
                };
            if blur {
                d.blur_box(f[0], f[1], f[2], f[3]);
            }
            let mut corners = (f[0] as i32, f[1] as i32, f[2] as i32, f[3] as i32);
            if let Some(a) = angle {
                let poly = obb_corners(&f, a as f32);
                if lw > 0 {
                    d.draw_polygon(&poly, lw, color);
                }
                // The caption goes by the first and the third corner.
                corners = (poly[0].0, poly[0].1, poly[2].0, poly[2].1);
            } else if lw > 0 {
                d.draw_box(corners.0, corners.1, corners.2, corners.3, lw, color);
            }
            let capt = caption(s, r);
            if !capt.is_empty() {
                d.draw_text_label(corners, color, &capt, lw, angle.is_some());
            }
        }
        if let Some(lms) = r.get("landmarks").and_then(Value::as_array) {
            let point = |lm: &Value| -> Option<(f32, f32)> {
                let p = lm.get("landmark")?.as_array()?;
                Some((p.first()?.as_f64()? as f32, p.get(1)?.as_f64()? as f32))
            };
            for lm in lms {
                let Some(p) = point(lm) else { continue };
                if lw > 0 {
                    let radius = (2.0 + lw as f32 / 2.0) as i32;
                    imageproc::drawing::draw_filled_circle_mut(&mut d.image, (p.0 as i32, p.1 as i32), radius, Rgb(color));
                    if let Some(conn) = lm.get("connect").and_then(Value::as_array) {
                        for n in conn.iter().filter_map(Value::as_u64) {
                            if let Some(q) = lms.get(n as usize).and_then(point) {
                                d.draw_line(p, q, lw, color);
                            }
                        }
                    }
                }
                // Each landmark's own caption (hand landmarks carry labels), beside the point.
                let capt = caption(s, lm);
                if !capt.is_empty() {
                    let (x, y) = (p.0 as i32, p.1 as i32);
                    d.draw_text_label((x + spacer, y - spacer, x + spacer, y + spacer), color, &capt, lw, false);
                }
            }
        }
        if let Some(m) = r.get("mask") {
            let map = mask_map.get_or_insert_with(|| masks::ClassMap { w: iw, h: ih, ids: vec![0; (iw * ih) as usize] });
            // PySDK's uint8 mask index: category_id % 256 + 1 (256 wraps to 0: not drawn).
            let id = ((r.get("category_id").and_then(Value::as_i64).unwrap_or(0).rem_euclid(256) + 1) % 256) as u8;
            masks::merge_instance(map, m, id, geometry)?;
        }
    }
    // Masks go under the other details, in `overlay_color[category_id]` (cycled), at
    // `overlay_alpha` (0.5 when "auto").
    let segm = mask_map.map(|map| {
        let layer = colour_map(&map, |id| s.colors[(id as usize - 1) % s.colors.len()]);
        (layer, if s.alpha_auto { 0.5 } else { s.alpha })
    });
    Ok(d.finish_with(segm))
}

/// PySDK's `ClassificationResults.image_overlay`: the image extended by a band holding one
/// text line per result (label and/or probability), each in the next colour.
fn draw_classification(original: Canvas, results: &[Value], s: &Settings) -> Result<Canvas> {
    let spacer = 3;
    let lines: Vec<String> = results
        .iter()
        .filter(|r| r.get("label").is_some() && r.get("score").is_some())
        .map(|r| {
            let label = r["label"].as_str().map(str::to_string).unwrap_or_else(|| r["label"].to_string());
            match (s.show_labels, s.show_probabilities) {
                (true, true) => format!("{label}: {}", format_num(&r["score"])),
                (true, false) => label,
                (false, true) => format_num(&r["score"]),
                (false, false) => String::new(),
            }
        })
        .collect();
    let probe = Draw::new(Canvas::new(1, 1), s)?;
    let mut top = 0;
    let mut original = original;
    if s.show_labels || s.show_probabilities {
        let (mut w, mut h) = (0, 0);
        for l in &lines {
            let (lw, lh, _) = probe.text_size(l);
            w = w.max(2 * spacer + lw);
            h += spacer + lh;
        }
        if h > 0 {
            h += spacer;
        }
        let (ow, oh) = (original.width(), original.height());
        let (nw, nh) = (ow.max(w as u32), oh + h as u32);
        let mut ext = Canvas::from_pixel(nw, nh, Rgb(s.fill));
        image::imageops::replace(&mut ext, &original, 0, 0);
        original = ext;
        top = oh as i32;
    }
    let mut d = Draw::new(original, s)?;
    if s.show_labels || s.show_probabilities {
        for (i, l) in lines.iter().enumerate() {
            let color = s.colors[i % s.colors.len()];
            let (_, th, _) = d.text_size(l);
            d.put_text(spacer, top + spacer + th - 2, color, l);
            top += spacer + th;
        }
    }
    Ok(d.finish())
}

/// Decode `frame`, draw `results` and encode the overlay as JPEG (quality 95) or PNG.
pub fn overlay_encoded(frame: &[u8], results: &[Value], s: &Settings, labels: &BTreeMap<i64, String>, format: Format) -> Result<Vec<u8>> {
    let img = image_ops::decode(frame)?;
    let out = draw_owned(img, results, &[], s, labels, None)?;
    encode(&out, format)
}

/// JPEG (quality 95) or PNG bytes of an RGB image.
pub fn encode(img: &RgbImage, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Jpeg => image_ops::encode_jpeg(img, 95),
        Format::Png => {
            let mut out = Vec::new();
            let enc = image::codecs::png::PngEncoder::new(&mut out);
            image::ImageEncoder::write_image(enc, &img.data, img.width, img.height, image::ExtendedColorType::Rgb8)
                .map_err(|e| Error::internal(format!("PNG encoding failed: {e}")))?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn palette_is_pysdks() {
        let p = palette();
        // The values PySDK 1.5.0's generate_colors() gives.
        assert_eq!(p[0], [0, 0, 0]);
        assert_eq!(p[1], [0, 0, 128]);
        assert_eq!(p[2], [0, 128, 0]);
        assert_eq!(p[4], [128, 0, 0]);
        assert_eq!(p[7], [128, 128, 128]);
        assert_eq!(detection_colors(3), vec![[255, 255, 0], [0, 128, 0], [0, 128, 128]]);
    }

    /// One 1920x1080 frame with 20 captioned boxes (run with --ignored to see the time).
    #[test]
    #[ignore]
    fn drawing_time_full_hd_20_boxes() {
        let img = RgbImage { width: 1920, height: 1080, data: vec![90; 1920 * 1080 * 3] };
        let res: Vec<Value> = (0..20)
            .map(|i| json!({"bbox": [50.0 + 90.0 * i as f64, 100.0 + 40.0 * i as f64, 130.0 + 90.0 * i as f64, 220.0 + 40.0 * i as f64], "label": format!("class_{i}"), "score": 0.5, "category_id": i}))
            .collect();
        let s = Settings::from_properties(&Map::new(), &json!([[255, 255, 0], [0, 128, 0], [0, 0, 128]]), [0, 0, 0]);
        let t = std::time::Instant::now();
        let n = 5;
        for _ in 0..n {
            draw(&img, &res, &s, &BTreeMap::new()).unwrap();
        }
        eprintln!("overlay drawing, 1920x1080, 20 boxes: {:.2} ms", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
    }

    #[test]
    fn oriented_box_corners_and_blend_weights() {
        // Angle 0: the axis-aligned box, from its top-left corner clockwise.
        assert_eq!(obb_corners(&[10.0, 20.0, 50.0, 40.0], 0.0), [(10, 20), (50, 20), (50, 40), (10, 40)]);
        // A quarter turn swaps width and height about the centre (30, 30).
        let c = obb_corners(&[10.0, 20.0, 50.0, 40.0], std::f32::consts::FRAC_PI_2);
        let ys: Vec<i32> = c.iter().map(|p| p.1).collect();
        assert!(ys.iter().all(|&y| (9..=51).contains(&y)) && c[0].1 == *ys.iter().min().unwrap(), "{c:?}");
        assert_eq!(fraction(0.5), (1, 2));
        assert_eq!(fraction(0.3), (3, 10));
        assert_eq!(fraction(1.0), (1, 1));
    }

    fn identity(w: u32, h: u32, semantic: bool) -> Geometry {
        Geometry { model_w: w, model_h: h, converter: CoordConverter::identity(), semantic }
    }

    #[test]
    fn semantic_maps_and_instance_masks() {
        let img = RgbImage { width: 2, height: 2, data: vec![100; 12] };
        let s = Settings::from_properties(&Map::new(), &json!([[0, 0, 0], [255, 0, 0], [0, 255, 0]]), [0, 0, 0]);
        // Class scores [1, 2, 2, 2] (NCHW): argmax over the class axis gives [[1, 0], [0, 1]].
        let scores = json!([[[[0.0, 9.0], [5.0, 0.0]], [[9.0, 0.0], [0.0, 7.0]]]]);
        let out = draw_with(&img, &[json!({"data": scores})], &[], &s, &BTreeMap::new(), Some(&identity(2, 2, true))).unwrap();
        // Alpha "auto": half the class colour, half the frame; class 0 (black) untouched.
        assert_eq!(out.data, vec![177, 50, 50, 100, 100, 100, 100, 100, 100, 177, 50, 50]);
        // A class-id map as PySDK's results carry it.
        let ids = json!({"__ndarray__": true, "dtype": "uint8", "shape": [2, 2], "data": [[2, 0], [0, 1]]});
        let out = draw_with(&img, &[json!({"data": ids})], &[], &s, &BTreeMap::new(), Some(&identity(2, 2, true))).unwrap();
        assert_eq!(out.data, vec![50, 177, 50, 100, 100, 100, 100, 100, 100, 177, 50, 50]);
        let bad = draw_with(&img, &[json!({"data": [1, 2, 3]})], &[], &s, &BTreeMap::new(), Some(&identity(2, 2, true))).unwrap_err();
        assert!(bad.message.contains("not 2-D"), "{}", bad.message);

        // A wire mask (values 0,1 then runs 1,3) over the whole 2x2 input: all but pixel 0.
        use base64::Engine as _;
        let rle: Vec<u8> = [0u32, 1, 1, 3].iter().flat_map(|w| w.to_le_bytes()).collect();
        let m = json!({"data": base64::engine::general_purpose::STANDARD.encode(rle)});
        let s = Settings::from_properties(&Map::new(), &json!([[0, 0, 255]]), [0, 0, 0]);
        let res = [json!({"category_id": 0, "mask": m})];
        let out = draw_with(&img, &res, &[], &s, &BTreeMap::new(), Some(&identity(2, 2, false))).unwrap();
        assert_eq!(out.data, vec![100, 100, 100, 50, 50, 177, 50, 50, 177, 50, 50, 177]);
        let e = draw_with(&img, &res, &[], &s, &BTreeMap::new(), None).unwrap_err();
        assert!(e.message.contains("geometry"), "{}", e.message);
    }

    #[test]
    fn boxes_labels_and_blending() {
        let img = RgbImage { width: 100, height: 80, data: vec![50; 100 * 80 * 3] };
        let mut props = Map::new();
        props.insert("overlay_color".into(), json!([255, 0, 0]));
        let s = Settings::from_properties(&props, &props["overlay_color"], [0, 0, 0]);
        let res = vec![json!({"bbox": [20.0, 30.0, 60.0, 70.0], "label": "cat", "score": 0.9, "category_id": 0})];
        let out = draw(&img, &res, &s, &BTreeMap::new()).unwrap();
        let px = |x: u32, y: u32| &out.data[((y * 100 + x) * 3) as usize..][..3];
        assert_eq!(px(20, 50), [255, 0, 0]);
        assert_eq!(px(40, 50), [50, 50, 50]);
        // The caption box sits above the box (y1 = 30 >= its height).
        assert_eq!(px(21, 10), [255, 0, 0]);
        props.insert("overlay_alpha".into(), json!(0.5));
        let s = Settings::from_properties(&props, &props["overlay_color"], [0, 0, 0]);
        let out = draw(&img, &res, &s, &BTreeMap::new()).unwrap();
        assert_eq!(&out.data[((50 * 100 + 20) * 3) as usize..][..3], [152, 25, 25]);
    }
}

//! Results drawn on their frame the way PySDK's `image_overlay` draws them with its OpenCV
//! backend (`_draw_primitives.py`): boxes `overlay_line_width` wide, per-class colours from
//! `overlay_color` (PySDK's palette for detection models by default), a filled caption above
//! (or below) each box with the label and/or probability, landmarks with their connections,
//! `overlay_blur` boxes, `overlay_alpha` blending, and classification results as text lines in
//! a band added under the image. Text uses DejaVu Sans (shipped in assets/fonts with its
//! licence) where PySDK's OpenCV backend uses the Hershey plain font, so glyph shapes differ
//! while caption boxes keep OpenCV's metrics; glyph coverage is rasterised once per size,
//! glyph and sub-pixel offset and cached for the process (`glyphs`). Oriented boxes (`angle`)
//! are drawn as rotated polygons; segmentation masks (see `masks`) are blended in with their
//! class colour under the other details.
//!
//! Everything is drawn on a `Surface`, rows of RGB or BGR pixels `stride` bytes apart: the
//! caller's own pixels with `draw_into` (no copy: what PySDK's `image_overlay` cannot do, as
//! it copies the frame first), or a copy of the frame with `draw` / `draw_with`.
mod glyphs;
mod masks;

use crate::error::{Error, Result};
use crate::image_ops::{self, CoordConverter, RgbImage};
use crate::runtime::Tensor;
use image::Rgb;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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

/// Pixels drawn on: `h` rows of `w` 3-byte pixels (RGB or BGR), row `y` at `data[y * stride..]`.
struct Surface<'b> {
    data: &'b mut [u8],
    w: u32,
    h: u32,
    stride: usize,
}

impl<'b> Surface<'b> {
    /// `data` checked to hold `h` rows of `w` pixels `stride` bytes apart (the last row may
    /// end after its pixels).
    fn new(data: &'b mut [u8], w: u32, h: u32, stride: usize) -> Result<Surface<'b>> {
        image_ops::check_dims(w as u64, h as u64)?;
        let row = w as usize * 3;
        if stride < row {
            return Err(Error::invalid(format!("overlay: stride {stride} is smaller than 3 * width = {row} bytes")));
        }
        let need = stride
            .checked_mul(h as usize - 1)
            .and_then(|v| v.checked_add(row))
            .ok_or_else(|| Error::invalid(format!("overlay: stride {stride} is too large")))?;
        if data.len() < need {
            return Err(Error::invalid(format!(
                "overlay: the pixel buffer holds {} bytes; {w}x{h} pixels with stride {stride} need at least {need}",
                data.len()
            )));
        }
        Ok(Surface { data, w, h, stride })
    }

    fn row(&self, y: u32) -> &[u8] {
        let o = y as usize * self.stride;
        &self.data[o..o + self.w as usize * 3]
    }

    fn row_mut(&mut self, y: u32) -> &mut [u8] {
        let o = y as usize * self.stride;
        &mut self.data[o..o + self.w as usize * 3]
    }

    /// The rectangle between the two corners (inclusive), clipped to the surface.
    fn fill_rect(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, c: [u8; 3]) {
        let (x1, y1, x2, y2) = (x1.max(0), y1.max(0), x2.min(self.w as i32 - 1), y2.min(self.h as i32 - 1));
        if x2 < x1 || y2 < y1 {
            return;
        }
        // Rows are copied from a run of the colour, 64 pixels at a time.
        let mut run = [0u8; 64 * 3];
        run.chunks_exact_mut(3).for_each(|p| p.copy_from_slice(&c));
        for y in y1..=y2 {
            let row = &mut self.row_mut(y as u32)[x1 as usize * 3..(x2 as usize + 1) * 3];
            for part in row.chunks_mut(run.len()) {
                part.copy_from_slice(&run[..part.len()]);
            }
        }
    }
}

/// For imageproc's lines, polygons and circles.
impl imageproc::drawing::Canvas for Surface<'_> {
    type Pixel = Rgb<u8>;

    fn dimensions(&self) -> (u32, u32) {
        (self.w, self.h)
    }

    fn get_pixel(&self, x: u32, y: u32) -> Rgb<u8> {
        let p = &self.row(y)[x as usize * 3..][..3];
        Rgb([p[0], p[1], p[2]])
    }

    fn draw_pixel(&mut self, x: u32, y: u32, c: Rgb<u8>) {
        self.row_mut(y)[x as usize * 3..][..3].copy_from_slice(&c.0);
    }
}

/// A layer (packed rows, as large as the surface): its non-black pixels blended onto `base`
/// with weight `alpha` (PySDK's `_alpha_blend`).
fn blend(base: &mut Surface, layer: &[u8], alpha: f32) {
    let (an, ad) = fraction(alpha);
    let (bn, bd) = fraction(1.0 - alpha);
    let row = base.w as usize * 3;
    for (y, l) in (0..base.h).zip(layer.chunks_exact(row)) {
        for (o, d) in base.row_mut(y).chunks_exact_mut(3).zip(l.chunks_exact(3)) {
            if d != [0, 0, 0] {
                for c in 0..3 {
                    o[c] = ((d[c] as u32 * an) / ad + (o[c] as u32 * bn) / bd).min(255) as u8;
                }
            }
        }
    }
}

/// (width, height, baseline) of `text` with OpenCV's Hershey-plain metrics.
fn text_size(s: &Settings, text: &str) -> (i32, i32, i32) {
    let fs = s.font_scale;
    let (h, base) =
        if (fs - 1.0).abs() < 1e-6 { (HERSHEY_H as i32, HERSHEY_BASELINE as i32) } else { ((9.0 * fs + 1.0).round() as i32, (4.0 * fs + 2.0).round() as i32) };
    (hershey_width(text, fs), h + base, base)
}

struct Draw<'a, 'b> {
    /// The frame's pixels: drawn on, or (with `layer`) blended with the details at the end.
    frame: Surface<'b>,
    /// Details go on this black layer (packed rows) blended in at the end (alpha < 1 or
    /// masks present).
    layer: Option<Vec<u8>>,
    /// A packed copy of the frame for blurred boxes to read when the details are drawn on
    /// the frame itself.
    original: Option<Vec<u8>>,
    /// The pixels are BGR: colours are swapped as they are drawn.
    bgr: bool,
    s: &'a Settings,
}

impl<'a, 'b> Draw<'a, 'b> {
    fn new(frame: Surface<'b>, bgr: bool, s: &'a Settings, masks: bool) -> Result<Draw<'a, 'b>> {
        glyphs::check_font()?;
        let layered = s.alpha < 1.0 || masks;
        let layer = layered.then(|| vec![0u8; frame.w as usize * frame.h as usize * 3]);
        let original = (!layered && s.blur != Blur::None).then(|| {
            let mut v = Vec::with_capacity(frame.w as usize * frame.h as usize * 3);
            (0..frame.h).for_each(|y| v.extend_from_slice(frame.row(y)));
            v
        });
        Ok(Draw { frame, layer, original, bgr, s })
    }

    /// Where details are drawn: the layer, or the frame.
    fn target(&mut self) -> Surface<'_> {
        let (w, h) = (self.frame.w, self.frame.h);
        match &mut self.layer {
            Some(l) => Surface { data: l, w, h, stride: w as usize * 3 },
            None => Surface { data: &mut *self.frame.data, w, h, stride: self.frame.stride },
        }
    }

    /// An RGB colour in the pixels' channel order.
    fn px(&self, c: [u8; 3]) -> [u8; 3] {
        if self.bgr {
            [c[2], c[1], c[0]]
        } else {
            c
        }
    }

    /// Text whose OpenCV baseline origin is at (x, y): DejaVu glyphs FONT_PX high (times the
    /// font scale), as wide as OpenCV's Hershey text.
    fn put_text(&mut self, x: i32, y: i32, color: [u8; 3], text: &str) -> Result<()> {
        let (c, px, want) = (self.px(color), FONT_PX * self.s.font_scale, hershey_width(text, self.s.font_scale));
        glyphs::put_text(&mut self.target(), x, y, c, text, px, want)
    }

    fn fill_rect(&mut self, x1: i32, y1: i32, x2: i32, y2: i32, color: [u8; 3]) {
        let c = self.px(color);
        self.target().fill_rect(x1, y1, x2, y2, c);
    }

    fn circle(&mut self, (x, y): (i32, i32), r: i32, color: [u8; 3]) {
        let c = Rgb(self.px(color));
        imageproc::drawing::draw_filled_circle_mut(&mut self.target(), (x, y), r, c);
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
            let c = Rgb(self.px(color));
            imageproc::drawing::draw_line_segment_mut(&mut self.target(), p, q, c);
            return;
        }
        let r = (width + 1) / 2;
        if len >= 0.5 {
            let half = r as f32 + 0.5;
            let (nx, ny) = (-dy / len * half, dx / len * half);
            let pts = [(p.0 + nx, p.1 + ny), (q.0 + nx, q.1 + ny), (q.0 - nx, q.1 - ny), (p.0 - nx, p.1 - ny)];
            let poly: Vec<imageproc::point::Point<i32>> = pts.iter().map(|&(x, y)| imageproc::point::Point::new(x.round() as i32, y.round() as i32)).collect();
            if poly.first() != poly.last() {
                let c = Rgb(self.px(color));
                imageproc::drawing::draw_polygon_mut(&mut self.target(), &poly, c);
            }
        }
        self.circle((p.0 as i32, p.1 as i32), r, color);
        self.circle((q.0 as i32, q.1 as i32), r, color);
    }

    /// PySDK's `draw_text_label`: a filled caption box kept inside the image.
    fn draw_text_label(&mut self, (x1, y1, x2, y2): (i32, i32, i32, i32), color: [u8; 3], text: &str, line_width: i32, rotated: bool) -> Result<()> {
        let margin = 1;
        let (tw, th, base) = text_size(self.s, text);
        let (bw, bh) = (tw + 2 * margin, th + base + 2 * margin);
        let (w, h) = (self.frame.w as i32, self.frame.h as i32);
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
        self.put_text(tx, ty + th - 2, text_color, text)
    }

    /// cv2.blur of the box's pixels of the original image (kernel from the image size,
    /// reflect-101 borders inside the box).
    fn blur_box(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        let (w, h) = (self.frame.w, self.frame.h);
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
        // The original pixels: the frame while details go on a layer, else the copy.
        let (src, stride): (&[u8], usize) = match &self.original {
            Some(o) => (o, w as usize * 3),
            None => (&*self.frame.data, self.frame.stride),
        };
        // Separable box sums: rows first (reflect-101 inside the box), then columns.
        let mut rows = vec![0u32; bwu * bhu * 3];
        for y in 0..bh {
            let srow = &src[(y + by1) as usize * stride..][..w as usize * 3];
            for x in 0..bw {
                let mut sum = [0u32; 3];
                for dx in 0..kx {
                    let sx = (reflect(x + dx - ax, bw) + bx1) as usize;
                    let p = &srow[sx * 3..][..3];
                    for c in 0..3 {
                        sum[c] += p[c] as u32;
                    }
                }
                rows[(y as usize * bwu + x as usize) * 3..][..3].copy_from_slice(&sum);
            }
        }
        let n = (kx * ky) as u32;
        let mut t = self.target();
        for y in 0..bh {
            let out = &mut t.row_mut((y + by1) as u32)[bx1 as usize * 3..][..bwu * 3];
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
                out[x as usize * 3..][..3].copy_from_slice(&px);
            }
        }
    }

    /// The details blended onto the frame when they went on a layer (a segmentation layer,
    /// packed rows in the pixels' channel order, first at its own weight).
    fn finish(mut self, segm: Option<(Vec<u8>, f32)>) {
        let Some(layer) = self.layer.take() else { return };
        if let Some((l, a)) = segm {
            blend(&mut self.frame, &l, a);
        }
        blend(&mut self.frame, &layer, self.s.alpha);
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

/// Draw `results` on `image` (pixels of the original frame, RGB) into a new image.
pub fn draw(image: &RgbImage, results: &[Value], s: &Settings, labels: &BTreeMap<i64, String>) -> Result<RgbImage> {
    draw_with(image, results, &[], s, labels, None)
}

/// `draw` for every family: `tensors` are the result's tensors (a semantic class map may be
/// one), `geometry` the model's input placement (needed by run-length masks in model-input
/// coordinates and by semantic class maps). One copy of the frame is made (drawn on, or
/// extended by the band of classification lines).
pub fn draw_with(
    image: &RgbImage,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<RgbImage> {
    if image.data.len() != image.width as usize * image.height as usize * 3 {
        return Err(Error::invalid("overlay: pixel buffer size mismatch"));
    }
    if kind(results, geometry) == Kind::Classification {
        return draw_classification(image, results, s);
    }
    draw_owned(image.clone(), results, tensors, s, labels, geometry)
}

/// `draw_with` on a frame the caller gives away: drawn in its pixels (classification
/// results, whose lines go in a band under the image, on a larger copy).
pub fn draw_owned(
    image: RgbImage,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<RgbImage> {
    if image.data.len() != image.width as usize * image.height as usize * 3 {
        return Err(Error::invalid("overlay: pixel buffer size mismatch"));
    }
    if kind(results, geometry) == Kind::Classification {
        return draw_classification(&image, results, s);
    }
    let mut image = image;
    draw_into(&mut image.data, image.width, image.height, image.width as usize * 3, false, results, tensors, s, labels, geometry)?;
    Ok(image)
}

/// `results` drawn straight onto the caller's pixels, no copy made: `frame` holds `height`
/// rows of `width` RGB (or, with `bgr`, BGR) pixels `stride` bytes apart (at least
/// `stride * (height - 1) + 3 * width` bytes). The pixels come out as `draw_with`'s image
/// (in the same channel order). Classification results cannot be drawn in place (PySDK adds
/// a band under the image for their lines): they give an `Unsupported` error and leave the
/// pixels as they were, unless there is no line to draw.
#[allow(clippy::too_many_arguments)]
pub fn draw_into(
    frame: &mut [u8],
    width: u32,
    height: u32,
    stride: usize,
    bgr: bool,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<()> {
    let surface = Surface::new(frame, width, height, stride)?;
    match kind(results, geometry) {
        Kind::Semantic => draw_semantic(surface, bgr, results, tensors, s, geometry),
        Kind::Detection => draw_detections(surface, bgr, results, tensors, s, labels, geometry),
        Kind::Classification if classification_band(results, s) => Err(Error::unsupported(
            "overlay: classification results are drawn as text lines in a band added under the image, which cannot be drawn in place; draw them on a copy (dg_result_overlay_input)",
        )),
        Kind::Classification => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Semantic,
    Detection,
    Classification,
}

fn kind(results: &[Value], geometry: Option<&Geometry>) -> Kind {
    match geometry {
        Some(g) if g.semantic => Kind::Semantic,
        _ if is_detection_result(results) => Kind::Detection,
        _ => Kind::Classification,
    }
}

/// Does the model's results need `Geometry` to be drawn (masks, class maps)?
pub fn needs_geometry(results: &[Value], semantic: bool) -> bool {
    semantic || results.iter().any(|r| r.get("mask").is_some())
}

/// Class indices coloured with `lut(index)` (packed rows); index 0 stays black (nothing drawn).
fn colour_map(map: &masks::ClassMap, lut: impl Fn(u8) -> [u8; 3]) -> Vec<u8> {
    let mut layer = vec![0u8; map.ids.len() * 3];
    for (px, &id) in layer.chunks_exact_mut(3).zip(&map.ids) {
        if id != 0 {
            px.copy_from_slice(&lut(id));
        }
    }
    layer
}

fn swapped(c: [u8; 3], bgr: bool) -> [u8; 3] {
    if bgr {
        [c[2], c[1], c[0]]
    } else {
        c
    }
}

/// PySDK's `SegmentationResults.image_overlay`: the class map resized over the frame, each
/// class in `overlay_color[class]` (cycled), blended at `overlay_alpha` (0.5 when "auto").
fn draw_semantic(mut frame: Surface, bgr: bool, results: &[Value], tensors: &[Tensor], s: &Settings, g: Option<&Geometry>) -> Result<()> {
    let g = g.ok_or_else(|| Error::internal("overlay: semantic maps need the model's geometry"))?;
    let [r] = results else { return Err(Error::invalid(format!("Segmentation overlay: results must hold exactly one class map, not {}", results.len()))) };
    let map = masks::semantic(r, tensors, g, frame.w, frame.h)?;
    let mut layer = vec![0u8; map.ids.len() * 3];
    for (px, &id) in layer.chunks_exact_mut(3).zip(&map.ids) {
        px.copy_from_slice(&swapped(s.colors[id as usize % s.colors.len()], bgr));
    }
    let alpha = if s.alpha_auto { 0.5 } else { s.alpha };
    blend(&mut frame, &layer, alpha);
    Ok(())
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

fn draw_detections(
    frame: Surface,
    bgr: bool,
    results: &[Value],
    tensors: &[Tensor],
    s: &Settings,
    labels: &BTreeMap<i64, String>,
    geometry: Option<&Geometry>,
) -> Result<()> {
    let has_masks = results.iter().any(|r| r.get("mask").is_some());
    let mut d = Draw::new(frame, bgr, s, has_masks)?;
    let lw = s.line_width;
    let spacer = 3 * lw;
    let mut next = 0usize;
    let (iw, ih) = (d.frame.w, d.frame.h);
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
                d.draw_text_label(corners, color, &capt, lw, angle.is_some())?;
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
                    d.circle((p.0 as i32, p.1 as i32), radius, color);
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
                    d.draw_text_label((x + spacer, y - spacer, x + spacer, y + spacer), color, &capt, lw, false)?;
                }
            }
        }
        if let Some(m) = r.get("mask") {
            let map = mask_map.get_or_insert_with(|| masks::ClassMap { w: iw, h: ih, ids: vec![0; (iw * ih) as usize] });
            // PySDK's uint8 mask index: category_id % 256 + 1 (256 wraps to 0: not drawn).
            let id = ((r.get("category_id").and_then(Value::as_i64).unwrap_or(0).rem_euclid(256) + 1) % 256) as u8;
            masks::merge_instance(map, m, r.get("bbox"), id, geometry, tensors)?;
        }
    }
    // Masks go under the other details, in `overlay_color[category_id]` (cycled), at
    // `overlay_alpha` (0.5 when "auto").
    let segm = mask_map.map(|map| {
        let layer = colour_map(&map, |id| swapped(s.colors[(id as usize - 1) % s.colors.len()], bgr));
        (layer, if s.alpha_auto { 0.5 } else { s.alpha })
    });
    d.finish(segm);
    Ok(())
}

/// The text lines of classification results (label and/or probability).
fn classification_lines(results: &[Value], s: &Settings) -> Vec<String> {
    results
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
        .collect()
}

/// Do classification results add a band of text lines under the image?
fn classification_band(results: &[Value], s: &Settings) -> bool {
    (s.show_labels || s.show_probabilities) && !classification_lines(results, s).is_empty()
}

/// PySDK's `ClassificationResults.image_overlay`: the image extended by a band holding one
/// text line per result (label and/or probability), each in the next colour.
fn draw_classification(original: &RgbImage, results: &[Value], s: &Settings) -> Result<RgbImage> {
    let spacer = 3;
    if !(s.show_labels || s.show_probabilities) {
        return Ok(original.clone());
    }
    let lines = classification_lines(results, s);
    let (mut w, mut h) = (0, 0);
    for l in &lines {
        let (lw, lh, _) = text_size(s, l);
        w = w.max(2 * spacer + lw);
        h += spacer + lh;
    }
    if h > 0 {
        h += spacer;
    }
    let (ow, oh) = (original.width, original.height);
    let (nw, nh) = (ow.max(w as u32), oh + h as u32);
    let mut data = Vec::with_capacity(nw as usize * nh as usize * 3);
    let orow = ow as usize * 3;
    for row in original.data.chunks_exact(orow) {
        data.extend_from_slice(row);
        for _ in ow..nw {
            data.extend_from_slice(&s.fill);
        }
    }
    while data.len() < nw as usize * nh as usize * 3 {
        data.extend_from_slice(&s.fill);
    }
    let mut top = oh as i32;
    let mut d = Draw::new(Surface { data: &mut data, w: nw, h: nh, stride: nw as usize * 3 }, false, s, false)?;
    for (i, l) in lines.iter().enumerate() {
        let color = s.colors[i % s.colors.len()];
        let (_, th, _) = text_size(s, l);
        d.put_text(spacer, top + spacer + th - 2, color, l)?;
        top += spacer + th;
    }
    d.finish(None);
    Ok(RgbImage { width: nw, height: nh, data })
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

    /// The bench's frame: 1920x1080 with 20 captioned boxes.
    fn full_hd_20_boxes() -> (RgbImage, Vec<Value>, Settings) {
        let img = RgbImage { width: 1920, height: 1080, data: vec![90; 1920 * 1080 * 3] };
        let res: Vec<Value> = (0..20)
            .map(|i| json!({"bbox": [50.0 + 90.0 * i as f64, 100.0 + 40.0 * i as f64, 130.0 + 90.0 * i as f64, 220.0 + 40.0 * i as f64], "label": format!("class_{i}"), "score": 0.5, "category_id": i}))
            .collect();
        let s = Settings::from_properties(&Map::new(), &json!([[255, 255, 0], [0, 128, 0], [0, 0, 128]]), [0, 0, 0]);
        (img, res, s)
    }

    /// One 1920x1080 frame with 20 captioned boxes (run with --ignored to see the time), after
    /// one warm-up frame. DGZOO_OVERLAY_PATH: `copy` (default, `draw`: a new image), `inplace`
    /// (`draw_into` the same pixels) or `framecopy` (the copy of the frame alone);
    /// DGZOO_OVERLAY_N frames (default 5). For instruction counts, run it under callgrind with
    /// N = 1 and N = 11: a tenth of the difference is one frame.
    #[test]
    #[ignore]
    fn drawing_time_full_hd_20_boxes() {
        let (mut img, res, s) = full_hd_20_boxes();
        let path = std::env::var("DGZOO_OVERLAY_PATH").unwrap_or_else(|_| "copy".into());
        let n: usize = std::env::var("DGZOO_OVERLAY_N").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        let frame = |img: &mut RgbImage| match path.as_str() {
            "inplace" => draw_into(&mut img.data, 1920, 1080, 1920 * 3, false, &res, &[], &s, &BTreeMap::new(), None).unwrap(),
            "framecopy" => drop(std::hint::black_box(img.clone())),
            _ => drop(std::hint::black_box(draw(img, &res, &s, &BTreeMap::new()).unwrap())),
        };
        frame(&mut img);
        let t = std::time::Instant::now();
        for _ in 0..n {
            frame(&mut img);
        }
        eprintln!("overlay drawing ({path}), 1920x1080, 20 boxes: {:.3} ms", t.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64);
    }

    /// Captions from the glyph cache are imageproc's `draw_text_mut` pixel for pixel, on a
    /// first and on a cached drawing, at several sizes and across the image's edges.
    #[test]
    fn cached_glyphs_are_imageprocs_text() {
        use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
        let font = FontRef::try_from_slice(include_bytes!("../assets/fonts/DejaVuSans.ttf")).unwrap();
        let (w, h) = (160u32, 40u32);
        let base: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        for text in ["person: 0.87", "class_12", "AVWay Tj", "g_y,", " ", "", "naïve €"] {
            for (fs, x, y) in [(1.0f32, 3, 20), (1.7, -4, 10), (0.6, 150, 38), (2.5, 10, 5)] {
                for round in 0..2 {
                    let s = Settings { font_scale: fs, ..Settings::from_properties(&Map::new(), &json!([255, 0, 0]), [0, 0, 0]) };
                    let px = FONT_PX * fs;
                    let want = hershey_width(text, fs);
                    // The old drawing: imageproc with the stretched scale.
                    let (tw, _) = imageproc::drawing::text_size(PxScale::from(px), &font, text);
                    let sx = if tw > 0 && want > 0 { px * want as f32 / tw as f32 } else { px };
                    let scale = PxScale { x: sx, y: px };
                    let ascent = font.as_scaled(scale).ascent();
                    let mut theirs = image::ImageBuffer::<Rgb<u8>, Vec<u8>>::from_raw(w, h, base.clone()).unwrap();
                    imageproc::drawing::draw_text_mut(&mut theirs, Rgb([20, 200, 90]), x, y - ascent.round() as i32, scale, &font, text);
                    let mut ours = base.clone();
                    let mut d = Draw::new(Surface::new(&mut ours, w, h, w as usize * 3).unwrap(), false, &s, false).unwrap();
                    d.put_text(x, y, [20, 200, 90], text).unwrap();
                    assert!(ours == theirs.into_raw(), "{text:?} at scale {fs}, ({x}, {y}), round {round}");
                }
            }
        }
    }

    /// A frame with a gradient, so blends and blurs show.
    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage { width: w, height: h, data: (0..w * h * 3).map(|i| ((i / 3 % w) * 3 + (i / 3 / w) * 5 + i % 3 * 40) as u8).collect() }
    }

    /// `draw_into` on RGB and BGR pixels with a padded stride gives `draw_with`'s pixels.
    fn assert_in_place_matches(img: &RgbImage, res: &[Value], s: &Settings, g: Option<&Geometry>) {
        let copy = draw_with(img, res, &[], s, &BTreeMap::new(), g).unwrap();
        assert_eq!((copy.width, copy.height), (img.width, img.height));
        assert_ne!(copy.data, img.data, "nothing drawn");
        let (w, h) = (img.width as usize, img.height as usize);
        for bgr in [false, true] {
            let stride = w * 3 + 5;
            let mut buf = vec![7u8; stride * (h - 1) + w * 3];
            for y in 0..h {
                for x in 0..w {
                    let p = &img.data[(y * w + x) * 3..][..3];
                    buf[y * stride + x * 3..][..3].copy_from_slice(&if bgr { [p[2], p[1], p[0]] } else { [p[0], p[1], p[2]] });
                }
            }
            draw_into(&mut buf, w as u32, h as u32, stride, bgr, res, &[], s, &BTreeMap::new(), g).unwrap();
            for y in 0..h {
                for x in 0..w {
                    let p = &copy.data[(y * w + x) * 3..][..3];
                    let want = if bgr { [p[2], p[1], p[0]] } else { [p[0], p[1], p[2]] };
                    assert_eq!(buf[y * stride + x * 3..][..3], want, "pixel ({x}, {y}), bgr {bgr}");
                }
                if y + 1 < h {
                    assert_eq!(buf[y * stride + w * 3..(y + 1) * stride], [7; 5], "padding of row {y}");
                }
            }
        }
    }

    #[test]
    fn in_place_is_the_copying_path_pixel_for_pixel() {
        let img = gradient(120, 90);
        let colors = json!([[255, 255, 0], [0, 128, 0], [0, 0, 128], [200, 30, 70]]);
        let plain = Settings::from_properties(&Map::new(), &colors, [0, 0, 0]);
        // Boxes (one leaving the frame), an oriented box, captions with probabilities.
        let boxes = vec![
            json!({"bbox": [10.0, 30.0, 50.0, 70.0], "label": "cat", "score": 0.9, "category_id": 0}),
            json!({"bbox": [80.0, 2.0, 130.0, 40.0], "label": "dog", "score": 0.25, "category_id": 3}),
            json!({"bbox": [40.0, 40.0, 90.0, 60.0], "label": "car", "score": 0.5, "category_id": 1, "angle": 0.4}),
        ];
        let mut props = Map::new();
        props.insert("overlay_show_probabilities".into(), json!(true));
        assert_in_place_matches(&img, &boxes, &Settings::from_properties(&props, &colors, [0, 0, 0]), None);
        // Alpha blending and blurred boxes.
        props.insert("overlay_alpha".into(), json!(0.4));
        assert_in_place_matches(&img, &boxes, &Settings::from_properties(&props, &colors, [0, 0, 0]), None);
        props.remove("overlay_alpha");
        props.insert("overlay_blur".into(), json!("all"));
        assert_in_place_matches(&img, &boxes, &Settings::from_properties(&props, &colors, [0, 0, 0]), None);
        // Landmarks with connections and captions.
        let lms = vec![json!({"score": 0.8, "landmarks": [
            {"landmark": [20.0, 20.0], "connect": [1], "label": "wrist", "score": 0.9},
            {"landmark": [60.0, 50.0], "connect": [2]},
            {"landmark": [100.0, 80.0], "connect": []}
        ]})];
        assert_in_place_matches(&img, &lms, &plain, None);
        // Instance masks (image-coordinate arrays and a run-length mask in model coordinates).
        use base64::Engine as _;
        let rle: Vec<u8> = [0u32, 1, 0, 700, 900, 2000].iter().flat_map(|w| w.to_le_bytes()).collect();
        let masks = vec![
            json!({"bbox": [5.0, 5.0, 40.0, 30.0], "label": "a", "category_id": 2, "mask": {"x_min": 5, "y_min": 5, "data": [[0, 1, 1], [1, 1, 0]]}}),
            json!({"bbox": [30.0, 20.0, 100.0, 80.0], "label": "b", "category_id": 1, "mask": {"data": base64::engine::general_purpose::STANDARD.encode(rle)}}),
        ];
        let g =
            Geometry { model_w: 60, model_h: 45, converter: image_ops::fit_converter(120, 90, 60, 45, image_ops::PadMethod::Letterbox, 1.0), semantic: false };
        assert_in_place_matches(&img, &masks, &plain, Some(&g));
        // Semantic class maps.
        let ids: Vec<Vec<u8>> = (0..45).map(|y| (0..60).map(|x| ((x / 20 + y / 15) % 3) as u8).collect()).collect();
        let g = Geometry { semantic: true, ..g };
        assert_in_place_matches(&img, &[json!({"data": ids})], &plain, Some(&g));
    }

    /// The converter of in-place overlays (sizes only) is `fit`'s (which resizes the pixels).
    #[test]
    fn fit_converter_is_fits() {
        use image_ops::PadMethod::*;
        for pad in [Stretch, Letterbox, CropFirst, CropLast] {
            for (iw, ih, w, h, cp) in
                [(120, 90, 60, 45, 1.0), (90, 120, 64, 64, 0.875), (64, 64, 64, 64, 1.0), (100, 30, 40, 40, 0.5), (33, 77, 50, 20, 2.0), (7, 5, 64, 48, 0.9)]
            {
                let img = gradient(iw, ih);
                let fit = image_ops::fit(&img, w, h, pad, cp, image_ops::ResizeMethod::Bilinear, [0, 0, 0]).unwrap();
                assert_eq!(image_ops::fit_converter(iw, ih, w, h, pad, cp), fit.converter, "{pad:?} {iw}x{ih} -> {w}x{h} at {cp}");
            }
        }
    }

    /// Threads drawing at once share the glyph cache and get the pixels one thread gets.
    #[test]
    fn threads_share_the_glyph_cache() {
        let img = gradient(400, 300);
        let s = Settings { font_scale: 1.3, ..Settings::from_properties(&Map::new(), &json!([[255, 255, 0], [0, 128, 0]]), [0, 0, 0]) };
        let res: Vec<Value> = (0..12)
            .map(|i| json!({"bbox": [10.0 + 30.0 * i as f64, 40.0 + 20.0 * i as f64, 40.0 + 30.0 * i as f64, 60.0 + 20.0 * i as f64], "label": format!("thread cache {i}"), "score": 0.5, "category_id": i}))
            .collect();
        // Cold glyphs (no other test draws at this size), rasterised by whichever thread comes first.
        let outs: Vec<RgbImage> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4).map(|_| sc.spawn(|| (0..5).map(|_| draw(&img, &res, &s, &BTreeMap::new()).unwrap()).collect::<Vec<_>>())).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let want = draw(&img, &res, &s, &BTreeMap::new()).unwrap();
        assert_ne!(want, img);
        assert!(outs.iter().all(|o| *o == want));
    }

    #[test]
    fn in_place_refuses_classification_lines_and_bad_buffers() {
        let img = gradient(40, 30);
        let s = Settings::from_properties(&Map::new(), &json!([255, 0, 0]), [0, 0, 0]);
        let mut buf = img.data.clone();
        let cls = [json!({"label": "cat", "score": 0.9, "category_id": 3})];
        let e = draw_into(&mut buf, 40, 30, 120, false, &cls, &[], &s, &BTreeMap::new(), None).unwrap_err();
        assert_eq!(e.code, crate::error::Code::Unsupported, "{}", e.message);
        assert!(e.message.contains("band"), "{}", e.message);
        assert_eq!(buf, img.data);
        // No results: nothing to draw, in place as on a copy.
        draw_into(&mut buf, 40, 30, 120, false, &[], &[], &s, &BTreeMap::new(), None).unwrap();
        assert_eq!(buf, img.data);
        assert_eq!(draw(&img, &[], &s, &BTreeMap::new()).unwrap(), img);
        // Short buffers, small strides, empty sizes.
        for (len, w, h, stride) in [(40 * 30 * 3 - 1, 40, 30, 120), (40 * 30 * 3, 40, 30, 119), (0, 0, 0, 0), (10, 0, 3, 0)] {
            let mut b = vec![0u8; len];
            let e = draw_into(&mut b, w, h, stride, false, &[], &[], &s, &BTreeMap::new(), None).unwrap_err();
            assert_eq!(e.code, crate::error::Code::InvalidArgument, "{len} {w}x{h} {stride}: {}", e.message);
        }
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

//! Caption text: DejaVu Sans laid out and blended exactly as imageproc's `draw_text_mut` does
//! it (the same pen positions, kerning, glyph bounds and `weighted_sum` blend, truncated to
//! u8), with each glyph's coverage rasterised once and kept in a bounded process-wide cache.
//!
//! A glyph's coverage depends on the font size (x and y scale), the glyph and the fractional
//! part of its pen position only (ab_glyph rounds its bounds with that fraction and places the
//! outline at it); the whole part of the pen position just moves it. So the key is (x scale,
//! y scale, glyph id, fractional pen x) as bits, and a cached glyph gives the very pixels a
//! fresh rasterisation would. Captions repeat from frame to frame (and share prefixes such as
//! "person: 0."); whole texts are kept laid out too (their glyphs' masks and places), so
//! after the first frames drawing a caption costs one look-up and the blend of its glyphs.
use super::Surface;
use crate::error::{Error, Result};
use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

static FONT_DATA: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font, parsed once per process.
static FONT: Lazy<std::result::Result<FontRef<'static>, String>> = Lazy::new(|| FontRef::try_from_slice(FONT_DATA).map_err(|e| e.to_string()));

fn font() -> Result<&'static FontRef<'static>> {
    FONT.as_ref().map_err(|e| Error::internal(format!("overlay font: {e}")))
}

/// One glyph's coverage: `w`-wide rows of values in 0..=1; its top-left pixel is `left`
/// pixels right of the whole pixel of the pen position and `top` pixels below the text's top.
/// `spans[row]` is the range of the row's non-zero values.
struct Mask {
    left: i32,
    top: i32,
    w: usize,
    cov: Vec<f32>,
    spans: Vec<(usize, usize)>,
}

/// (x scale, y scale, glyph id, fractional pen x), floats as bits.
type Key = (u32, u32, u16, u32);

/// A glyph of a laid-out text: its mask's top-left pixel from the text's baseline origin.
struct Placed {
    dx: i32,
    dy: i32,
    mask: Arc<Mask>,
}

/// Laid-out texts of one size, by text.
type Texts = HashMap<String, Arc<[Placed]>>;

/// The cache holds at most this many coverage values (4 MiB; a 15 px glyph has ~150) and
/// this many laid-out texts: past either, that part is emptied and refills with what is in use.
const MAX_VALUES: usize = 1 << 20;
const MAX_TEXTS: usize = 4096;

#[derive(Default)]
struct Cache {
    /// `None`: the glyph has no outline (a space).
    masks: HashMap<Key, Option<Arc<Mask>>>,
    values: usize,
    /// Whether a glyph has an outline (size independent).
    outlined: HashMap<u16, bool>,
    /// Texts laid out, by (glyph height bits, width wanted), then text.
    texts: HashMap<(u32, i32), Texts>,
    n_texts: usize,
}

static CACHE: Lazy<Mutex<Cache>> = Lazy::new(Default::default);

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // A panic while holding the lock leaves whole entries only: the cache stays usable.
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    fn outlined(&mut self, font: &FontRef<'static>, id: GlyphId) -> bool {
        *self.outlined.entry(id.0).or_insert_with(|| font.outline(id).is_some())
    }

    fn mask(&mut self, key: Key, make: impl FnOnce() -> Option<Mask>) -> Option<Arc<Mask>> {
        if let Some(m) = self.masks.get(&key) {
            return m.clone();
        }
        let m = make().map(Arc::new);
        let n = m.as_ref().map_or(0, |m| m.cov.len());
        if self.values + n > MAX_VALUES {
            self.masks.clear();
            self.values = 0;
        }
        self.values += n;
        self.masks.insert(key, m.clone());
        m
    }

    /// `text` laid out `px` pixels high and `want` wide (from the cache, or laid out now).
    fn text(&mut self, font: &FontRef<'static>, px: f32, want: i32, text: &str) -> Arc<[Placed]> {
        let k = (px.to_bits(), want);
        if let Some(p) = self.texts.get(&k).and_then(|m| m.get(text)) {
            return p.clone();
        }
        let placed: Arc<[Placed]> = self.lay_out(font, px, want, text).into();
        if self.n_texts >= MAX_TEXTS {
            self.texts.clear();
            self.n_texts = 0;
        }
        self.n_texts += 1;
        self.texts.entry(k).or_default().insert(text.to_string(), placed.clone());
        placed
    }

    /// imageproc's `layout_glyphs` and `draw_text_mut` placement: each glyph at the pen
    /// position, the pen moved by its advance and, for glyphs with outlines, by the kerning
    /// with the previous such glyph (as `kern(glyph, previous)`: imageproc's argument order).
    fn lay_out(&mut self, font: &FontRef<'static>, px: f32, want: i32, text: &str) -> Vec<Placed> {
        let scale = self.scale(font, px, want, text);
        let sf = font.as_scaled(scale);
        let ascent = sf.ascent();
        let top = -(ascent.round() as i32);
        let (mut pen, mut last, mut out) = (0f32, None, Vec::new());
        for c in text.chars() {
            let id = sf.glyph_id(c);
            let at = pen;
            pen += sf.h_advance(id);
            let key = (scale.x.to_bits(), scale.y.to_bits(), id.0, at.fract().to_bits());
            if let Some(m) = self.mask(key, || rasterise(font, id, scale, at.fract(), ascent)) {
                if let Some(l) = last {
                    pen += sf.kern(id, l);
                }
                last = Some(id);
                out.push(Placed { dx: at.trunc() as i32 + m.left, dy: top + m.top, mask: m });
            }
        }
        out
    }

    /// imageproc's `text_size(scale, font, text).0`: advances, plus kerning between glyphs
    /// that have outlines.
    fn layout_width(&mut self, font: &FontRef<'static>, scale: PxScale, text: &str) -> u32 {
        let sf = font.as_scaled(scale);
        let (mut w, mut last) = (0f32, None);
        for c in text.chars() {
            let id = sf.glyph_id(c);
            w += sf.h_advance(id);
            if self.outlined(font, id) {
                if let Some(l) = last {
                    w += sf.kern(id, l);
                }
                last = Some(id);
            }
        }
        w as u32
    }

    /// `px` pixels high, stretched to `want` pixels wide (OpenCV's Hershey width of `text`).
    fn scale(&mut self, font: &FontRef<'static>, px: f32, want: i32, text: &str) -> PxScale {
        let w = self.layout_width(font, PxScale::from(px), text);
        let x = if w > 0 && want > 0 { px * want as f32 / w as f32 } else { px };
        PxScale { x, y: px }
    }
}

/// Coverage of glyph `id` at `scale` with its pen at (`fx`, `ascent`), `fx` in [0, 1).
fn rasterise(font: &FontRef<'static>, id: GlyphId, scale: PxScale, fx: f32, ascent: f32) -> Option<Mask> {
    let g = font.outline_glyph(id.with_scale_and_position(scale, point(fx, ascent)))?;
    let bb = g.px_bounds();
    let (w, h) = (bb.width() as usize, bb.height() as usize);
    let mut cov = vec![0f32; w * h];
    g.draw(|x, y, v| {
        if let Some(c) = cov.get_mut(y as usize * w + x as usize) {
            *c = v.clamp(0.0, 1.0);
        }
    });
    let spans = if w == 0 {
        Vec::new()
    } else {
        cov.chunks_exact(w)
            .map(|row| match (row.iter().position(|&v| v > 0.0), row.iter().rposition(|&v| v > 0.0)) {
                (Some(a), Some(b)) => (a, b + 1),
                _ => (0, 0),
            })
            .collect()
    };
    Some(Mask { left: bb.min.x.round() as i32, top: bb.min.y.round() as i32, w, cov, spans })
}

/// Checks that the font parses.
pub(super) fn check_font() -> Result<()> {
    font().map(|_| ())
}

/// `text` `px` pixels high and `want` pixels wide in `color` (in the surface's channel
/// order) with its baseline origin at (`x`, `y`): imageproc's
/// `draw_text_mut(surface, color, x, y - round(ascent), scale, font, text)`, pixel for pixel.
pub(super) fn put_text(surface: &mut Surface, x: i32, y: i32, color: [u8; 3], text: &str, px: f32, want: i32) -> Result<()> {
    let font = font()?;
    // The lock is held for the look-up (or the layout) only, not for the blend.
    let placed = lock().text(font, px, want, text);
    for g in placed.iter() {
        blend(surface, &g.mask, x + g.dx, y + g.dy, color);
    }
    Ok(())
}

/// imageproc's per-pixel `weighted_sum(pixel, color, 1 - v, v)` over the mask's pixels inside
/// the surface: a pixel with no coverage keeps its value exactly (skipped), a fully covered
/// one becomes the colour exactly (`p * 0 + c * 1`).
fn blend(surface: &mut Surface, m: &Mask, x0: i32, y0: i32, color: [u8; 3]) {
    if m.w == 0 {
        return;
    }
    let (sw, sh) = (surface.w as i64, surface.h as i64);
    let (gx0, gx1) = ((-(x0 as i64)).clamp(0, m.w as i64) as usize, (sw - x0 as i64).clamp(0, m.w as i64) as usize);
    let c = color.map(|v| v as f32);
    for (gy, (cov, &(a, b))) in m.cov.chunks_exact(m.w).zip(&m.spans).enumerate() {
        let iy = y0 as i64 + gy as i64;
        let (a, b) = (a.max(gx0), b.min(gx1));
        if a >= b || iy < 0 || iy >= sh {
            continue;
        }
        let start = (x0 as i64 + a as i64) as usize * 3;
        let row = &mut surface.row_mut(iy as u32)[start..start + (b - a) * 3];
        for (p, &v) in row.chunks_exact_mut(3).zip(&cov[a..b]) {
            if v >= 1.0 {
                p.copy_from_slice(&color);
            } else if v > 0.0 {
                // `as u8` truncates and saturates, as imageproc's Clamp does.
                let k = 1.0 - v;
                p[0] = (p[0] as f32 * k + c[0] * v) as u8;
                p[1] = (p[1] as f32 * k + c[1] * v) as u8;
                p[2] = (p[2] as f32 * k + c[2] * v) as u8;
            }
        }
    }
}

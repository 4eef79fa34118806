//! Image decoding, OpenCV-exact resizing, pad/crop ("fit") and coordinate converters.
//!
//! PySDK's default image backend ("opencv") reads files with `cv2.imread` (libjpeg-turbo for
//! JPEG), then resizes and pads them to the model size with `cv2.resize` (`_preprocessor.py`,
//! spec results-and-properties.md §3.2–3.3). Model outputs only agree with PySDK's to 1e-4 when
//! the pixels fed to the model are the same bit for bit, so this module reproduces the exact
//! integer arithmetic of opencv-python 4.14 on x86-64:
//!
//! * JPEG is decoded by libjpeg-turbo's own decoder code (through `mozjpeg-sys`, the libjpeg-turbo
//!   derived decoder built from source): ISLOW IDCT, fancy upsampling, libjpeg's YCbCr tables,
//!   exactly as OpenCV calls it, plus OpenCV's CMYK conversion and EXIF orientation.
//! * `resize` re-implements `cv::resize` for 8-bit 3-channel images: the fixed-point
//!   (11-bit coefficient) INTER_LINEAR with its SIMD-compatible vertical rounding, the
//!   2x-downscale INTER_AREA shortcut, INTER_AREA (fast integer and general float paths),
//!   INTER_NEAREST, and OpenCV's native INTER_CUBIC / INTER_LANCZOS4.
//!   Note: opencv-python with IPP routes 8-bit INTER_CUBIC through Intel IPP, whose rounding
//!   differs from OpenCV's own code by at most 1 on a few pixels; see [`ResizeMethod::Bicubic`].
//! * `fit` implements PySDK's four pad methods, and [`CoordConverter`] its coordinate lambdas.
use std::fmt;

use crate::{Error, Result};

/// Largest accepted width or height of a decoded or raw image (libjpeg's own limit).
pub const MAX_SIDE: u32 = 65_500;
/// Largest accepted number of pixels of a decoded or raw image: 64 Mpixel (8192 x 8192, a
/// 192 MiB RGB buffer). Checked from the file header, before any pixel memory is allocated, so
/// an "image bomb" (a small file declaring a huge size) costs nothing.
pub const MAX_PIXELS: u64 = 1 << 26;
/// Largest working memory a decoder may allocate for one image besides its RGB output
/// (libjpeg's coefficient buffers of progressive JPEGs, the `image` crate's 16-bit RGBA
/// buffers): 512 MiB. A file that would need more is refused with an error.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// An 8-bit RGB image: interleaved R,G,B, row-major, rows packed without padding.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RgbImage({}x{}, {} bytes)", self.width, self.height, self.data.len())
    }
}

impl RgbImage {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        RgbImage { width, height, data: vec![0; width as usize * height as usize * 3] }
    }

    /// An image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(n * 3);
        for _ in 0..n {
            data.extend_from_slice(&rgb);
        }
        RgbImage { width, height, data }
    }

    /// True when the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// The pixel at (x, y); panics when out of range.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(x < self.width && y < self.height, "pixel ({x},{y}) outside {}x{}", self.width, self.height);
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// The pixels as B,G,R (the order OpenCV keeps them in).
    pub fn to_bgr(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        for px in out.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        out
    }

    /// The sub-image `[left, left+width) x [top, top+height)`, clipped to the image the way numpy
    /// slicing with non-negative bounds clips it.
    pub fn crop(&self, left: u32, top: u32, width: u32, height: u32) -> RgbImage {
        let x0 = left.min(self.width) as usize;
        let y0 = top.min(self.height) as usize;
        let x1 = (left as u64 + width as u64).min(self.width as u64) as usize;
        let y1 = (top as u64 + height as u64).min(self.height as u64) as usize;
        let (cw, ch) = (x1 - x0, y1 - y0);
        let stride = self.width as usize * 3;
        let mut data = Vec::with_capacity(cw * ch * 3);
        for y in y0..y1 {
            data.extend_from_slice(&self.data[y * stride + x0 * 3..y * stride + x1 * 3]);
        }
        RgbImage { width: cw as u32, height: ch as u32, data }
    }

    fn row(&self, y: usize) -> &[u8] {
        let stride = self.width as usize * 3;
        &self.data[y * stride..(y + 1) * stride]
    }
}

pub(crate) fn check_dims(width: u64, height: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!("invalid image size {width}x{height}: width and height must be positive")));
    }
    if width > MAX_SIDE as u64 || height > MAX_SIDE as u64 || width * height > MAX_PIXELS {
        return Err(Error::invalid(format!("image size {width}x{height} is too large (at most {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels in all)")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// The width and height [`decode`] would return for these bytes (EXIF orientation of JPEGs
/// applied), read from the header only: nothing is decoded and no pixel memory is allocated.
///
/// Errors as [`decode`] does for an empty input, an unknown format, an unreadable header or a
/// size above [`MAX_SIDE`] / [`MAX_PIXELS`].
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let (w, h) = declared_dimensions(bytes)?;
    check_dims(w as u64, h as u64)?;
    Ok((w, h))
}

/// [`dimensions`] without the size limits: the width and height the header declares (for
/// comparing a frame with the size a model expects before anything is decoded).
pub fn declared_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    if bytes.is_empty() {
        return Err(Error::invalid("cannot decode image: the data is empty"));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (w, h) = jpeg::dimensions(bytes)?;
        Ok(match jpeg_exif_orientation(bytes) {
            Some(5..=8) => (h, w),
            _ => (w, h),
        })
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        header_dimensions(bytes, image::ImageFormat::Png, "PNG")
    } else if bytes.starts_with(b"BM") {
        header_dimensions(bytes, image::ImageFormat::Bmp, "BMP")
    } else {
        Err(unknown_format(bytes))
    }
}

fn unknown_format(bytes: &[u8]) -> Error {
    Error::invalid(format!(
        "cannot decode image: unknown format (expected JPEG, PNG or BMP; data starts with {})",
        bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    ))
}

fn header_dimensions(bytes: &[u8], format: image::ImageFormat, name: &str) -> Result<(u32, u32)> {
    image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| Error::invalid(format!("cannot decode {name} image: {e}")))
}

/// Decodes a JPEG, PNG or BMP file into RGB, with the pixels `cv2.imread(path)` (IMREAD_COLOR)
/// gives, channel order aside: EXIF orientation of JPEGs applied, alpha dropped, grey replicated,
/// 16-bit samples reduced to their high byte.
///
/// Errors (all `InvalidArgument`): empty input, a format other than JPEG/PNG/BMP, corrupt or
/// truncated data (a cut JPEG is an error, not a grey-filled image), or an image larger than
/// [`MAX_SIDE`] / [`MAX_PIXELS`] (checked from the header, before any pixel memory is allocated).
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::invalid("cannot decode image: the data is empty"));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (mut img, orientation) = jpeg::decode(bytes)?;
        if let Some(o) = orientation {
            img = apply_exif_orientation(&img, o);
        }
        Ok(img)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_with_image_crate(bytes, image::ImageFormat::Png, "PNG")
    } else if bytes.starts_with(b"BM") {
        decode_with_image_crate(bytes, image::ImageFormat::Bmp, "BMP")
    } else {
        Err(unknown_format(bytes))
    }
}

fn decode_with_image_crate(bytes: &[u8], format: image::ImageFormat, name: &str) -> Result<RgbImage> {
    use image::DynamicImage as D;
    let (w, h) = header_dimensions(bytes, format, name)?;
    check_dims(w as u64, h as u64)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut r = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    r.limits(limits);
    let img = r.decode().map_err(|e| Error::invalid(format!("cannot decode {name} image: {e}")))?;
    let (width, height) = (img.width(), img.height());
    // OpenCV (libpng with png_set_strip_16 / strip_alpha / gray_to_rgb) keeps the high byte of
    // 16-bit samples and drops alpha; the `image` crate's own conversion would round instead.
    let data: Vec<u8> = match img {
        D::ImageLuma8(b) => b.into_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        D::ImageLumaA8(b) => b.into_raw().chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        D::ImageRgb8(b) => b.into_raw(),
        D::ImageRgba8(b) => b.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        D::ImageLuma16(b) => b.into_raw().iter().flat_map(|&v| [(v >> 8) as u8; 3]).collect(),
        D::ImageLumaA16(b) => b.into_raw().chunks_exact(2).flat_map(|p| [(p[0] >> 8) as u8; 3]).collect(),
        D::ImageRgb16(b) => b.into_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        D::ImageRgba16(b) => b.into_raw().chunks_exact(4).flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]).collect(),
        other => other.to_rgb8().into_raw(),
    };
    if data.len() != width as usize * height as usize * 3 {
        return Err(Error::internal(format!("{name} decoder returned {} bytes for {width}x{height}", data.len())));
    }
    Ok(RgbImage { width, height, data })
}

/// Applies an EXIF orientation (1..=8) the way OpenCV's `ApplyExifOrientation` does
/// (flip / transpose); other values leave the image as it is.
pub fn apply_exif_orientation(img: &RgbImage, orientation: u16) -> RgbImage {
    if !(2..=8).contains(&orientation) || img.is_empty() {
        return img.clone();
    }
    let (w, h) = (img.width as usize, img.height as usize);
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut data = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x),
            };
            let s = (sy * w + sx) * 3;
            let d = (y * ow + x) * 3;
            data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    RgbImage { width: ow as u32, height: oh as u32, data }
}

/// The EXIF orientation tag of a JPEG (first APP1 "Exif" segment before the first scan).
fn jpeg_exif_orientation(bytes: &[u8]) -> Option<u16> {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if len < 2 || i + 2 + len > bytes.len() {
            return None;
        }
        let seg = &bytes[i + 4..i + 2 + len];
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return tiff_orientation(&seg[6..]);
        }
        i += 2 + len;
    }
    None
}

fn tiff_orientation(t: &[u8]) -> Option<u16> {
    if t.len() < 8 {
        return None;
    }
    let le = match &t[0..2] {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let r16 = |p: usize| -> Option<u16> {
        let b = t.get(p..p + 2)?;
        Some(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) })
    };
    let r32 = |p: usize| -> Option<u32> {
        let b = t.get(p..p + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    };
    if r16(2)? != 42 {
        return None;
    }
    let ifd = r32(4)? as usize;
    let n = r16(ifd)? as usize;
    for e in 0..n {
        let p = ifd + 2 + e * 12;
        if r16(p)? == 0x0112 {
            return match r16(p + 2)? {
                3 => r16(p + 8),
                4 => r32(p + 8).map(|v| v.min(u16::MAX as u32) as u16),
                _ => None,
            };
        }
    }
    None
}

mod jpeg {
    //! JPEG decoding through libjpeg(-turbo)'s C decoder, set up as OpenCV sets it up.
    use super::{check_dims, jpeg_exif_orientation, RgbImage, MAX_DECODE_BYTES};
    use crate::{Error, Result};
    use mozjpeg_sys::*;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

    /// Unwinding payload carrying libjpeg's message out of the C code.
    struct Failure(String);

    /// Warnings that mean pixel data was lost: these are errors for us (libjpeg itself would
    /// go on and fill the missing part with grey). Benign ones (extraneous bytes, odd
    /// JFIF/Adobe markers) are let through, as OpenCV lets them through.
    const FATAL_WARNINGS: [c_int; 4] = [JWRN_JPEG_EOF as c_int, JWRN_HIT_MARKER as c_int, JWRN_HUFF_BAD_CODE as c_int, JWRN_MUST_RESYNC as c_int];

    /// # Safety
    /// `cinfo.err` must point at a live, initialised libjpeg error manager.
    unsafe fn message(cinfo: &mut jpeg_common_struct) -> String {
        // SAFETY: libjpeg calls this (through the callbacks below) with a live `cinfo` whose
        // `err` points at its error manager; `format_message` writes at most JMSG_LENGTH_MAX
        // (200) bytes into `buf`, and the transmute only changes how the buffer argument is typed.
        unsafe {
            let mut buf = [0u8; 200];
            if let Some(f) = (*cinfo.err).format_message {
                // The binding declares the buffer as a shared array; libjpeg writes at most
                // JMSG_LENGTH_MAX (200) bytes into it.
                let f: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) = std::mem::transmute(f);
                f(cinfo, buf.as_mut_ptr());
            }
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
    }

    unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
        // SAFETY: libjpeg calls this with its own live `cinfo` (see `message`).
        unsafe {
            let msg = message(cinfo);
            resume_unwind(Box::new(Failure(msg)));
        }
    }

    unsafe extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
        // SAFETY: libjpeg calls this with its own live `cinfo`, whose `err` is our error manager.
        unsafe {
            if level >= 0 {
                return; // trace messages
            }
            let err = &mut *cinfo.err;
            err.num_warnings += 1;
            if FATAL_WARNINGS.contains(&err.msg_code) {
                let msg = message(cinfo);
                resume_unwind(Box::new(Failure(msg)));
            }
        }
    }

    struct Decompressor {
        cinfo: Box<jpeg_decompress_struct>,
        _err: Box<jpeg_error_mgr>,
    }

    impl Drop for Decompressor {
        fn drop(&mut self) {
            // SAFETY: `cinfo` was set up by `jpeg_create_decompress` and is destroyed once, here;
            // its error manager (`_err`) is still alive (fields drop after this body).
            unsafe { jpeg_destroy_decompress(&mut self.cinfo) };
        }
    }

    /// Runs `f` with libjpeg errors (which unwind out of the C code) turned into `Err`.
    fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(payload) => match payload.downcast::<Failure>() {
                Ok(f) => Err(Error::invalid(format!("cannot decode JPEG image: {}", f.0))),
                Err(_) => Err(Error::internal("JPEG decoder panicked")),
            },
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<(RgbImage, Option<u16>)> {
        // SAFETY: `bytes` outlives the decompressor, which `decode_unguarded` drops before
        // returning; libjpeg errors unwind to `guarded` through `C-unwind` callbacks.
        guarded(|| unsafe { decode_unguarded(bytes) })
    }

    /// Width and height from the JPEG header (SOF marker) alone: no scan data is decoded.
    pub(super) fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
        // SAFETY: as in `decode`; only `jpeg_read_header` runs, on a decompressor dropped here.
        guarded(|| unsafe {
            let mut d = Decompressor::new(bytes);
            let c = &mut *d.cinfo;
            jpeg_read_header(c, 1);
            Ok((c.image_width, c.image_height))
        })
    }

    impl Decompressor {
        /// A decompressor reading `bytes`, with our error handlers and a memory cap of
        /// [`MAX_DECODE_BYTES`] (libjpeg refuses what would need more instead of allocating it).
        /// # Safety
        /// `bytes` must outlive the returned decompressor, and libjpeg errors must be caught
        /// (`guarded`): they unwind out of the C code.
        unsafe fn new(bytes: &[u8]) -> Decompressor {
            // SAFETY: zeroed structs are what libjpeg expects before `jpeg_std_error`/`jpeg_create_decompress`
            // initialise them; both live in boxes that the returned `Decompressor` owns, so the
            // `err` pointer stays valid; `mem` is set by `jpeg_create_decompress`; the caller keeps
            // `bytes` alive (see `# Safety`).
            unsafe {
                let mut err: Box<jpeg_error_mgr> = Box::new(std::mem::zeroed());
                jpeg_std_error(&mut err);
                err.error_exit = Some(error_exit);
                err.emit_message = Some(emit_message);
                let mut cinfo: Box<jpeg_decompress_struct> = Box::new(std::mem::zeroed());
                cinfo.common.err = &mut *err;
                jpeg_create_decompress(&mut *cinfo);
                let mut d = Decompressor { cinfo, _err: err };
                let c = &mut *d.cinfo;
                (*c.common.mem).max_memory_to_use = MAX_DECODE_BYTES as c_long;
                jpeg_mem_src(c, bytes.as_ptr(), bytes.len() as c_ulong);
                d
            }
        }
    }

    /// # Safety
    /// Must run inside `guarded`: libjpeg errors unwind out of the C code.
    unsafe fn decode_unguarded(bytes: &[u8]) -> Result<(RgbImage, Option<u16>)> {
        // SAFETY: the decompressor reads `bytes`, which outlives it (dropped before returning);
        // `raw` holds `h` rows of `row_bytes`, so each row pointer stays inside it, and
        // libjpeg writes one row of `output_width * output_components` bytes per call.
        unsafe {
            let mut d = Decompressor::new(bytes);
            let c = &mut *d.cinfo;
            jpeg_read_header(c, 1);
            // Size checked from the header, before libjpeg or we allocate anything image-sized.
            check_dims(c.image_width as u64, c.image_height as u64)?;
            // OpenCV (grfmt_jpeg.cpp): BGR output straight from libjpeg for 1 and 3 components
            // (RGB here: same arithmetic, other order); CMYK output plus its own conversion for 4.
            let cmyk = c.num_components == 4;
            c.out_color_space = if cmyk { JCS_CMYK } else { JCS_RGB };
            c.dct_method = J_DCT_METHOD::JDCT_ISLOW;
            c.do_fancy_upsampling = 1;
            c.do_block_smoothing = 1;
            c.scale_num = 1;
            c.scale_denom = 1;
            jpeg_start_decompress(c);
            let (w, h) = (c.output_width as usize, c.output_height as usize);
            let comps = c.output_components as usize;
            if comps != if cmyk { 4 } else { 3 } {
                return Err(Error::invalid(format!("cannot decode JPEG image: unexpected {comps} output components")));
            }
            let row_bytes = w * comps;
            let mut raw = vec![0u8; row_bytes * h];
            while (c.output_scanline as usize) < h {
                let mut row = raw.as_mut_ptr().add(c.output_scanline as usize * row_bytes);
                if jpeg_read_scanlines(c, &mut row, 1) != 1 {
                    return Err(Error::invalid("cannot decode JPEG image: decoder stopped early"));
                }
            }
            // jpeg_finish_decompress is not called: it only reads what follows the last scan,
            // where a missing EOI must not turn a complete image into an error.
            drop(d);
            let data = if cmyk {
                // OpenCV's icvCvt_CMYK2BGR_8u_C4C3R.
                let mut out = Vec::with_capacity(w * h * 3);
                for p in raw.chunks_exact(4) {
                    let (cc, m, y, k) = (p[0] as i32, p[1] as i32, p[2] as i32, p[3] as i32);
                    let conv = |v: i32| (k - (((255 - v) * k) >> 8)) as u8;
                    out.extend_from_slice(&[conv(cc), conv(m), conv(y)]);
                }
                out
            } else {
                raw
            };
            Ok((RgbImage { width: w as u32, height: h as u32, data }, jpeg_exif_orientation(bytes)))
        }
    }

    struct Compressor {
        cinfo: Box<jpeg_compress_struct>,
        _err: Box<jpeg_error_mgr>,
        out: *mut u8,
    }

    impl Drop for Compressor {
        fn drop(&mut self) {
            extern "C" {
                fn free(p: *mut std::ffi::c_void);
            }
            // SAFETY: `cinfo` was set up by `jpeg_create_compress` and is destroyed once, here;
            // `out` is null or the buffer `jpeg_mem_dest` malloc'ed, which nothing else frees.
            unsafe {
                jpeg_destroy_compress(&mut self.cinfo);
                if !self.out.is_null() {
                    free(self.out.cast());
                }
            }
        }
    }

    /// Encode like OpenCV's `imencode(".jpg", img, [IMWRITE_JPEG_QUALITY, quality])`:
    /// libjpeg(-turbo) defaults (baseline, 4:2:0, islow DCT, no Huffman optimisation).
    pub(super) fn encode(img: &RgbImage, quality: i32) -> Result<Vec<u8>> {
        // SAFETY: `img` outlives the compressor, dropped inside `encode_unguarded`; libjpeg errors
        // unwind to this `catch_unwind` through `C-unwind` callbacks.
        match catch_unwind(AssertUnwindSafe(|| unsafe { encode_unguarded(img, quality) })) {
            Ok(r) => r,
            Err(payload) => match payload.downcast::<Failure>() {
                Ok(f) => Err(Error::invalid(format!("cannot encode JPEG image: {}", f.0))),
                Err(_) => Err(Error::internal("JPEG encoder panicked")),
            },
        }
    }

    /// # Safety
    /// Must run inside a `catch_unwind`: libjpeg errors unwind out of the C code.
    unsafe fn encode_unguarded(img: &RgbImage, quality: i32) -> Result<Vec<u8>> {
        // SAFETY: as in `Decompressor::new` for the zeroed structs; `jpeg_mem_dest` writes the
        // malloc'ed buffer and its length into `c.out`/`out_len`, which outlive the compressor's
        // use; each row pointer stays inside `img.data` (height rows of width * 3 bytes), and
        // `c.out[..out_len]` is the finished stream, copied before `c` frees it.
        unsafe {
            if img.width == 0 || img.height == 0 {
                return Err(Error::invalid("cannot encode an empty image as JPEG"));
            }
            let mut err: Box<jpeg_error_mgr> = Box::new(std::mem::zeroed());
            jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            let mut cinfo: Box<jpeg_compress_struct> = Box::new(std::mem::zeroed());
            cinfo.common.err = &mut *err;
            jpeg_create_compress(&mut *cinfo);
            let mut c = Compressor { cinfo, _err: err, out: std::ptr::null_mut() };
            let mut out_len: c_ulong = 0;
            let ci = &mut *c.cinfo;
            jpeg_mem_dest(ci, &mut c.out, &mut out_len);
            ci.image_width = img.width;
            ci.image_height = img.height;
            ci.input_components = 3;
            ci.in_color_space = JCS_RGB;
            // mozjpeg's own defaults (trellis, progressive) differ from libjpeg-turbo's: ask for the latter.
            jpeg_c_set_int_param(ci, J_INT_PARAM::JINT_COMPRESS_PROFILE, JCP_FASTEST as c_int);
            jpeg_set_defaults(ci);
            ci.optimize_coding = 0;
            jpeg_set_quality(ci, quality.clamp(1, 100), 1);
            jpeg_start_compress(ci, 1);
            let row_bytes = img.width as usize * 3;
            while (ci.next_scanline) < img.height {
                let row = img.data.as_ptr().add(ci.next_scanline as usize * row_bytes);
                let rows = [row];
                jpeg_write_scanlines(ci, rows.as_ptr(), 1);
            }
            jpeg_finish_compress(ci);
            Ok(std::slice::from_raw_parts(c.out, out_len as usize).to_vec())
        }
    }
}

/// Encode an RGB image as JPEG the way OpenCV's `imencode` does (PySDK's JPEG frames use quality 95).
pub fn encode_jpeg(img: &RgbImage, quality: i32) -> Result<Vec<u8>> {
    jpeg::encode(img, quality)
}

/// What a model-sized image looks like after PySDK's JPEG transport: encoded at quality 95
/// and decoded again.
pub fn jpeg_roundtrip(img: &RgbImage) -> Result<RgbImage> {
    decode(&encode_jpeg(img, 95)?)
}

/// Builds an RGB image from a raw interleaved 8-bit 3-channel buffer.
///
/// `stride` is the distance in bytes between row starts (at least `3 * width`); the last row
/// need not be padded. `bgr` tells that the buffer holds B,G,R (OpenCV's order) rather than R,G,B.
pub fn from_raw(data: &[u8], width: u32, height: u32, stride: usize, bgr: bool) -> Result<RgbImage> {
    check_dims(width as u64, height as u64)?;
    let row = width as usize * 3;
    if stride < row {
        return Err(Error::invalid(format!("raw image stride {stride} is smaller than 3 * width = {row} bytes")));
    }
    let need = stride
        .checked_mul(height as usize - 1)
        .and_then(|v| v.checked_add(row))
        .ok_or_else(|| Error::invalid(format!("raw image stride {stride} is too large")))?;
    if data.len() < need {
        return Err(Error::invalid(format!(
            "raw image buffer holds {} bytes; a {width}x{height} RGB image with stride {stride} needs at least {need}",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let r = &data[y * stride..y * stride + row];
        if bgr {
            for p in r.chunks_exact(3) {
                out.extend_from_slice(&[p[2], p[1], p[0]]);
            }
        } else {
            out.extend_from_slice(r);
        }
    }
    Ok(RgbImage { width, height, data: out })
}

// ---------------------------------------------------------------------------------------------
// Resizing
// ---------------------------------------------------------------------------------------------

/// Interpolation methods, named as PySDK's `input_resize_method` values, mapped to OpenCV's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMethod {
    /// `cv2.INTER_NEAREST` (exact).
    Nearest,
    /// `cv2.INTER_LINEAR` (exact).
    Bilinear,
    /// `cv2.INTER_AREA` (exact).
    Area,
    /// `cv2.INTER_CUBIC` as OpenCV's own code computes it. opencv-python built with IPP hands
    /// 8-bit bicubic to Intel IPP instead, which rounds differently: up to 1 level off on a
    /// small share of pixels.
    Bicubic,
    /// `cv2.INTER_LANCZOS4` (exact).
    Lanczos,
}

impl ResizeMethod {
    /// Parses PySDK's names: "nearest", "bilinear", "area", "bicubic", "lanczos".
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "nearest" => Self::Nearest,
            "bilinear" => Self::Bilinear,
            "area" => Self::Area,
            "bicubic" => Self::Bicubic,
            "lanczos" => Self::Lanczos,
            _ => return None,
        })
    }

    /// PySDK's name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
            Self::Area => "area",
            Self::Bicubic => "bicubic",
            Self::Lanczos => "lanczos",
        }
    }
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// `saturate_cast<short>(float)`: round half to even, then clamp.
#[inline]
fn sat_i16(v: f32) -> i32 {
    (v.round_ties_even() as i32).clamp(i16::MIN as i32, i16::MAX as i32)
}

/// `saturate_cast<uchar>(float)`.
#[inline]
fn sat_u8_f32(v: f32) -> u8 {
    (v.round_ties_even() as i32).clamp(0, 255) as u8
}

/// Resizes to `w` x `h` exactly as `cv2.resize(img, (w, h), interpolation=...)` does for
/// 8-bit 3-channel images (opencv-python 4.14, x86-64). Same size returns a copy; a zero
/// target size gives an empty image; an empty source gives a black `w` x `h` image.
pub fn resize(src: &RgbImage, w: u32, h: u32, m: ResizeMethod) -> RgbImage {
    if w == 0 || h == 0 {
        return RgbImage { width: w, height: h, data: Vec::new() };
    }
    if src.is_empty() {
        return RgbImage::new(w, h);
    }
    if w == src.width && h == src.height {
        return src.clone();
    }
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (dw, dh) = (w as usize, h as usize);
    let inv_scale_x = dw as f64 / sw as f64;
    let inv_scale_y = dh as f64 / sh as f64;
    if m == ResizeMethod::Nearest {
        return resize_nearest(src, dw, dh, inv_scale_x, inv_scale_y);
    }
    let scale_x = 1.0 / inv_scale_x;
    let scale_y = 1.0 / inv_scale_y;
    let iscale_x = scale_x.round_ties_even();
    let iscale_y = scale_y.round_ties_even();
    let is_area_fast = (scale_x - iscale_x).abs() < f64::EPSILON && (scale_y - iscale_y).abs() < f64::EPSILON;
    let kernel = match m {
        ResizeMethod::Bilinear | ResizeMethod::Area => {
            // OpenCV: an exact 2x downscale with INTER_LINEAR is done as INTER_AREA.
            let area = m == ResizeMethod::Area || (is_area_fast && iscale_x == 2.0 && iscale_y == 2.0);
            if area && scale_x >= 1.0 && scale_y >= 1.0 {
                return if is_area_fast {
                    resize_area_fast(src, dw, dh, iscale_x as usize, iscale_y as usize)
                } else {
                    resize_area(src, dw, dh, scale_x, scale_y)
                };
            }
            Kernel::Linear { area_mode: area }
        }
        ResizeMethod::Bicubic => Kernel::Cubic,
        ResizeMethod::Lanczos => Kernel::Lanczos4,
        ResizeMethod::Nearest => unreachable!(),
    };
    let xt = AxisTable::new(kernel, sw, dw, scale_x, inv_scale_x, true);
    let yt = AxisTable::new(kernel, sh, dh, scale_y, inv_scale_y, false);
    match kernel {
        Kernel::Linear { .. } => separable::<2>(src, dw, dh, &xt, &yt, vresize_linear),
        Kernel::Cubic => separable::<4>(src, dw, dh, &xt, &yt, vresize_cubic),
        Kernel::Lanczos4 => separable::<8>(src, dw, dh, &xt, &yt, vresize_fixed::<8>),
    }
}

fn resize_nearest(src: &RgbImage, dw: usize, dh: usize, inv_scale_x: f64, inv_scale_y: f64) -> RgbImage {
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (ifx, ify) = (1.0 / inv_scale_x, 1.0 / inv_scale_y);
    let xofs: Vec<usize> = (0..dw).map(|x| ((x as f64 * ifx).floor() as usize).min(sw - 1) * 3).collect();
    let mut data = vec![0u8; dw * dh * 3];
    for (y, out) in data.chunks_exact_mut(dw * 3).enumerate() {
        let sy = ((y as f64 * ify).floor() as usize).min(sh - 1);
        let row = src.row(sy);
        for (o, &sx) in out.chunks_exact_mut(3).zip(&xofs) {
            o.copy_from_slice(&row[sx..sx + 3]);
        }
    }
    RgbImage { width: dw as u32, height: dh as u32, data }
}

/// INTER_AREA for integer scale factors (OpenCV's `resizeAreaFast_`).
fn resize_area_fast(src: &RgbImage, dw: usize, dh: usize, sx: usize, sy: usize) -> RgbImage {
    let stride = src.width as usize * 3;
    let mut data = vec![0u8; dw * dh * 3];
    let s = &src.data;
    if sx == 2 && sy == 2 {
        // The 2x2 fast path rounds half up: (a + b + c + d + 2) >> 2.
        for (dy, out) in data.chunks_exact_mut(dw * 3).enumerate() {
            let r0 = &s[2 * dy * stride..];
            let r1 = &s[(2 * dy + 1) * stride..];
            for (dx, o) in out.chunks_exact_mut(3).enumerate() {
                let i = dx * 6;
                for c in 0..3 {
                    let v = r0[i + c] as u32 + r0[i + 3 + c] as u32 + r1[i + c] as u32 + r1[i + 3 + c] as u32;
                    o[c] = ((v + 2) >> 2) as u8;
                }
            }
        }
    } else {
        let scale = 1.0f32 / (sx * sy) as f32;
        for (dy, out) in data.chunks_exact_mut(dw * 3).enumerate() {
            for (dx, o) in out.chunks_exact_mut(3).enumerate() {
                for c in 0..3 {
                    let mut sum = 0i32;
                    for yy in 0..sy {
                        let r = &s[(dy * sy + yy) * stride..];
                        for xx in 0..sx {
                            sum += r[(dx * sx + xx) * 3 + c] as i32;
                        }
                    }
                    o[c] = sat_u8_f32(sum as f32 * scale);
                }
            }
        }
    }
    RgbImage { width: dw as u32, height: dh as u32, data }
}

/// OpenCV's `computeResizeAreaTab`: (destination index, source index, weight).
fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut tab = Vec::with_capacity(ssize * 2);
    let ss = ssize as i64;
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ss - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push((dx, (sx1 - 1) as usize, ((sx1 as f64 - fsx1) / cell_width) as f32));
        }
        for sx in sx1..sx2 {
            tab.push((dx, sx as usize, (1.0 / cell_width) as f32));
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push((dx, sx2 as usize, ((fsx2 - sx2 as f64).min(1.0).min(cell_width) / cell_width) as f32));
        }
    }
    tab
}

/// General INTER_AREA downscale (OpenCV's `ResizeArea_Invoker`, float accumulation).
fn resize_area(src: &RgbImage, dw: usize, dh: usize, scale_x: f64, scale_y: f64) -> RgbImage {
    let xtab = area_tab(src.width as usize, dw, scale_x);
    let ytab = area_tab(src.height as usize, dh, scale_y);
    let w3 = dw * 3;
    let mut data = vec![0u8; w3 * dh];
    let mut buf = vec![0f32; w3];
    let mut sum = vec![0f32; w3];
    let store = |sum: &[f32], data: &mut [u8], dy: usize| {
        for (o, &v) in data[dy * w3..(dy + 1) * w3].iter_mut().zip(sum) {
            *o = sat_u8_f32(v);
        }
    };
    let mut prev_dy = ytab.first().map_or(0, |t| t.0);
    for &(dy, sy, beta) in &ytab {
        let s = src.row(sy);
        buf.iter_mut().for_each(|v| *v = 0.0);
        for &(dx, sx, alpha) in &xtab {
            let (d, si) = (dx * 3, sx * 3);
            buf[d] += s[si] as f32 * alpha;
            buf[d + 1] += s[si + 1] as f32 * alpha;
            buf[d + 2] += s[si + 2] as f32 * alpha;
        }
        if dy != prev_dy {
            store(&sum, &mut data, prev_dy);
            for (a, &b) in sum.iter_mut().zip(&buf) {
                *a = beta * b;
            }
            prev_dy = dy;
        } else {
            for (a, &b) in sum.iter_mut().zip(&buf) {
                *a += beta * b;
            }
        }
    }
    store(&sum, &mut data, prev_dy);
    RgbImage { width: dw as u32, height: dh as u32, data }
}

#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// INTER_LINEAR; `area_mode` is OpenCV's INTER_AREA emulation for upscaling.
    Linear {
        area_mode: bool,
    },
    Cubic,
    Lanczos4,
}

impl Kernel {
    fn ksize(self) -> usize {
        match self {
            Kernel::Linear { .. } => 2,
            Kernel::Cubic => 4,
            Kernel::Lanczos4 => 8,
        }
    }
}

fn cubic_coeffs(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    let c3 = 1.0 - c0 - c1 - c2;
    [c0, c1, c2, c3]
}

fn lanczos4_coeffs(x: f32) -> [f32; 8] {
    const S45: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const CS: [[f64; 2]; 8] = [[1.0, 0.0], [-S45, -S45], [0.0, 1.0], [S45, -S45], [-1.0, 0.0], [S45, S45], [0.0, -1.0], [-S45, S45]];
    let pi = std::f64::consts::PI;
    let mut c = [0f32; 8];
    let mut sum = 0f32;
    let y0 = -((x + 3.0) as f64) * pi * 0.25;
    let (s0, c0) = (y0.sin(), y0.cos());
    for i in 0..8 {
        let y0_ = x + 3.0 - i as f32;
        c[i] = if y0_.abs() >= 1e-6 {
            let y = -(y0_ as f64) * pi * 0.25;
            ((CS[i][0] * s0 + CS[i][1] * c0) / (y * y)) as f32
        } else {
            1e30
        };
        sum += c[i];
    }
    let inv = 1.0 / sum;
    for v in &mut c {
        *v *= inv;
    }
    c
}

/// Per-destination source taps (clamped indices) and fixed-point weights along one axis.
struct AxisTable {
    k: usize,
    /// `k` source indices per destination position (pixels for x, rows for y), clamped.
    idx: Vec<usize>,
    /// `k` weights per destination position, scaled by 2^11.
    coef: Vec<i32>,
}

impl AxisTable {
    /// Mirrors the coefficient loops of `cv::hal::resize`; `is_x` enables the border resets
    /// OpenCV applies to horizontal linear coefficients (vertical ones only clamp rows).
    fn new(kernel: Kernel, ssize: usize, dsize: usize, scale: f64, inv_scale: f64, is_x: bool) -> Self {
        let k = kernel.ksize();
        let k2 = (k / 2) as i64;
        let ss = ssize as i64;
        let mut idx = Vec::with_capacity(dsize * k);
        let mut coef = Vec::with_capacity(dsize * k);
        for d in 0..dsize {
            let (mut s, mut f): (i64, f32) = match kernel {
                Kernel::Linear { area_mode: true } => {
                    let s = (d as f64 * scale).floor() as i64;
                    let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
                    (s, if f <= 0.0 { 0.0 } else { f - f.floor() })
                }
                _ => {
                    let fx = ((d as f64 + 0.5) * scale - 0.5) as f32;
                    let s = fx.floor() as i64;
                    (s, fx - s as f32)
                }
            };
            if is_x && matches!(kernel, Kernel::Linear { .. }) {
                if s < 0 {
                    f = 0.0;
                    s = 0;
                }
                if s >= ss - 1 {
                    f = 0.0;
                    s = ss - 1;
                }
            }
            let mut cbuf = [0f32; 8];
            match kernel {
                Kernel::Linear { .. } => {
                    cbuf[0] = 1.0 - f;
                    cbuf[1] = f;
                }
                Kernel::Cubic => cbuf[..4].copy_from_slice(&cubic_coeffs(f)),
                Kernel::Lanczos4 => cbuf = lanczos4_coeffs(f),
            }
            for (t, &c) in cbuf[..k].iter().enumerate() {
                idx.push((s - k2 + 1 + t as i64).clamp(0, ss - 1) as usize);
                coef.push(sat_i16(c * COEF_SCALE));
            }
        }
        AxisTable { k, idx, coef }
    }
}

/// Horizontal pass of one source row into `out` (`dw * 3` sums, scaled by 2^11).
#[inline]
fn hresize<const K: usize>(row: &[u8], out: &mut [i32], xt: &AxisTable) {
    for ((o, idx), coef) in out.chunks_exact_mut(3).zip(xt.idx.chunks_exact(K)).zip(xt.coef.chunks_exact(K)) {
        let (mut s0, mut s1, mut s2) = (0i32, 0i32, 0i32);
        for t in 0..K {
            let p = idx[t] * 3;
            let a = coef[t];
            s0 = s0.wrapping_add(row[p] as i32 * a);
            s1 = s1.wrapping_add(row[p + 1] as i32 * a);
            s2 = s2.wrapping_add(row[p + 2] as i32 * a);
        }
        o[0] = s0;
        o[1] = s1;
        o[2] = s2;
    }
}

/// INTER_LINEAR vertical pass for 8-bit output, in the form OpenCV uses for both its SIMD and
/// scalar code: `((b0*(S0>>4))>>16) + ((b1*(S1>>4))>>16) + 2) >> 2`.
fn vresize_linear(rows: &[&[i32]], beta: &[i32], out: &mut [u8]) {
    let (r0, r1) = (rows[0], rows[1]);
    let (b0, b1) = (beta[0], beta[1]);
    for ((o, &s0), &s1) in out.iter_mut().zip(r0).zip(r1) {
        let v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
        *o = v.clamp(0, 255) as u8;
    }
}

/// Fixed-point vertical pass: `saturate((sum + 2^21) >> 22)`.
fn vresize_fixed<const K: usize>(rows: &[&[i32]], beta: &[i32], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let mut s = 0i32;
        for t in 0..K {
            s = s.wrapping_add(rows[t][x].wrapping_mul(beta[t]));
        }
        *o = (s.wrapping_add(1 << 21) >> 22).clamp(0, 255) as u8;
    }
}

/// INTER_CUBIC vertical pass: OpenCV's 128-bit SIMD loop (float math) for the first
/// multiple of 8 values of the row, fixed point for the rest.
fn vresize_cubic(rows: &[&[i32]], beta: &[i32], out: &mut [u8]) {
    let n = out.len();
    let simd_end = n / 8 * 8;
    let scale = 1.0f32 / (COEF_SCALE * COEF_SCALE);
    let b: [f32; 4] = [beta[0] as f32 * scale, beta[1] as f32 * scale, beta[2] as f32 * scale, beta[3] as f32 * scale];
    for x in 0..simd_end {
        let v = rows[0][x] as f32 * b[0] + (rows[1][x] as f32 * b[1] + (rows[2][x] as f32 * b[2] + rows[3][x] as f32 * b[3]));
        out[x] = sat_u8_f32(v);
    }
    vresize_fixed::<4>(&[&rows[0][simd_end..], &rows[1][simd_end..], &rows[2][simd_end..], &rows[3][simd_end..]], beta, &mut out[simd_end..]);
}

/// OpenCV's `resizeGeneric_`: horizontal pass per needed source row (cached across output
/// rows), then the vertical pass per output row.
fn separable<const K: usize>(src: &RgbImage, dw: usize, dh: usize, xt: &AxisTable, yt: &AxisTable, vresize: fn(&[&[i32]], &[i32], &mut [u8])) -> RgbImage {
    debug_assert!(xt.k == K && yt.k == K);
    let w3 = dw * 3;
    let mut data = vec![0u8; w3 * dh];
    let mut bufs: Vec<Vec<i32>> = (0..K).map(|_| vec![0i32; w3]).collect();
    let mut tags = [usize::MAX; K];
    for (dy, out) in data.chunks_exact_mut(w3).enumerate() {
        let need = &yt.idx[dy * K..(dy + 1) * K];
        let mut slot = [usize::MAX; K];
        let mut used = [false; K];
        // Reuse rows already computed.
        for t in 0..K {
            if let Some(j) = tags.iter().position(|&g| g == need[t]) {
                slot[t] = j;
                used[j] = true;
            }
        }
        // Compute the missing ones into free buffers.
        for t in 0..K {
            if slot[t] != usize::MAX {
                continue;
            }
            if let Some(j) = tags.iter().enumerate().position(|(j, &g)| used[j] && g == need[t]) {
                slot[t] = j;
                continue;
            }
            let j = used.iter().position(|&u| !u).expect("a free row buffer");
            hresize::<K>(src.row(need[t]), &mut bufs[j], xt);
            tags[j] = need[t];
            used[j] = true;
            slot[t] = j;
        }
        let rows: [&[i32]; K] = std::array::from_fn(|t| bufs[slot[t]].as_slice());
        vresize(&rows, &yt.coef[dy * K..(dy + 1) * K], out);
    }
    RgbImage { width: dw as u32, height: dh as u32, data }
}

// ---------------------------------------------------------------------------------------------
// Pad methods and coordinate converters
// ---------------------------------------------------------------------------------------------

/// PySDK's `input_pad_method` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMethod {
    Stretch,
    Letterbox,
    CropFirst,
    CropLast,
}

impl PadMethod {
    /// Parses "stretch", "letterbox", "crop-first", "crop-last".
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stretch" => Self::Stretch,
            "letterbox" => Self::Letterbox,
            "crop-first" => Self::CropFirst,
            "crop-last" => Self::CropLast,
            _ => return None,
        })
    }

    /// PySDK's name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stretch => "stretch",
            Self::Letterbox => "letterbox",
            Self::CropFirst => "crop-first",
            Self::CropLast => "crop-last",
        }
    }
}

/// Python's `min(1, max(0, v))` (NaN gives 0, as in Python).
#[inline]
fn clamp01(v: f64) -> f64 {
    let m = if v > 0.0 { v } else { 0.0 };
    if m < 1.0 {
        m
    } else {
        1.0
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Conv {
    Identity,
    /// `x' = iw * clamp(x / w, 0, 1)`
    Stretch {
        iw: f64,
        ih: f64,
        w: f64,
        h: f64,
    },
    /// `x' = min(max(0, (x - dx) / gain), iw)`
    Letterbox {
        iw: f64,
        ih: f64,
        dx: f64,
        dy: f64,
        gain: f64,
    },
    /// `x' = nw * clamp(x / w, 0, 1) + left`
    CropFirst {
        nw: f64,
        nh: f64,
        w: f64,
        h: f64,
        left: f64,
        top: f64,
    },
    /// `x' = iw * clamp((x + dx) / nw, 0, 1)`
    CropLast {
        iw: f64,
        ih: f64,
        nw: f64,
        nh: f64,
        dx: f64,
        dy: f64,
    },
}

/// Maps model-input coordinates back to original-image coordinates (PySDK's `converter`).
#[derive(Clone, Debug, PartialEq)]
pub struct CoordConverter {
    conv: Conv,
    /// The original image's size, when the converter came from fitting one.
    image: Option<(u32, u32)>,
}

impl CoordConverter {
    /// No conversion (PySDK's converter for already-encoded `bytes` inputs).
    pub fn identity() -> Self {
        CoordConverter { conv: Conv::Identity, image: None }
    }

    /// The original image's size (width, height), if the converter came from fitting one.
    pub fn image_size(&self) -> Option<(u32, u32)> {
        self.image
    }

    /// Converts a point, in f64 and with the clamping PySDK applies.
    pub fn to_original(&self, x: f64, y: f64) -> (f64, f64) {
        match self.conv {
            Conv::Identity => (x, y),
            Conv::Stretch { iw, ih, w, h } => (iw * clamp01(x / w), ih * clamp01(y / h)),
            Conv::Letterbox { iw, ih, dx, dy, gain } => {
                let f = |v: f64, lim: f64| {
                    let m = if v > 0.0 { v } else { 0.0 };
                    if lim < m {
                        lim
                    } else {
                        m
                    }
                };
                (f((x - dx) / gain, iw), f((y - dy) / gain, ih))
            }
            Conv::CropFirst { nw, nh, w, h, left, top } => (nw * clamp01(x / w) + left, nh * clamp01(y / h) + top),
            Conv::CropLast { iw, ih, nw, nh, dx, dy } => (iw * clamp01((x + dx) / nw), ih * clamp01((y + dy) / nh)),
        }
    }
}

/// A model-sized image and the converter back to the original image's coordinates.
#[derive(Clone, Debug)]
pub struct Fit {
    pub image: RgbImage,
    pub converter: CoordConverter,
}

/// Python `int(round(v))` for the centre-crop offsets.
#[inline]
fn py_round(v: f64) -> i64 {
    v.round_ties_even() as i64
}

/// The size `CropLast` resizes an `iw x ih` image to before its centre crop to `wi x hi`
/// (PySDK's arithmetic), refused past the image limits ([`MAX_SIDE`], [`MAX_PIXELS`]): a small
/// crop percentage upscales without bound (0.001 on a 224x224 model: 224000 x 224000, a 150 GB
/// buffer whose allocation would abort the process).
pub fn crop_last_size(iw: i64, ih: i64, wi: i64, hi: i64, cp: f64) -> Result<(i64, i64)> {
    let (iwf, ihf, wf, hf) = (iw as f64, ih as f64, wi as f64, hi as f64);
    // In floating point first: past the limits the integer products below would overflow.
    let (fw, fh) = if wi == hi {
        if iw >= ih {
            let nh = (hf / cp).trunc();
            (nh * iwf / ihf, nh)
        } else {
            let nw = (wf / cp).trunc();
            (nw, nw * ihf / iwf)
        }
    } else {
        (wf / cp, hf / cp)
    };
    let (fw, fh) = (fw.max(wf), fh.max(hf));
    let refuse = || {
        Error::invalid(format!(
            "input_crop_percentage {cp} with the crop-last pad method resizes the {iw}x{ih} image to {}x{} before the centre crop to {wi}x{hi}: more than {MAX_SIDE} pixels a side or {MAX_PIXELS} pixels in all",
            fw.floor(),
            fh.floor()
        ))
    };
    if !(fw <= MAX_SIDE as f64 && fh <= MAX_SIDE as f64 && fw * fh <= MAX_PIXELS as f64) {
        return Err(refuse());
    }
    let (nw, nh) = if wi == hi {
        if iw >= ih {
            let nh = (hf / cp) as i64;
            (((nh * iw) as f64 / ihf) as i64, nh)
        } else {
            let nw = (wf / cp) as i64;
            (nw, ((nw * ih) as f64 / iwf) as i64)
        }
    } else {
        ((wf / cp) as i64, (hf / cp) as i64)
    };
    let (nw, nh) = (nw.max(wi), nh.max(hi));
    check_dims(nw as u64, nh as u64).map_err(|_| refuse())?;
    Ok((nw, nh))
}

/// Resizes/pads/crops `src` to the model size `w` x `h` as PySDK's opencv pre-processor does
/// (`_apply_pad_method`, spec §3.3), including the cases it skips when sizes already match.
///
/// `crop_percentage` is PySDK's `input_crop_percentage` (0..1, used by the crop methods; a value
/// that is not finite or not in (0, 1] is taken as 1). `fill_rgb` is the letterbox fill colour.
/// Sizes that PySDK would turn into an OpenCV error (a side rounding to 0) are kept at 1. A
/// crop-last fit whose intermediate image would pass the image limits is an error
/// ([`crop_last_size`]).
pub fn fit(src: &RgbImage, w: u32, h: u32, pad: PadMethod, crop_percentage: f64, resize_method: ResizeMethod, fill_rgb: [u8; 3]) -> Result<Fit> {
    let mut f = fit_pixels(src, w, h, pad, crop_percentage, resize_method, fill_rgb)?;
    f.converter.image = Some((src.width, src.height));
    Ok(f)
}

fn fit_pixels(src: &RgbImage, w: u32, h: u32, pad: PadMethod, crop_percentage: f64, resize_method: ResizeMethod, fill_rgb: [u8; 3]) -> Result<Fit> {
    let (iw, ih) = (src.width as i64, src.height as i64);
    let (wi, hi) = (w as i64, h as i64);
    let (iwf, ihf, wf, hf) = (iw as f64, ih as f64, w as f64, h as f64);
    let stretch_conv = CoordConverter { image: None, conv: Conv::Stretch { iw: iwf, ih: ihf, w: wf, h: hf } };
    if src.is_empty() || w == 0 || h == 0 {
        return Ok(Fit { image: RgbImage::filled(w, h, fill_rgb), converter: stretch_conv });
    }
    let cp = if crop_percentage.is_finite() && crop_percentage > 0.0 && crop_percentage <= 1.0 { crop_percentage } else { 1.0 };
    let same = iw == wi && ih == hi;
    match pad {
        PadMethod::Stretch => {
            let image = if same { src.clone() } else { resize(src, w, h, resize_method) };
            Ok(Fit { image, converter: stretch_conv })
        }
        PadMethod::Letterbox => {
            if same {
                return Ok(Fit { image: src.clone(), converter: stretch_conv });
            }
            let scale = (wf / iwf).min(hf / ihf);
            let nw = ((iwf * scale).round_ties_even() as i64).min(wi).max(1);
            let nh = ((ihf * scale).round_ties_even() as i64).min(hi).max(1);
            let gain = (nh as f64 / ihf).min(nw as f64 / iwf);
            let scaled = resize(src, nw as u32, nh as u32, resize_method);
            let dx = (wi - nw).div_euclid(2);
            let dy = (hi - nh).div_euclid(2);
            let mut image = RgbImage::filled(w, h, fill_rgb);
            let (stride, nrow) = (w as usize * 3, nw as usize * 3);
            for y in 0..nh as usize {
                let d = (y + dy as usize) * stride + dx as usize * 3;
                image.data[d..d + nrow].copy_from_slice(scaled.row(y));
            }
            let converter = CoordConverter { image: None, conv: Conv::Letterbox { iw: iwf, ih: ihf, dx: dx as f64, dy: dy as f64, gain } };
            Ok(Fit { image, converter })
        }
        PadMethod::CropFirst => {
            let scale = (iwf * cp / wf).min(ihf * cp / hf);
            let nw = ((wf * scale) as i64).clamp(1, iw);
            let nh = ((hf * scale) as i64).clamp(1, ih);
            let (mut left, mut top) = (0i64, 0i64);
            let cropped;
            let mut img = src;
            if nw != iw || nh != ih {
                left = py_round((iw - nw) as f64 / 2.0);
                top = py_round((ih - nh) as f64 / 2.0);
                cropped = src.crop(left as u32, top as u32, nw as u32, nh as u32);
                img = &cropped;
            }
            let image = if nw != wi || nh != hi { resize(img, w, h, resize_method) } else { img.clone() };
            let converter =
                CoordConverter { image: None, conv: Conv::CropFirst { nw: nw as f64, nh: nh as f64, w: wf, h: hf, left: left as f64, top: top as f64 } };
            Ok(Fit { image, converter })
        }
        PadMethod::CropLast => {
            let (nw, nh) = crop_last_size(iw, ih, wi, hi, cp)?;
            let resized;
            let mut img = src;
            if nw != iw || nh != ih {
                resized = resize(src, nw as u32, nh as u32, resize_method);
                img = &resized;
            }
            let (mut dx, mut dy) = (0i64, 0i64);
            let image = if wi != nw || hi != nh {
                dx = py_round((nw - wi) as f64 / 2.0);
                dy = py_round((nh - hi) as f64 / 2.0);
                img.crop(dx as u32, dy as u32, w, h)
            } else {
                img.clone()
            };
            let converter =
                CoordConverter { image: None, conv: Conv::CropLast { iw: iwf, ih: ihf, nw: nw as f64, nh: nh as f64, dx: dx as f64, dy: dy as f64 } };
            Ok(Fit { image, converter })
        }
    }
}

/// The converter `fit` gives for a `iw x ih` image fitted to `w x h` (the same arithmetic, no
/// pixels touched): what overlays of masks need to draw on a frame in place.
pub fn fit_converter(iw: u32, ih: u32, w: u32, h: u32, pad: PadMethod, crop_percentage: f64) -> CoordConverter {
    CoordConverter { image: Some((iw, ih)), ..converter_of(iw, ih, w, h, pad, crop_percentage) }
}

fn converter_of(iw: u32, ih: u32, w: u32, h: u32, pad: PadMethod, crop_percentage: f64) -> CoordConverter {
    let (iwi, ihi, wi, hi) = (iw as i64, ih as i64, w as i64, h as i64);
    let (iwf, ihf, wf, hf) = (iw as f64, ih as f64, w as f64, h as f64);
    let stretch_conv = CoordConverter { image: None, conv: Conv::Stretch { iw: iwf, ih: ihf, w: wf, h: hf } };
    if iw == 0 || ih == 0 || w == 0 || h == 0 {
        return stretch_conv;
    }
    let cp = if crop_percentage.is_finite() && crop_percentage > 0.0 && crop_percentage <= 1.0 { crop_percentage } else { 1.0 };
    match pad {
        PadMethod::Stretch => stretch_conv,
        PadMethod::Letterbox => {
            if iwi == wi && ihi == hi {
                return stretch_conv;
            }
            let scale = (wf / iwf).min(hf / ihf);
            let nw = ((iwf * scale).round_ties_even() as i64).min(wi).max(1);
            let nh = ((ihf * scale).round_ties_even() as i64).min(hi).max(1);
            let gain = (nh as f64 / ihf).min(nw as f64 / iwf);
            let (dx, dy) = ((wi - nw).div_euclid(2), (hi - nh).div_euclid(2));
            CoordConverter { image: None, conv: Conv::Letterbox { iw: iwf, ih: ihf, dx: dx as f64, dy: dy as f64, gain } }
        }
        PadMethod::CropFirst => {
            let scale = (iwf * cp / wf).min(ihf * cp / hf);
            let nw = ((wf * scale) as i64).clamp(1, iwi);
            let nh = ((hf * scale) as i64).clamp(1, ihi);
            let (mut left, mut top) = (0i64, 0i64);
            if nw != iwi || nh != ihi {
                left = py_round((iwi - nw) as f64 / 2.0);
                top = py_round((ihi - nh) as f64 / 2.0);
            }
            CoordConverter { image: None, conv: Conv::CropFirst { nw: nw as f64, nh: nh as f64, w: wf, h: hf, left: left as f64, top: top as f64 } }
        }
        PadMethod::CropLast => {
            // `fit` refuses what `crop_last_size` refuses: nothing was drawn from such a fit.
            let Ok((nw, nh)) = crop_last_size(iwi, ihi, wi, hi, cp) else { return stretch_conv };
            let (mut dx, mut dy) = (0i64, 0i64);
            if wi != nw || hi != nh {
                dx = py_round((nw - wi) as f64 / 2.0);
                dy = py_round((nh - hi) as f64 / 2.0);
            }
            CoordConverter { image: None, conv: Conv::CropLast { iw: iwf, ih: ihf, nw: nw as f64, nh: nh as f64, dx: dx as f64, dy: dy as f64 } }
        }
    }
}

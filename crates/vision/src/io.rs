//! Reading untrusted pictures and video: JPEG/PNG files (bounded in bytes and pixels
//! before anything is decoded), YUV4MPEG2 (y4m) 4:2:0 video, and I420 → RGB.

use crate::error::{Result, VisionError};
use crate::types::{I420Buffer, I420Frame};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Bounds on one input picture; a bigger one is refused before it is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Width × height (`--max-image-pixels`). An image or y4m frame above it is refused.
    pub max_pixels: u64,
    /// Size of an image file on disk (`--max-image-bytes`).
    pub max_file_bytes: u64,
}

impl ImageLimits {
    /// 40 MP: a 8-bit RGB copy is 120 MB, so peak memory stays at a few hundred MB.
    pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_pixels: Self::DEFAULT_MAX_PIXELS, max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES }
    }
}

fn too_many_pixels(w: u64, h: u64, limits: &ImageLimits) -> VisionError {
    VisionError::Image(format!(
        "{w}x{h} is {} pixels, over the limit of {} (--max-image-pixels)",
        w.saturating_mul(h),
        limits.max_pixels
    ))
}

/// Reads a whole file, refusing one larger than `max_bytes` (named by `flag` in the
/// message) without reading it; a file that grows while being read is cut at the limit
/// and refused too.
pub fn read_file_limited(path: &Path, max_bytes: u64, flag: &str) -> Result<Vec<u8>> {
    let io = |source| VisionError::Io { path: path.into(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    let too_big = |n: u64| VisionError::TooLarge { path: path.into(), size: n, limit: max_bytes, flag: flag.into() };
    if len > max_bytes {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::fs::File::open(path).map_err(io)?.take(max_bytes + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads and decodes an image file within `limits`.
pub fn read_image(path: &Path, limits: &ImageLimits) -> Result<image::RgbImage> {
    let bytes = read_file_limited(path, limits.max_file_bytes, "--max-image-bytes")?;
    decode_image(&bytes, limits)
}

/// Decodes a JPEG/PNG from memory within `limits`: the header's size is checked before
/// any pixel is decoded; a truncated or empty file is an error.
pub fn decode_image(bytes: &[u8], limits: &ImageLimits) -> Result<image::RgbImage> {
    use image::ImageDecoder;
    // The JPEG decoder fills a cut-off file with grey instead of failing: require the
    // end-of-image marker near the end (FF D9 cannot occur inside entropy-coded data).
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(VisionError::Image("truncated JPEG (no end-of-image marker)".into()));
        }
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Image(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(|e| VisionError::Image(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(VisionError::Image(format!("zero-size image {w}x{h}")));
    }
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(too_many_pixels(w.into(), h.into(), limits));
    }
    // The decoder's own buffers too (16-bit RGBA at the pixel limit = 8 bytes a pixel).
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    decoder.set_limits(l).map_err(|e| VisionError::Image(e.to_string()))?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| VisionError::Image(e.to_string()))?;
    Ok(img.into_rgb8())
}

/// A YUV4MPEG2 (y4m) reader for 4:2:0 video.
pub struct Y4m<R: Read> {
    reader: BufReader<R>,
    pub width: usize,
    pub height: usize,
}

impl Y4m<std::fs::File> {
    pub fn open(path: &Path, limits: &ImageLimits) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|source| VisionError::Io { path: path.into(), source })?;
        Y4m::new(f, limits)
    }
}

fn read_line_limited<R: Read>(r: &mut BufReader<R>, what: &str) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(1024).read_until(b'\n', &mut buf).map_err(|e| VisionError::Image(format!("y4m: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(VisionError::Image(format!("y4m: {what} line too long or cut off")));
    }
    Ok(Some(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned()))
}

impl<R: Read> Y4m<R> {
    /// Reads the stream header; frames larger than `limits.max_pixels` are refused here.
    pub fn new(inner: R, limits: &ImageLimits) -> Result<Self> {
        let mut reader = BufReader::new(inner);
        let header =
            read_line_limited(&mut reader, "header")?.ok_or_else(|| VisionError::Image("y4m: empty file".into()))?;
        let mut parts = header.split(' ');
        if parts.next() != Some("YUV4MPEG2") {
            return Err(VisionError::Image("not a y4m file (no YUV4MPEG2 header)".into()));
        }
        let (mut w, mut h) = (0usize, 0usize);
        for p in parts {
            // The tag is the first character, whatever it is (a token may start with any
            // byte, multi-byte UTF-8 or the replacement character included).
            let mut chars = p.chars();
            let tag = chars.next();
            let val = chars.as_str();
            match tag {
                Some('W') => w = val.parse().unwrap_or(0),
                Some('H') => h = val.parse().unwrap_or(0),
                Some('C') if !val.starts_with("420") => {
                    return Err(VisionError::Image(format!("y4m: colour space C{val} unsupported (need 4:2:0)")))
                }
                _ => {}
            }
        }
        if w == 0 || h == 0 {
            return Err(VisionError::Image(format!("y4m: bad frame size {w}x{h}")));
        }
        if (w as u64).saturating_mul(h as u64) > limits.max_pixels {
            return Err(too_many_pixels(w as u64, h as u64, limits));
        }
        Ok(Y4m { reader, width: w, height: h })
    }

    /// The next frame, or None at the end.
    pub fn next_frame(&mut self) -> Result<Option<I420Buffer>> {
        let Some(line) = read_line_limited(&mut self.reader, "FRAME")? else {
            return Ok(None);
        };
        if !line.starts_with("FRAME") {
            return Err(VisionError::Image("y4m: expected FRAME".into()));
        }
        let (cw, ch) = (self.width.div_ceil(2), self.height.div_ceil(2));
        let mut read = |n: usize| -> Result<Vec<u8>> {
            let mut v = vec![0u8; n];
            self.reader.read_exact(&mut v).map_err(|_| VisionError::Image("y4m: frame cut off".into()))?;
            Ok(v)
        };
        let y = read(self.width * self.height)?;
        let u = read(cw * ch)?;
        let v = read(cw * ch)?;
        Ok(Some(I420Buffer { width: self.width, height: self.height, y, u, v }))
    }
}

/// I420 → RGB (BT.601 limited range), for annotating video frames.
pub fn i420_to_rgb(f: &I420Frame<'_>) -> Result<image::RgbImage> {
    crate::preprocess::validate_i420(f)?;
    Ok(image::RgbImage::from_fn(f.width as u32, f.height as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let yy = (f.y[y * f.y_stride + x] as f32 - 16.0) * 1.164_383;
        let u = f.u[(y / 2) * f.uv_stride + x / 2] as f32 - 128.0;
        let v = f.v[(y / 2) * f.uv_stride + x / 2] as f32 - 128.0;
        let c = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        image::Rgb([c(yy + 1.596_027 * v), c(yy - 0.391_762 * u - 0.812_968 * v), c(yy + 2.017_232 * u)])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y4m_header_tokens_starting_with_any_byte_are_not_a_panic() {
        let limits = ImageLimits::default();
        // "é" is two bytes: splitting at byte 1 is not a char boundary.
        for header in [
            &b"YUV4MPEG2 W4 H2 \xc3\xa9x F30:1\nFRAME\n"[..],
            b"YUV4MPEG2 W4 H2 \xff\xfe F30:1\nFRAME\n",
            b"YUV4MPEG2 \xe2\x82\xac W4 H2\nFRAME\n",
            b"YUV4MPEG2  W4 H2\nFRAME\n",
        ] {
            let mut data = header.to_vec();
            data.extend_from_slice(&[16u8; 8 + 2 + 2]);
            let mut y4m = Y4m::new(&data[..], &limits).expect("header with an odd token still reads");
            assert_eq!((y4m.width, y4m.height), (4, 2));
            assert!(y4m.next_frame().expect("frame").is_some());
        }
        let err = Y4m::new(&b"YUV4MPEG2 W\xc3\xa9 H2\n"[..], &limits).err().expect("bad width");
        assert!(err.to_string().contains("bad frame size"), "{err}");
    }

    #[test]
    fn y4m_over_the_pixel_limit_is_refused_from_the_header() {
        let limits = ImageLimits { max_pixels: 1000, ..ImageLimits::default() };
        let err = Y4m::new(&b"YUV4MPEG2 W100 H11\n"[..], &limits).err().expect("over the limit");
        assert!(err.to_string().contains("--max-image-pixels"), "{err}");
    }
}

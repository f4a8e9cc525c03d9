//! Frame → network tensor: letterbox (keep aspect, centred, bilinear) straight from
//! I420 planes (with strides) or an RGB image, without a full-size RGB copy.

use crate::error::{Result, VisionError};
use crate::types::{I420Buffer, I420Frame};

/// Memory layout of the network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[1, H, W, 3]`
    Nhwc,
    /// `[1, 3, H, W]`
    Nchw,
}

/// Per-channel normalisation: `value = (pixel - mean) * scale`, in the model's channel order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub scale: [f32; 3],
    /// Channel order BGR instead of RGB.
    pub bgr: bool,
    /// Raw pixel value (0..255, same for all channels) used for the letterbox bars.
    pub pad: f32,
}

impl Normalize {
    /// Plain RGB 0..255.
    pub const RAW: Normalize = Normalize { mean: [0.0; 3], scale: [1.0; 3], bgr: false, pad: 0.0 };

    fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        let [r, g, b] = rgb;
        let px = if self.bgr { [b, g, r] } else { [r, g, b] };
        [
            (px[0] - self.mean[0]) * self.scale[0],
            (px[1] - self.mean[1]) * self.scale[1],
            (px[2] - self.mean[2]) * self.scale[2],
        ]
    }
}

/// Where the frame sits inside the network input (letterbox geometry).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub src_w: usize,
    pub src_h: usize,
    pub dst_w: usize,
    pub dst_h: usize,
    /// Size of the frame's picture inside the input, in input pixels.
    pub content_w: usize,
    pub content_h: usize,
    /// Offset of the picture (left/top bar width).
    pub pad_x: usize,
    pub pad_y: usize,
}

impl Letterbox {
    /// Fits `src` into `dst` keeping its aspect ratio, centred.
    pub fn fit(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Letterbox {
        let s = (dst_w as f64 / src_w as f64).min(dst_h as f64 / src_h as f64);
        let content_w = ((src_w as f64 * s).round() as usize).clamp(1, dst_w);
        let content_h = ((src_h as f64 * s).round() as usize).clamp(1, dst_h);
        Letterbox {
            src_w,
            src_h,
            dst_w,
            dst_h,
            content_w,
            content_h,
            pad_x: (dst_w - content_w) / 2,
            pad_y: (dst_h - content_h) / 2,
        }
    }

    /// Maps a box `[x1, y1, x2, y2]` in input pixels to `[x, y, w, h]` normalised to the
    /// frame and clipped to it. None if nothing of it is left inside the frame.
    pub fn to_frame(&self, b: [f32; 4]) -> Option<[f32; 4]> {
        let nx = |x: f32| ((x - self.pad_x as f32) / self.content_w as f32).clamp(0.0, 1.0);
        let ny = |y: f32| ((y - self.pad_y as f32) / self.content_h as f32).clamp(0.0, 1.0);
        let (x1, y1, x2, y2) = (nx(b[0]), ny(b[1]), nx(b[2]), ny(b[3]));
        if !(x2 > x1 && y2 > y1) {
            return None;
        }
        Some([x1, y1, x2 - x1, y2 - y1])
    }
}

/// Input shape for a frame on a convolutional model that takes any shape: the long side
/// becomes `long_side` (rounded up to `stride`), the short side keeps the aspect and is
/// rounded UP to `stride` so no content is lost (same rule as tools/models/prep.py),
/// and no less than 3/4 of the long side.
pub fn frame_shaped(src_w: usize, src_h: usize, long_side: usize, stride: usize) -> (usize, usize) {
    let long = long_side.div_ceil(stride).max(1) * stride;
    let (a, b) = if src_w >= src_h { (src_w, src_h) } else { (src_h, src_w) };
    let short = ((b as f64 * long as f64 / a.max(1) as f64 / stride as f64).ceil() as usize).max(1) * stride;
    // Thin strips lose context (the network's squeeze-excite pools over the whole input):
    // measured on zidane.jpg, 512x288 misses a person that 512x384 finds, so the short
    // side is kept at >= 3/4 of the long side (4:3 frames need no bars at all).
    let min_short = (long * 3 / 4).div_ceil(stride) * stride;
    let short = short.max(min_short).min(long);
    if src_w >= src_h {
        (long, short)
    } else {
        (short, long)
    }
}

/// One bilinear tap: `a[i0] * (1 - w) + a[i1] * w`.
#[derive(Clone, Copy, Debug)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

/// Taps for `dst_len` output samples covering `src_len` input samples (half-pixel centres).
/// `sub` maps full-resolution source coordinates to a subsampled plane (2 for 4:2:0 chroma).
fn taps(dst_len: usize, src_len: usize, plane_len: usize, sub: f32) -> Vec<Tap> {
    let ratio = src_len as f32 / dst_len as f32;
    let last = plane_len.saturating_sub(1);
    (0..dst_len)
        .map(|d| {
            let s = (d as f32 + 0.5) * ratio; // full-res coordinate (pixel edges)
            let p = (s / sub - 0.5).max(0.0); // plane sample coordinate
            let i0 = (p.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            Tap { i0, i1, w: (p - i0 as f32).clamp(0.0, 1.0) }
        })
        .collect()
}

#[inline]
fn lerp2(row0: &[u8], row1: &[u8], tx: Tap, wy: f32) -> f32 {
    let a = row0[tx.i0] as f32 * (1.0 - tx.w) + row0[tx.i1] as f32 * tx.w;
    let b = row1[tx.i0] as f32 * (1.0 - tx.w) + row1[tx.i1] as f32 * tx.w;
    a + (b - a) * wy
}

/// Writes normalised pixels into the tensor; the closure gives RGB (0..255) of content pixel (cx, cy).
fn fill<F: FnMut(usize, usize) -> [f32; 3]>(
    lb: &Letterbox,
    layout: Layout,
    norm: &Normalize,
    out: &mut Vec<f32>,
    mut pixel: F,
) {
    let (w, h) = (lb.dst_w, lb.dst_h);
    let plane = w * h;
    out.clear();
    let pad = norm.apply([norm.pad; 3]);
    match layout {
        Layout::Nhwc => {
            out.resize(plane * 3, 0.0);
            for (i, v) in out.iter_mut().enumerate() {
                *v = pad[i % 3];
            }
        }
        Layout::Nchw => {
            for p in pad {
                out.extend(std::iter::repeat_n(p, plane));
            }
        }
    }
    for cy in 0..lb.content_h {
        let y = cy + lb.pad_y;
        for cx in 0..lb.content_w {
            let x = cx + lb.pad_x;
            let v = norm.apply(pixel(cx, cy));
            match layout {
                Layout::Nhwc => {
                    let o = (y * w + x) * 3;
                    out[o..o + 3].copy_from_slice(&v);
                }
                Layout::Nchw => {
                    let o = y * w + x;
                    out[o] = v[0];
                    out[plane + o] = v[1];
                    out[2 * plane + o] = v[2];
                }
            }
        }
    }
}

/// Checks that the planes hold a whole frame at the given strides.
pub fn validate_i420(f: &I420Frame<'_>) -> Result<()> {
    let bad = |m: String| Err(VisionError::InvalidFrame(m));
    if f.width == 0 || f.height == 0 {
        return bad(format!("zero-size frame {}x{}", f.width, f.height));
    }
    let (cw, ch) = (f.width.div_ceil(2), f.height.div_ceil(2));
    if f.y_stride < f.width || f.uv_stride < cw {
        return bad(format!(
            "strides too small: y {} for width {}, uv {} for chroma width {cw}",
            f.y_stride, f.width, f.uv_stride
        ));
    }
    let need_y = f.y_stride * (f.height - 1) + f.width;
    let need_uv = f.uv_stride * (ch - 1) + cw;
    if f.y.len() < need_y || f.u.len() < need_uv || f.v.len() < need_uv {
        return bad(format!(
            "planes too short for {}x{}: y {} (need {need_y}), u {}, v {} (need {need_uv})",
            f.width,
            f.height,
            f.y.len(),
            f.u.len(),
            f.v.len()
        ));
    }
    Ok(())
}

/// I420 (BT.601 limited range, what browsers' encoders send) → letterboxed tensor.
pub fn i420_to_tensor(
    f: &I420Frame<'_>,
    lb: &Letterbox,
    layout: Layout,
    norm: &Normalize,
    out: &mut Vec<f32>,
) -> Result<()> {
    validate_i420(f)?;
    let (cw, ch) = (f.width.div_ceil(2), f.height.div_ceil(2));
    let xl = taps(lb.content_w, f.width, f.width, 1.0);
    let yl = taps(lb.content_h, f.height, f.height, 1.0);
    let xc = taps(lb.content_w, f.width, cw, 2.0);
    let yc = taps(lb.content_h, f.height, ch, 2.0);
    fill(lb, layout, norm, out, |cx, cy| {
        let (ty, tc) = (yl[cy], yc[cy]);
        let y0 = &f.y[ty.i0 * f.y_stride..];
        let y1 = &f.y[ty.i1 * f.y_stride..];
        let u0 = &f.u[tc.i0 * f.uv_stride..];
        let u1 = &f.u[tc.i1 * f.uv_stride..];
        let v0 = &f.v[tc.i0 * f.uv_stride..];
        let v1 = &f.v[tc.i1 * f.uv_stride..];
        let yy = (lerp2(y0, y1, xl[cx], ty.w) - 16.0) * 1.164_383;
        let u = lerp2(u0, u1, xc[cx], tc.w) - 128.0;
        let v = lerp2(v0, v1, xc[cx], tc.w) - 128.0;
        [
            (yy + 1.596_027 * v).clamp(0.0, 255.0),
            (yy - 0.391_762 * u - 0.812_968 * v).clamp(0.0, 255.0),
            (yy + 2.017_232 * u).clamp(0.0, 255.0),
        ]
    });
    Ok(())
}

/// RGB image → letterboxed tensor.
pub fn rgb_to_tensor(
    img: &image::RgbImage,
    lb: &Letterbox,
    layout: Layout,
    norm: &Normalize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(VisionError::InvalidFrame(format!("zero-size image {w}x{h}")));
    }
    let raw: &[u8] = img.as_raw();
    let stride = w * 3;
    let xt = taps(lb.content_w, w, w, 1.0);
    let yt = taps(lb.content_h, h, h, 1.0);
    fill(lb, layout, norm, out, |cx, cy| {
        let (tx, ty) = (xt[cx], yt[cy]);
        let r0 = &raw[ty.i0 * stride..];
        let r1 = &raw[ty.i1 * stride..];
        let mut px = [0.0f32; 3];
        for (c, p) in px.iter_mut().enumerate() {
            let a = r0[tx.i0 * 3 + c] as f32 * (1.0 - tx.w) + r0[tx.i1 * 3 + c] as f32 * tx.w;
            let b = r1[tx.i0 * 3 + c] as f32 * (1.0 - tx.w) + r1[tx.i1 * 3 + c] as f32 * tx.w;
            *p = a + (b - a) * ty.w;
        }
        px
    });
    Ok(())
}

/// RGB → I420 (BT.601 limited range), for tests, y4m round trips and benches.
pub fn rgb_to_i420(img: &image::RgbImage) -> I420Buffer {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut y = vec![0u8; w * h];
    let mut u = vec![0u8; cw * ch];
    let mut v = vec![0u8; cw * ch];
    let px = |x: usize, yy: usize| {
        let p = img.get_pixel(x.min(w - 1) as u32, yy.min(h - 1) as u32).0;
        [p[0] as f32, p[1] as f32, p[2] as f32]
    };
    for yy in 0..h {
        for x in 0..w {
            let [r, g, b] = px(x, yy);
            y[yy * w + x] = (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let mut acc = [0.0f32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(cx * 2 + dx, cy * 2 + dy);
                for c in 0..3 {
                    acc[c] += p[c] / 4.0;
                }
            }
            let [r, g, b] = acc;
            u[cy * cw + cx] = (128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0).round().clamp(0.0, 255.0) as u8;
            v[cy * cw + cx] = (128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    I420Buffer { width: w, height: h, y, u, v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_centres_and_maps_back() {
        let lb = Letterbox::fit(640, 480, 512, 512);
        assert_eq!((lb.content_w, lb.content_h, lb.pad_x, lb.pad_y), (512, 384, 0, 64));
        let b = lb.to_frame([0.0, 64.0, 256.0, 256.0]).expect("inside");
        assert!((b[0] - 0.0).abs() < 1e-6 && (b[1] - 0.0).abs() < 1e-6);
        assert!((b[2] - 0.5).abs() < 1e-6 && (b[3] - 0.5).abs() < 1e-6);
        assert!(lb.to_frame([0.0, 0.0, 100.0, 60.0]).is_none(), "box in the bar");
    }

    #[test]
    fn frame_shaped_rounds_to_stride() {
        assert_eq!(frame_shaped(640, 480, 512, 32), (512, 384));
        assert_eq!(frame_shaped(1280, 720, 512, 32), (512, 384));
        assert_eq!(frame_shaped(640, 480, 320, 32), (320, 256));
        assert_eq!(frame_shaped(810, 1080, 512, 32), (384, 512));
    }

    #[test]
    fn i420_and_rgb_paths_agree() {
        // A smooth gradient: chroma subsampling loses little, so both paths must agree closely.
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, (128 + x - y) as u8]));
        let buf = rgb_to_i420(&img);
        let f = buf.view();
        let lb = Letterbox::fit(64, 48, 32, 32);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        i420_to_tensor(&f, &lb, Layout::Nchw, &Normalize::RAW, &mut a).expect("i420");
        rgb_to_tensor(&img, &lb, Layout::Nchw, &Normalize::RAW, &mut b).expect("rgb");
        let max = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(max < 6.0, "max abs diff {max}");
        // Bars are the pad value.
        assert_eq!(a[0], 0.0);
    }

    #[test]
    fn short_planes_are_an_error() {
        let y = vec![0u8; 10];
        let f = I420Frame { width: 64, height: 48, y: &y, u: &y, v: &y, y_stride: 64, uv_stride: 32 };
        assert!(i420_to_tensor(&f, &Letterbox::fit(64, 48, 32, 32), Layout::Nhwc, &Normalize::RAW, &mut Vec::new())
            .is_err());
    }
}

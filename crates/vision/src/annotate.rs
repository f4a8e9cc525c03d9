//! Drawing detections onto a picture: a box per object and a "label score" tag in the
//! built-in 5×7 font ([`crate::font`]).

use crate::font;
use crate::types::Detection;

fn color_of(class: u32) -> [u8; 3] {
    const P: [[u8; 3]; 8] = [
        [255, 56, 56],
        [56, 200, 56],
        [56, 120, 255],
        [255, 180, 0],
        [200, 56, 255],
        [0, 200, 200],
        [255, 100, 180],
        [150, 150, 0],
    ];
    P[class as usize % P.len()]
}

/// Draws boxes and "label score" tags onto the image.
pub fn draw_detections(img: &mut image::RgbImage, dets: &[Detection]) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let thick = ((w.max(h) / 400.0).round() as i64).max(1);
    let scale = ((w.max(h) / 500.0).round() as u32).max(1);
    for d in dets {
        let c = color_of(d.class_id);
        let [bx, by, bw, bh] = d.bbox;
        let (x1, y1) = ((bx * w) as i64, (by * h) as i64);
        let (x2, y2) = (((bx + bw) * w) as i64, ((by + bh) * h) as i64);
        let mut put = |x: i64, y: i64| {
            if x >= 0 && y >= 0 && x < w as i64 && y < h as i64 {
                img.put_pixel(x as u32, y as u32, image::Rgb(c));
            }
        };
        for t in 0..thick {
            for x in x1..=x2 {
                put(x, y1 + t);
                put(x, y2 - t);
            }
            for y in y1..=y2 {
                put(x1 + t, y);
                put(x2 - t, y);
            }
        }
        let text = format!("{} {:.0}%", d.label, d.score * 100.0);
        let th = 9 * scale as i64;
        let ty = if y1 - th >= 0 { y1 - th } else { y1 + thick };
        let tw = font::text_width(&text, scale) as i64 + 2;
        for yy in ty..ty + th {
            for xx in x1..x1 + tw {
                put(xx, yy);
            }
        }
        font::draw_text(img, x1 + 1, ty + scale as i64, &text, scale, [255, 255, 255]);
    }
}

//! Helpers of `callsight detect`: inputs (images, dirs, y4m video), JSON lines, annotated
//! copies. The server's `detect_cmd.rs` only parses arguments and calls [`run`].

use crate::error::{Result, VisionError};
use crate::font;
use crate::types::{DetectOptions, Detection, I420Frame};
use crate::Detector;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Largest picture accepted from a file (guards against decompression bombs).
pub const MAX_PIXELS: u64 = 100_000_000;

/// What `run` does.
#[derive(Clone, Debug, Default)]
pub struct CliOptions {
    pub inputs: Vec<PathBuf>,
    /// Write annotated copies here.
    pub annotate: Option<PathBuf>,
    pub detect: DetectOptions,
}

/// One JSON line of output.
#[derive(Serialize)]
pub struct JsonLine<'a> {
    pub file: &'a str,
    pub frame: usize,
    pub detections: Vec<JsonDetection<'a>>,
}

#[derive(Serialize)]
pub struct JsonDetection<'a> {
    pub label: &'a str,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

impl<'a> JsonLine<'a> {
    pub fn new(file: &'a str, frame: usize, dets: &'a [Detection]) -> JsonLine<'a> {
        JsonLine {
            file,
            frame,
            detections: dets
                .iter()
                .map(|d| JsonDetection {
                    label: &d.label,
                    score: (d.score * 1e4).round() / 1e4,
                    bbox: d.bbox.map(|v| (v * 1e4).round() / 1e4),
                })
                .collect(),
        }
    }
}

/// Decodes a JPEG/PNG from memory, with size limits; a truncated or empty file is an error.
pub fn decode_image(bytes: &[u8]) -> Result<image::RgbImage> {
    // The JPEG decoder fills a cut-off file with grey instead of failing: require the
    // end-of-image marker near the end (FF D9 cannot occur inside entropy-coded data).
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(VisionError::Image("truncated JPEG (no end-of-image marker)".into()));
        }
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Image(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| VisionError::Image(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(VisionError::Image(format!("zero-size image {}x{}", img.width(), img.height())));
    }
    Ok(img.to_rgb8())
}

fn is_input(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "y4m"))
}

/// Expands directories (recursively, sorted) into their image/y4m files. Paths that don't
/// exist are returned as errors; explicit files are kept whatever their extension.
pub fn collect_inputs(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for p in entries {
                    if p.is_dir() {
                        walk(&p, files, errors);
                    } else if is_input(&p) {
                        files.push(p);
                    }
                }
            }
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        }
    }
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut errors);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(format!("{}: no such file or directory", p.display()));
        }
    }
    (files, errors)
}

/// One frame's Y, U, V planes, tightly packed.
pub type Planes = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A YUV4MPEG2 (y4m) reader for 4:2:0 video.
pub struct Y4m<R: Read> {
    reader: BufReader<R>,
    pub width: usize,
    pub height: usize,
}

impl Y4m<std::fs::File> {
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|source| VisionError::Io { path: path.into(), source })?;
        Y4m::new(f)
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
    pub fn new(inner: R) -> Result<Self> {
        let mut reader = BufReader::new(inner);
        let header =
            read_line_limited(&mut reader, "header")?.ok_or_else(|| VisionError::Image("y4m: empty file".into()))?;
        let mut parts = header.split(' ');
        if parts.next() != Some("YUV4MPEG2") {
            return Err(VisionError::Image("not a y4m file (no YUV4MPEG2 header)".into()));
        }
        let (mut w, mut h) = (0usize, 0usize);
        for p in parts {
            let (tag, val) = p.split_at(p.len().min(1));
            match tag {
                "W" => w = val.parse().unwrap_or(0),
                "H" => h = val.parse().unwrap_or(0),
                "C" if !val.starts_with("420") => {
                    return Err(VisionError::Image(format!("y4m: colour space C{val} unsupported (need 4:2:0)")))
                }
                _ => {}
            }
        }
        if w == 0 || h == 0 || (w as u64) * (h as u64) > MAX_PIXELS {
            return Err(VisionError::Image(format!("y4m: bad frame size {w}x{h}")));
        }
        Ok(Y4m { reader, width: w, height: h })
    }

    /// Next frame's planes (Y, U, V, tightly packed), or None at the end.
    pub fn next_frame(&mut self) -> Result<Option<Planes>> {
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
        Ok(Some((y, u, v)))
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
pub fn annotate(img: &mut image::RgbImage, dets: &[Detection]) {
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

/// Parses `--classes person,car,2` against the labels.
pub fn parse_classes(spec: &str, labels: &[String]) -> Result<Vec<u32>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            crate::labels::class_id(labels, s)
                .ok_or_else(|| VisionError::Config(format!("unknown class {:?}", s.trim())))
        })
        .collect()
}

fn annotated_path(dir: &Path, file: &Path, frame: Option<usize>) -> PathBuf {
    let stem = file.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned());
    match frame {
        Some(i) => dir.join(format!("{stem}-{i:05}.png")),
        None => {
            let ext = file.extension().map_or("png".into(), |e| e.to_string_lossy().to_ascii_lowercase());
            let ext = if matches!(ext.as_str(), "jpg" | "jpeg" | "png") { ext } else { "png".into() };
            dir.join(format!("{stem}.{ext}"))
        }
    }
}

/// Runs detection over all inputs: JSON lines to `out`, problems to `err` (one line each,
/// then the next input). Returns the number of inputs that failed.
pub fn run(det: &Detector, opts: &CliOptions, out: &mut dyn Write, err: &mut dyn Write) -> usize {
    let (files, errors) = collect_inputs(&opts.inputs);
    let mut failed = errors.len();
    for e in &errors {
        let _ = writeln!(err, "error: {e}");
    }
    if let Some(dir) = &opts.annotate {
        if let Err(e) = std::fs::create_dir_all(dir) {
            let _ = writeln!(err, "error: --annotate {}: {e}", dir.display());
            return failed + files.len();
        }
    }
    let bar = if files.len() > 1 {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for f in &files {
        bar.set_message(f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        if let Err(e) = run_one(det, opts, f, out) {
            failed += 1;
            bar.suspend(|| {
                let _ = writeln!(err, "error: {}: {e}", f.display());
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    failed
}

fn run_one(det: &Detector, opts: &CliOptions, path: &Path, out: &mut dyn Write) -> Result<()> {
    let name = path.to_string_lossy();
    let io = |e: std::io::Error| VisionError::Io { path: PathBuf::from("<stdout>"), source: e };
    let is_y4m = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if is_y4m {
        let mut y4m = Y4m::open(path)?;
        let (w, h) = (y4m.width, y4m.height);
        let mut i = 0;
        while let Some((y, u, v)) = y4m.next_frame()? {
            let f = I420Frame { width: w, height: h, y: &y, u: &u, v: &v, y_stride: w, uv_stride: w.div_ceil(2) };
            let r = det.detect_i420(&f, &opts.detect)?;
            let line = serde_json::to_string(&JsonLine::new(&name, i, &r.detections))
                .map_err(|e| VisionError::Inference(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
            if let Some(dir) = &opts.annotate {
                let mut img = i420_to_rgb(&f)?;
                annotate(&mut img, &r.detections);
                save(&img, &annotated_path(dir, path, Some(i)))?;
            }
            i += 1;
        }
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io { path: path.into(), source })?;
    let mut img = decode_image(&bytes)?;
    let r = det.detect_rgb(&img, &opts.detect)?;
    let line = serde_json::to_string(&JsonLine::new(&name, 0, &r.detections))
        .map_err(|e| VisionError::Inference(e.to_string()))?;
    writeln!(out, "{line}").map_err(io)?;
    if let Some(dir) = &opts.annotate {
        annotate(&mut img, &r.detections);
        save(&img, &annotated_path(dir, path, None))?;
    }
    Ok(())
}

fn save(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| VisionError::Image(format!("cannot write {}: {e}", path.display())))
}

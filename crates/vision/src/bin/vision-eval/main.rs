//! `vision-eval`: accuracy of the bundled detectors on the labelled photo set
//! (`bench/eval/annotations.json`, photos from `scripts/fetch-eval-set.sh`).
//!
//! For each model × input size × backend × precision: precision and recall at a score
//! threshold (the page's default), AP at IoU 0.5 (mean over classes), the threshold with
//! the best F1; optionally the objects each photo misses. `--detections` evaluates the
//! JSON lines of `callsight detect` (or any detector printing that format) instead.
//!
//! Modules: [`truth`] reads the set, [`metrics`] matches and scores.

mod metrics;
mod truth;

use anyhow::{bail, Context};
use callsight_vision::io::{read_image, ImageLimits};
use callsight_vision::{labels, BackendChoice, DetectOptions, Detector, DetectorConfig, ModelSource, Precision};
use clap::Parser;
use metrics::{evaluate, Det, Evaluation};
use serde::Serialize;
use std::path::{Path, PathBuf};
use truth::EvalSet;

/// The page draws boxes from this score up by default (web/overlay.js, its slider).
const LIVE_THRESHOLD: f32 = 0.4;

#[derive(Parser)]
#[command(about = "Precision, recall and AP@0.5 of the bundled detectors on the labelled photo set")]
struct Args {
    /// The annotation file.
    #[arg(long, default_value_os_t = repo_path("bench/eval/annotations.json"))]
    set: PathBuf,
    /// Directory holding the set's photos.
    #[arg(long, default_value_os_t = test_data("eval"))]
    images: PathBuf,
    /// Bundled models.
    #[arg(long, value_delimiter = ',', default_value = "nanodet,centernet")]
    models: Vec<String>,
    /// Input sizes (long side).
    #[arg(long, value_delimiter = ',', default_value = "320,416,512")]
    sizes: Vec<usize>,
    /// Backends: tract, ort.
    #[arg(long, value_delimiter = ',', default_value = "tract,ort")]
    backends: Vec<BackendChoice>,
    /// Precisions: fp32, int8 (int8: NanoDet on onnxruntime only; other pairs are skipped).
    #[arg(long, value_delimiter = ',', default_value = "fp32,int8")]
    precisions: Vec<Precision>,
    /// Score from which a detection counts for precision and recall (default: the page's).
    #[arg(long, default_value_t = LIVE_THRESHOLD)]
    threshold: f32,
    /// Lowest score kept for AP (the ranking below the threshold).
    #[arg(long, default_value_t = 0.05)]
    floor: f32,
    /// IoU from which a detection matches an object.
    #[arg(long, default_value_t = 0.5)]
    iou: f32,
    /// Shrink each photo by this factor onto a grey canvas of its own size, centred (the
    /// same scenes farther away: small objects); truth boxes follow. 1 = as is.
    #[arg(long, default_value_t = 1.0)]
    shrink: f32,
    /// Only these photos (file names in the set), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print, per row, what each photo misses and its false positives at --threshold.
    #[arg(long)]
    misses: bool,
    /// Print, per row, AP per class.
    #[arg(long)]
    per_class: bool,
    /// Evaluate these detections (JSON lines: {file, detections: [{label, score, box}]},
    /// box [x, y, w, h] normalised, as `callsight detect` prints) instead of running models.
    #[arg(long)]
    detections: Option<PathBuf>,
    /// Also write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// libonnxruntime path (else the usual lookup).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
}

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn test_data(rel: &str) -> PathBuf {
    std::env::var_os("CALLSIGHT_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| repo_path("test-data")).join(rel)
}

/// One line of the table.
#[derive(Serialize)]
struct Row {
    model: String,
    input: String,
    backend: String,
    precision: String,
    photos: usize,
    objects: usize,
    threshold: f32,
    hits: usize,
    false_positives: usize,
    precision_at_threshold: f32,
    recall_at_threshold: f32,
    map50: f32,
    best_f1_threshold: f32,
    best_f1_precision: f32,
    best_f1_recall: f32,
    per_class_ap50: Vec<(String, usize, f32)>,
}

fn row(a: &Args, set: &EvalSet, e: &Evaluation, names: [String; 4]) -> Row {
    let c = e.at(a.threshold);
    let (bt, bc) = e.best_f1(a.floor);
    let [model, input, backend, precision] = names;
    Row {
        model,
        input,
        backend,
        precision,
        photos: set.images.len(),
        objects: c.truths,
        threshold: a.threshold,
        hits: c.hits,
        false_positives: c.wrong,
        precision_at_threshold: c.precision(),
        recall_at_threshold: c.recall(),
        map50: e.map(),
        best_f1_threshold: bt,
        best_f1_precision: bc.precision(),
        best_f1_recall: bc.recall(),
        per_class_ap50: e.per_class(),
    }
}

fn print_row(r: &Row) {
    println!(
        "| {} | {} | {} | {} | {:.3} | {:.3} | {} | {} | {:.3} | {:.2} | {:.3} | {:.3} |",
        r.model,
        r.input,
        r.backend,
        r.precision,
        r.precision_at_threshold,
        r.recall_at_threshold,
        r.hits,
        r.false_positives,
        r.map50,
        r.best_f1_threshold,
        r.best_f1_precision,
        r.best_f1_recall
    );
}

fn fmt_box(b: [f32; 4]) -> String {
    format!("[{:.0}, {:.0}, {:.0}, {:.0}]", b[0], b[1], b[2], b[3])
}

fn print_details(a: &Args, set: &EvalSet, e: &Evaluation, r: &Row) {
    let name = format!("{} {} {} {}", r.model, r.input, r.backend, r.precision);
    if a.per_class {
        println!("\nAP@0.5 per class, {name}:");
        for (label, n, ap) in &r.per_class_ap50 {
            println!("  {label} ({n}): {ap:.3}");
        }
    }
    if a.misses {
        println!("\nPer photo at score ≥ {:.2}, {name} (missed objects; false positives):", a.threshold);
        for (i, im) in set.images.iter().enumerate() {
            let missed = e.missed(&set.images, i, a.threshold);
            let wrong = e.false_positives(i, a.threshold);
            if missed.is_empty() && wrong.is_empty() {
                continue;
            }
            let m: Vec<String> = missed.iter().map(|o| format!("{} {}", o.label, fmt_box(o.bbox))).collect();
            let w: Vec<String> =
                wrong.iter().map(|d| format!("{} {:.2} {}", d.label, d.score, fmt_box(d.bbox))).collect();
            println!("  {}: missed [{}]; false [{}]", im.file, m.join(", "), w.join(", "));
        }
    }
}

fn to_pixels(set: &EvalSet, image: usize, label: &str, score: f32, b: [f32; 4]) -> Det {
    let (w, h) = (set.images[image].width as f32, set.images[image].height as f32);
    Det { image, label: label.to_string(), score, bbox: [b[0] * w, b[1] * h, b[2] * w, b[3] * h] }
}

/// Runs one detector over the set.
fn run_model(a: &Args, set: &EvalSet, det: &Detector) -> anyhow::Result<Vec<Det>> {
    let opts = DetectOptions { score_threshold: a.floor, max_detections: 1000, ..Default::default() };
    let mut out = Vec::new();
    for (i, im) in set.images.iter().enumerate() {
        let path = a.images.join(&im.file);
        let img = read_image(&path, &ImageLimits::default())
            .with_context(|| format!("{}: run scripts/fetch-eval-set.sh", path.display()))?;
        if (img.width(), img.height()) != (im.width, im.height) {
            bail!("{}: {}x{}, the set says {}x{}", path.display(), img.width(), img.height(), im.width, im.height);
        }
        let img = if a.shrink < 1.0 { shrink(&img, a.shrink) } else { img };
        let r = det.detect_rgb(&img, &opts)?;
        out.extend(r.detections.iter().map(|d| to_pixels(set, i, &d.label, d.score, d.bbox)));
    }
    Ok(out)
}

/// The canvas offset of a photo shrunk by `f` (see `--shrink`).
fn shrink_offset(w: u32, h: u32, f: f32) -> (u32, u32, u32, u32) {
    let (sw, sh) = (((w as f32 * f).round() as u32).max(1), ((h as f32 * f).round() as u32).max(1));
    (sw, sh, (w - sw) / 2, (h - sh) / 2)
}

fn shrink(img: &image::RgbImage, f: f32) -> image::RgbImage {
    let (sw, sh, ox, oy) = shrink_offset(img.width(), img.height(), f);
    let small = image::imageops::resize(img, sw, sh, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(img.width(), img.height(), image::Rgb([118, 118, 118]));
    image::imageops::overlay(&mut canvas, &small, i64::from(ox), i64::from(oy));
    canvas
}

/// The truth of the shrunk photos.
fn shrink_truth(set: &mut EvalSet, f: f32) {
    for im in &mut set.images {
        let (sw, sh, ox, oy) = shrink_offset(im.width, im.height, f);
        let (fx, fy) = (sw as f32 / im.width as f32, sh as f32 / im.height as f32);
        for o in im.objects.iter_mut().chain(im.ignore.iter_mut()) {
            let [x, y, w, h] = o.bbox;
            o.bbox = [ox as f32 + x * fx, oy as f32 + y * fy, w * fx, h * fy];
        }
    }
}

#[derive(serde::Deserialize)]
struct Line {
    file: String,
    detections: Vec<LineDet>,
}

#[derive(serde::Deserialize)]
struct LineDet {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

/// Reads JSON-lines detections; files are matched to the set by file name.
fn read_detections(path: &Path, set: &EvalSet) -> anyhow::Result<Vec<Det>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let name = Path::new(&l.file).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(image) = set.images.iter().position(|im| im.file == name) else { continue };
        out.extend(l.detections.iter().map(|d| to_pixels(set, image, &d.label, d.score, d.bbox)));
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let a = Args::parse();
    if !(0.0..=1.0).contains(&a.threshold) || !(0.0..=1.0).contains(&a.floor) || a.floor > a.threshold {
        bail!("need 0 <= --floor <= --threshold <= 1");
    }
    if !(a.shrink > 0.0 && a.shrink <= 1.0) || (a.shrink < 1.0 && a.detections.is_some()) {
        bail!("--shrink must be in (0, 1], and runs the models (not with --detections)");
    }
    let mut set = EvalSet::load(&a.set, &labels::coco80())?.select(&a.only)?;
    if a.shrink < 1.0 {
        shrink_truth(&mut set, a.shrink);
    }
    let objects: usize = set.images.iter().map(|im| im.objects.len()).sum();
    println!(
        "{} photos{}, {} objects ({}); P/R at score ≥ {:.2}, AP@{:.2} over detections ≥ {:.2}\n",
        set.images.len(),
        if a.shrink < 1.0 { format!(" shrunk to {:.0} %", a.shrink * 100.0) } else { String::new() },
        objects,
        a.set.display(),
        a.threshold,
        a.iou,
        a.floor
    );
    println!(
        "| model | input | backend | precision | P@{t:.2} | R@{t:.2} | hits | false + | mAP@0.5 | best-F1 score | P | R |",
        t = a.threshold
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut details = Vec::new();
    if let Some(path) = &a.detections {
        let dets = read_detections(path, &set)?;
        let e = evaluate(&set.images, &dets, a.iou);
        let name = path.file_name().map_or("detections".into(), |n| n.to_string_lossy().into_owned());
        let r = row(&a, &set, &e, [name, "-".into(), "-".into(), "-".into()]);
        print_row(&r);
        details.push((e, rows.len()));
        rows.push(r);
    } else {
        let mut skipped = Vec::new();
        for model in &a.models {
            for &size in &a.sizes {
                for &backend in &a.backends {
                    for &precision in &a.precisions {
                        let label = |b: BackendChoice| if b == BackendChoice::Tract { "tract" } else { "onnxruntime" };
                        if precision == Precision::Int8 && (model != "nanodet" || backend == BackendChoice::Tract) {
                            skipped.push(format!("{model} {size} {} int8", label(backend)));
                            continue;
                        }
                        let config = DetectorConfig {
                            model: ModelSource::Bundled(model.clone()),
                            backend,
                            onnxruntime_path: a.onnxruntime.clone(),
                            threads: 1,
                            detect_size: Some(size),
                            workers: 1,
                            precision,
                            ..DetectorConfig::default()
                        };
                        let det = Detector::load(&config).with_context(|| format!("loading {model} {size}"))?;
                        let dets = run_model(&a, &set, &det)?;
                        let e = evaluate(&set.images, &dets, a.iou);
                        let prec = if precision == Precision::Int8 { "int8" } else { "fp32" };
                        let r =
                            row(&a, &set, &e, [model.clone(), size.to_string(), det.info().backend, prec.to_string()]);
                        print_row(&r);
                        details.push((e, rows.len()));
                        rows.push(r);
                    }
                }
            }
        }
        if !skipped.is_empty() {
            println!("\n(no int8 model for: {})", skipped.join(", "));
        }
    }
    for (e, i) in &details {
        print_details(&a, &set, e, &rows[*i]);
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use truth::{ImageTruth, Object};

    #[test]
    fn shrunk_photos_and_their_truth_line_up() {
        // A 100x60 photo, white box at [20, 10, 40, 20] on black; shrunk to half it sits
        // centred at offset (25, 15), so the box becomes [35, 20, 20, 10].
        let img = image::RgbImage::from_fn(100, 60, |x, y| {
            let inside = (20..60).contains(&x) && (10..30).contains(&y);
            image::Rgb(if inside { [255; 3] } else { [0; 3] })
        });
        let mut set = EvalSet {
            images: vec![ImageTruth {
                file: "a.png".into(),
                width: 100,
                height: 60,
                objects: vec![Object { label: "person".into(), bbox: [20.0, 10.0, 40.0, 20.0] }],
                ignore: vec![Object { label: "cat".into(), bbox: [0.0, 0.0, 100.0, 60.0] }],
            }],
        };
        shrink_truth(&mut set, 0.5);
        assert_eq!(set.images[0].objects[0].bbox, [35.0, 20.0, 20.0, 10.0]);
        assert_eq!(set.images[0].ignore[0].bbox, [25.0, 15.0, 50.0, 30.0]);
        let small = shrink(&img, 0.5);
        assert_eq!(small.dimensions(), (100, 60));
        assert_eq!(small.get_pixel(45, 25).0, [255; 3], "box centre is white");
        assert_eq!(small.get_pixel(30, 18).0, [0; 3], "photo outside the box is black");
        assert_eq!(small.get_pixel(5, 5).0, [118; 3], "the canvas is grey");
    }
}

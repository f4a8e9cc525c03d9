//! `callsight detect`: run the detector over images, directories and y4m video from the
//! command line (one JSON line per image/frame, annotated copies, a progress bar). The
//! library provides the readers (`callsight_vision::io`) and the drawing
//! (`callsight_vision::annotate`); walking inputs and the output format live here.

use anyhow::Context;
use callsight_vision::annotate::draw_detections;
use callsight_vision::args::DetectorArgs;
use callsight_vision::io::{i420_to_rgb, read_image, ImageLimits, Y4m};
use callsight_vision::{labels, DetectOptions, Detection, Detector, DetectorConfig};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct DetectArgs {
    /// Images (jpg, png), y4m videos, or directories of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write copies with boxes and labels drawn into this directory.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,
    /// Minimum score (0..1).
    #[arg(long, default_value_t = DetectOptions::default().score_threshold)]
    pub threshold: f32,
    /// Keep only these classes: names or ids, comma-separated (e.g. person,car).
    #[arg(long)]
    pub classes: Option<String>,
    /// Largest picture accepted, width × height (images and y4m frames); bigger ones are
    /// refused before decoding.
    #[arg(long, default_value_t = ImageLimits::DEFAULT_MAX_PIXELS)]
    pub max_image_pixels: u64,
    /// Largest image file accepted, in bytes.
    #[arg(long, default_value_t = ImageLimits::DEFAULT_MAX_FILE_BYTES)]
    pub max_image_bytes: u64,
    #[command(flatten)]
    pub detector: DetectorArgs,
}

impl DetectArgs {
    pub fn detector_config(&self) -> DetectorConfig {
        let mut config = self.detector.config(1);
        // One file at a time: all cores go to the one inference.
        if config.threads == 0 {
            config.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        config
    }
}

/// What [`run_inputs`] does.
#[derive(Clone, Debug, Default)]
pub struct CliOptions {
    pub inputs: Vec<PathBuf>,
    /// Write annotated copies here.
    pub annotate: Option<PathBuf>,
    pub detect: DetectOptions,
    pub limits: ImageLimits,
}

pub fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let det = Detector::load(&args.detector_config()).context("loading the detector")?;
    let info = det.info();
    tracing::info!(backend = %info.backend, version = %info.version, threads = info.threads, model = %info.model, "detect");
    let classes = match &args.classes {
        Some(spec) => Some(labels::parse_classes(spec, det.labels())?),
        None => None,
    };
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold {} is outside 0..1", args.threshold);
    }
    let opts = CliOptions {
        inputs: args.inputs.clone(),
        annotate: args.annotate.clone(),
        detect: DetectOptions { score_threshold: args.threshold, classes, ..Default::default() },
        limits: ImageLimits { max_pixels: args.max_image_pixels, max_file_bytes: args.max_image_bytes },
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let failed = run_inputs(&det, &opts, &mut stdout.lock(), &mut stderr.lock());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
pub fn run_inputs(det: &Detector, opts: &CliOptions, out: &mut dyn Write, err: &mut dyn Write) -> usize {
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
                let _ = writeln!(err, "error: {}: {e:#}", f.display());
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    failed
}

fn run_one(det: &Detector, opts: &CliOptions, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let name = path.to_string_lossy();
    let io = |e: std::io::Error| anyhow::Error::new(e).context("writing to stdout");
    let is_y4m = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if is_y4m {
        let mut y4m = Y4m::open(path, &opts.limits)?;
        let mut i = 0;
        while let Some(frame) = y4m.next_frame()? {
            let f = frame.view();
            let r = det.detect_i420(&f, &opts.detect)?;
            let line = serde_json::to_string(&JsonLine::new(&name, i, &r.detections))?;
            writeln!(out, "{line}").map_err(io)?;
            if let Some(dir) = &opts.annotate {
                let mut img = i420_to_rgb(&f)?;
                draw_detections(&mut img, &r.detections);
                save(&img, &annotated_path(dir, path, Some(i)))?;
            }
            i += 1;
        }
        return Ok(());
    }
    let mut img = read_image(path, &opts.limits)?;
    let r = det.detect_rgb(&img, &opts.detect)?;
    let line = serde_json::to_string(&JsonLine::new(&name, 0, &r.detections))?;
    writeln!(out, "{line}").map_err(io)?;
    if let Some(dir) = &opts.annotate {
        draw_detections(&mut img, &r.detections);
        save(&img, &annotated_path(dir, path, None))?;
    }
    Ok(())
}

fn save(img: &image::RgbImage, path: &Path) -> anyhow::Result<()> {
    img.save(path).with_context(|| format!("cannot write {}", path.display()))
}

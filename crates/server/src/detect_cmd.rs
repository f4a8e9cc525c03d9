//! `callsight detect`: run the detector over images, directories and y4m video from the
//! command line (one JSON line per image/frame). The logic lives in `callsight_vision::cli`.

use anyhow::Context;
use callsight_vision::cli::{self, CliOptions};
use callsight_vision::{BackendChoice, DetectOptions, Detector, DetectorConfig, ModelKind, ModelSource};
use std::path::PathBuf;
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
    /// Bundled model: nanodet (default) or centernet.
    #[arg(long, conflicts_with = "model")]
    pub model_name: Option<String>,
    /// A user ONNX model instead of the bundled one (needs --model-kind).
    #[arg(long, value_name = "FILE.onnx", requires = "model_kind")]
    pub model: Option<PathBuf>,
    /// Family of --model: yolov8, yolov5, nanodet or centernet.
    #[arg(long)]
    pub model_kind: Option<ModelKind>,
    /// Class names of --model, one per line (default: COCO-80).
    #[arg(long, value_name = "FILE", requires = "model")]
    pub labels: Option<PathBuf>,
    /// Inference backend: auto (onnxruntime if found, else tract), ort, tract.
    #[arg(long, default_value = "auto")]
    pub backend: BackendChoice,
    /// Path of libonnxruntime.so (else CALLSIGHT_ONNXRUNTIME / ORT_DYLIB_PATH, the Python
    /// onnxruntime package, system paths).
    #[arg(long, value_name = "PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Long side of the network input in pixels (multiple of 32; default per model).
    #[arg(long)]
    pub detect_size: Option<usize>,
}

impl DetectArgs {
    pub fn detector_config(&self) -> DetectorConfig {
        let model = match (&self.model, &self.model_name) {
            (Some(path), _) => ModelSource::File {
                path: path.clone(),
                kind: self.model_kind.unwrap_or(ModelKind::YoloV8),
                labels: self.labels.clone(),
            },
            (None, Some(name)) => ModelSource::Bundled(name.clone()),
            (None, None) => ModelSource::Default,
        };
        DetectorConfig {
            model,
            backend: self.backend,
            onnxruntime_path: self.onnxruntime.clone(),
            // One file at a time: all cores go to the one inference.
            threads: if self.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                self.threads
            },
            detect_size: self.detect_size,
            workers: 1,
        }
    }
}

pub fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let det = Detector::load(&args.detector_config()).context("loading the detector")?;
    let info = det.info();
    tracing::info!(backend = %info.backend, version = %info.version, threads = info.threads, model = %info.model, "detect");
    let classes = match &args.classes {
        Some(spec) => Some(cli::parse_classes(spec, det.labels())?),
        None => None,
    };
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold {} is outside 0..1", args.threshold);
    }
    let opts = CliOptions {
        inputs: args.inputs.clone(),
        annotate: args.annotate.clone(),
        detect: DetectOptions { score_threshold: args.threshold, classes, ..Default::default() },
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let failed = cli::run(&det, &opts, &mut stdout.lock(), &mut stderr.lock());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

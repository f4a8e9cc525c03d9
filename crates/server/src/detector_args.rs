//! Detector flags shared by `callsight` (serve) and `callsight detect`.

use callsight_vision::{BackendChoice, DetectorConfig, ModelKind, ModelSource, Precision};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct DetectorArgs {
    /// A bundled model by name: centernet or nanodet (default: the bundled default).
    #[arg(long, env = "CALLSIGHT_MODEL_NAME", conflicts_with = "model")]
    pub model_name: Option<String>,
    /// Your own ONNX model file (needs --model-kind).
    #[arg(long, env = "CALLSIGHT_MODEL", requires = "model_kind")]
    pub model: Option<PathBuf>,
    /// The family of --model: yolov8, yolov5, nanodet or centernet.
    #[arg(long, env = "CALLSIGHT_MODEL_KIND")]
    pub model_kind: Option<ModelKind>,
    /// Class names of --model, one per line (default: the 80 COCO classes).
    #[arg(long, env = "CALLSIGHT_LABELS", requires = "model")]
    pub labels: Option<PathBuf>,
    /// Inference runtime: auto (onnxruntime when found, else tract), ort, or tract.
    #[arg(long, env = "CALLSIGHT_BACKEND", default_value = "auto")]
    pub backend: BackendChoice,
    /// Path of libonnxruntime.so (else $CALLSIGHT_ONNXRUNTIME, the Python package, system paths).
    #[arg(long = "onnxruntime")]
    pub onnxruntime_path: Option<PathBuf>,
    /// Threads per inference (0 = the backend's choice).
    #[arg(long, env = "CALLSIGHT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Long side of the network input in pixels, e.g. 320, 416 or 512 (default: the model's own).
    #[arg(long, env = "CALLSIGHT_DETECT_SIZE")]
    pub detect_size: Option<usize>,
    /// fp32, or int8 (the bundled NanoDet quantised: about 2.4x faster on onnxruntime,
    /// needs onnxruntime; accuracy in models/README.md).
    #[arg(long, env = "CALLSIGHT_PRECISION", default_value = "fp32")]
    pub precision: Precision,
    /// Largest --model file accepted, in bytes.
    #[arg(long, env = "CALLSIGHT_MAX_MODEL_BYTES", default_value_t = DetectorConfig::DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,
}

impl DetectorArgs {
    /// The detector configuration for `workers` concurrent callers.
    pub fn config(&self, workers: usize) -> DetectorConfig {
        let model = match (&self.model, self.model_kind, &self.model_name) {
            (Some(path), Some(kind), _) => ModelSource::File { path: path.clone(), kind, labels: self.labels.clone() },
            (_, _, Some(name)) => ModelSource::Bundled(name.clone()),
            _ => ModelSource::Default,
        };
        DetectorConfig {
            model,
            backend: self.backend,
            onnxruntime_path: self.onnxruntime_path.clone(),
            threads: self.threads,
            detect_size: self.detect_size,
            workers,
            max_model_bytes: self.max_model_bytes,
            precision: self.precision,
        }
    }
}

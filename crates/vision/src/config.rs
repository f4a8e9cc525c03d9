//! Detector configuration: which model, which backend, threads, detect size.

use std::path::PathBuf;

/// Network families the decoders understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// CenterNet, either the full graph (rows `[x1,y1,x2,y2,score,class]`) or cut at the raw heads.
    CenterNet,
    NanoDet,
    YoloV8,
    YoloV5,
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "centernet" => Ok(ModelKind::CenterNet),
            "nanodet" => Ok(ModelKind::NanoDet),
            "yolov8" | "yolo8" => Ok(ModelKind::YoloV8),
            "yolov5" | "yolo5" => Ok(ModelKind::YoloV5),
            other => Err(format!("unknown model kind {other:?} (expected yolov8, yolov5, nanodet or centernet)")),
        }
    }
}

/// Where the model comes from.
#[derive(Clone, Debug, Default)]
pub enum ModelSource {
    /// The bundled default model (embedded in the binary).
    #[default]
    Default,
    /// A bundled model by name: "centernet" or "nanodet".
    Bundled(String),
    /// A user-supplied ONNX file.
    File {
        path: PathBuf,
        kind: ModelKind,
        /// Labels file, one class name per line (default: COCO-80).
        labels: Option<PathBuf>,
    },
}

/// Which inference runtime to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// onnxruntime if it can be found and loaded, else tract (with a warning).
    #[default]
    Auto,
    /// onnxruntime or a clear error.
    Ort,
    /// tract (pure Rust, always available).
    Tract,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "ort" | "onnxruntime" => Ok(BackendChoice::Ort),
            "tract" => Ok(BackendChoice::Tract),
            other => Err(format!("unknown backend {other:?} (expected auto, ort or tract)")),
        }
    }
}

/// Numeric precision of the bundled model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The float model (any backend).
    #[default]
    Fp32,
    /// NanoDet quantised to int8 (`models/nanodet-int8.onnx`): onnxruntime only (tract
    /// runs it slower than float), bundled NanoDet only.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float" | "f32" => Ok(Precision::Fp32),
            "int8" | "i8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision {other:?} (expected fp32 or int8)")),
        }
    }
}

/// Everything [`crate::Detector::load`] needs.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub model: ModelSource,
    pub backend: BackendChoice,
    /// Explicit libonnxruntime path (else env, Python package, system paths).
    pub onnxruntime_path: Option<PathBuf>,
    /// Intra-op threads per inference (0 = 1: one thread per inference, several workers
    /// in parallel measured faster on 2 cores; tract always uses 1).
    pub threads: usize,
    /// Long side of the network input in pixels (None = the model's native size).
    /// Models with a fixed input shape ignore it (with a warning).
    pub detect_size: Option<usize>,
    /// Concurrent inferences the backend is prepared for (onnxruntime: one session each;
    /// 0 = one per core). See [`crate::Detector::recommended_workers`].
    pub workers: usize,
    /// Largest model file accepted (`--max-model-bytes`); the bundled ones are 8-15 MB.
    pub max_model_bytes: u64,
    /// fp32 (default) or int8 (bundled NanoDet with onnxruntime).
    pub precision: Precision,
}

impl DetectorConfig {
    pub const DEFAULT_MAX_MODEL_BYTES: u64 = 256 << 20;
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: ModelSource::Default,
            backend: BackendChoice::Auto,
            onnxruntime_path: None,
            threads: 0,
            detect_size: None,
            workers: 0,
            max_model_bytes: Self::DEFAULT_MAX_MODEL_BYTES,
            precision: Precision::Fp32,
        }
    }
}

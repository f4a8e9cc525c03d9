//! The detector's command-line flags, declared once (feature `cli`): `callsight` (serve and
//! `callsight detect`), `media-load` and `vision-bench` flatten them into their own
//! arguments with `#[command(flatten)]`.
//!
//! - [`ModelArgs`]: which model (bundled or a file), its precision, and where onnxruntime
//!   is; what a sweep over backends, sizes and threads (`vision-bench`) starts from.
//! - [`DetectorArgs`]: `ModelArgs` plus one backend, threads and detect size.

use crate::bundled::DEFAULT_MODEL;
use crate::config::{BackendChoice, DetectorConfig, ModelKind, ModelSource, Precision};
use clap::Args;
use std::path::PathBuf;

/// Which model runs, and which onnxruntime library it may run on.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
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
    /// fp32, or int8 (the bundled NanoDet quantised: about 2.4x faster on onnxruntime,
    /// needs onnxruntime; accuracy in models/README.md).
    #[arg(long, env = "CALLSIGHT_PRECISION", default_value = "fp32")]
    pub precision: Precision,
    /// Largest --model file accepted, in bytes.
    #[arg(long, env = "CALLSIGHT_MAX_MODEL_BYTES", default_value_t = DetectorConfig::DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,
    /// Path of libonnxruntime.so (else $CALLSIGHT_ONNXRUNTIME, the Python package, system paths).
    #[arg(long = "onnxruntime")]
    pub onnxruntime_path: Option<PathBuf>,
}

impl ModelArgs {
    /// Where the model comes from.
    pub fn source(&self) -> ModelSource {
        match (&self.model, self.model_kind, &self.model_name) {
            (Some(path), Some(kind), _) => ModelSource::File { path: path.clone(), kind, labels: self.labels.clone() },
            (_, _, Some(name)) => ModelSource::Bundled(name.clone()),
            _ => ModelSource::Default,
        }
    }

    /// The bundled model's name, None for a model file.
    pub fn bundled_name(&self) -> Option<&str> {
        match (&self.model, &self.model_name) {
            (Some(_), _) => None,
            (None, Some(name)) => Some(name),
            (None, None) => Some(DEFAULT_MODEL),
        }
    }

    /// A configuration with this model and the given runtime choices.
    pub fn config(
        &self,
        backend: BackendChoice,
        threads: usize,
        detect_size: Option<usize>,
        workers: usize,
    ) -> DetectorConfig {
        DetectorConfig {
            model: self.source(),
            backend,
            onnxruntime_path: self.onnxruntime_path.clone(),
            threads,
            detect_size,
            workers,
            max_model_bytes: self.max_model_bytes,
            precision: self.precision,
        }
    }
}

/// The detector of a program that runs one: model, backend, threads and detect size.
#[derive(Args, Clone, Debug)]
pub struct DetectorArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Inference runtime: auto (onnxruntime when found, else tract), ort, or tract.
    #[arg(long, env = "CALLSIGHT_BACKEND", default_value = "auto")]
    pub backend: BackendChoice,
    /// Threads per inference (0 = the backend's choice).
    #[arg(long, env = "CALLSIGHT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Long side of the network input in pixels, e.g. 320, 416 or 512 (default: the model's own).
    #[arg(long, env = "CALLSIGHT_DETECT_SIZE")]
    pub detect_size: Option<usize>,
}

impl DetectorArgs {
    /// The detector configuration for `workers` concurrent callers.
    pub fn config(&self, workers: usize) -> DetectorConfig {
        self.model.config(self.backend, self.threads, self.detect_size, workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        detector: DetectorArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn flags_map_to_the_config() {
        let c = parse(&["--model-name", "centernet", "--backend", "tract", "--threads", "2", "--detect-size", "320"])
            .expect("valid flags")
            .detector
            .config(3);
        assert!(matches!(c.model, ModelSource::Bundled(ref n) if n == "centernet"));
        assert_eq!((c.backend, c.threads, c.detect_size, c.workers), (BackendChoice::Tract, 2, Some(320), 3));
        let file = parse(&["--model", "m.onnx", "--model-kind", "yolov8"]).expect("valid flags").detector;
        assert!(matches!(file.config(1).model, ModelSource::File { kind: ModelKind::YoloV8, .. }));
        assert_eq!(file.model.bundled_name(), None);
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(parse(&["--model", "m.onnx"]).is_err(), "a model file needs its kind");
        assert!(parse(&["--model-name", "nanodet", "--model", "m.onnx", "--model-kind", "nanodet"]).is_err());
        assert!(parse(&["--labels", "l.txt"]).is_err(), "labels belong to a model file");
        assert!(parse(&["--backend", "gpu"]).is_err());
    }
}

//! Errors of the vision crate.

use std::path::PathBuf;

/// Everything that can go wrong loading a model or detecting on a frame.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, over the limit of {limit} ({flag})")]
    TooLarge { path: PathBuf, size: u64, limit: u64, flag: String },
    #[error("cannot decode image: {0}")]
    Image(String),
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    #[error("invalid model: {0}")]
    Model(String),
    #[error("model shape mismatch: expected {expected}, found {found}")]
    Shape { expected: String, found: String },
    #[error("invalid labels file: {0}")]
    Labels(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("onnxruntime unavailable: {0}")]
    OrtUnavailable(String),
    #[error("backend {0} is not compiled in (enable the cargo feature)")]
    BackendNotBuilt(&'static str),
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;

//! Object detection on video frames (COCO-80), see issues 3 and 6.
//!
//! Module map:
//! - [`types`]: frames in (`I420Frame`), detections out (`Detection`, `DetectionResult`).
//! - [`config`]: `DetectorConfig` (model, backend, threads, detect size).
//! - [`detector`]: `Detector`, the entry point.
//! - [`error`]: `VisionError`.

pub mod config;
pub mod detector;
pub mod error;
pub mod types;

pub use config::{BackendChoice, DetectorConfig, ModelKind, ModelSource};
pub use detector::Detector;
pub use error::VisionError;
pub use types::{BackendInfo, DetectOptions, Detection, DetectionResult, I420Frame};

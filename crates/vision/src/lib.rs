//! Object detection on video frames (COCO-80), see issues 3 and 6.
//!
//! Module map:
//! - [`types`]: frames in (`I420Frame`), detections out (`Detection`, `DetectionResult`).
//! - [`config`]: `DetectorConfig` (model, backend, threads, detect size).
//! - [`detector`]: `Detector`, the entry point: pre-process → backend → decode → NMS.
//! - [`preprocess`]: letterbox straight from I420 (strided planes) or RGB into the tensor.
//! - [`backend`]: the backend trait and tract; [`ort_backend`] (feature `ort`) onnxruntime;
//!   [`ortlib`] finds and checks libonnxruntime.
//! - [`decode`]: output decoders (CenterNet full/heads, NanoDet, YOLOv8/v5); [`nms`].
//! - [`bundled`]: models embedded in the binary; [`labels`]: COCO-80 and label files.
//! - [`cli`]: helpers of `callsight detect` (inputs, y4m, annotation, JSON lines).
//! - [`font`]: a 5×7 bitmap font for annotations.
//! - [`error`]: the crate's error type, `VisionError`.

pub mod backend;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detector;
pub mod error;
pub mod font;
pub mod labels;
pub mod nms;
#[cfg(feature = "ort")]
pub mod ort_backend;
pub mod ortlib;
pub mod preprocess;
pub mod types;

pub use config::{BackendChoice, DetectorConfig, ModelKind, ModelSource};
pub use detector::Detector;
pub use error::VisionError;
pub use types::{BackendInfo, DetectOptions, Detection, DetectionResult, I420Frame};

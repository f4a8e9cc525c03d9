//! Object detection on video frames (COCO-80), see issues 3 and 6.
//!
//! Module map:
//! - [`types`]: frames in (`I420Frame`, borrowed; `I420Buffer`, owned), detections out (`Detection`, `DetectionResult`).
//! - [`config`]: `DetectorConfig` (model, backend, threads, detect size).
//! - [`detector`]: `Detector`, the entry point: pre-process → backend → decode → NMS.
//! - [`preprocess`]: letterbox straight from I420 (strided planes) or RGB into the tensor.
//! - [`backend`]: the backend trait and tract; [`ort_backend`] (feature `ort`) onnxruntime;
//!   [`ortlib`] finds and checks libonnxruntime.
//! - [`decode`]: output decoders (CenterNet full/heads, NanoDet, YOLOv8/v5); [`nms`].
//! - [`bundled`]: models embedded in the binary; [`labels`]: COCO-80 and label files.
//! - [`io`]: reading untrusted pictures (bounded bytes and pixels) and y4m video.
//! - [`args`] (feature `cli`): the detector's command-line flags, declared once for every
//!   program that runs a detector.
//! - [`annotate`]: drawing detections onto a picture.
//! - [`font`]: a 5×7 bitmap font for annotations.
//! - [`motion`]: the motion gate (sans-IO): does this frame need a new inference?
//! - [`track`]: the multi-object tracker (ByteTrack-class, sans-IO): stable ids, velocity.
//! - [`error`]: the crate's error type, `VisionError`.

pub mod annotate;
#[cfg(feature = "cli")]
pub mod args;
pub mod backend;
pub mod bundled;
pub mod config;
pub mod decode;
pub mod detector;
pub mod error;
pub mod font;
pub mod io;
pub mod labels;
pub mod motion;
pub mod nms;
#[cfg(feature = "ort")]
pub mod ort_backend;
pub mod ortlib;
pub mod preprocess;
pub mod track;
pub mod types;

pub use config::{BackendChoice, DetectorConfig, ModelKind, ModelSource, Precision};
pub use detector::Detector;
pub use error::VisionError;
pub use motion::{MotionConfig, MotionGate, MotionVerdict};
pub use track::{TrackedObject, Tracker, TrackerConfig};
pub use types::{BackendInfo, DetectOptions, Detection, DetectionResult, I420Buffer, I420Frame};

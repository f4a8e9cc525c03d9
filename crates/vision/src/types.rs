//! Public data types: frames in, detections out.

use serde::Serialize;

/// One decoded video frame in I420 (planar YUV 4:2:0), as a decoder hands it over:
/// planes may be padded, so rows are read with the strides.
#[derive(Clone, Copy, Debug)]
pub struct I420Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
}

/// One I420 frame that owns its planes, compact (strides = widths): what the y4m reader,
/// the media leg's decoder stage, tests and benches hold. [`I420Buffer::view`] lends it
/// to the detector and the motion gate as an [`I420Frame`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct I420Buffer {
    pub width: usize,
    pub height: usize,
    /// `width × height` luma bytes.
    pub y: Vec<u8>,
    /// `⌈width/2⌉ × ⌈height/2⌉` chroma bytes each.
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl I420Buffer {
    /// The frame as the detector and the motion gate read it.
    pub fn view(&self) -> I420Frame<'_> {
        I420Frame {
            width: self.width,
            height: self.height,
            y: &self.y,
            u: &self.u,
            v: &self.v,
            y_stride: self.width,
            uv_stride: self.width.div_ceil(2),
        }
    }
}

/// One detected object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Detection {
    pub class_id: u32,
    pub label: String,
    pub score: f32,
    /// `[x, y, w, h]`, normalised to the frame (0..1).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// Per-call filtering options.
#[derive(Clone, Debug)]
pub struct DetectOptions {
    pub score_threshold: f32,
    /// Keep only these class ids (None = all).
    pub classes: Option<Vec<u32>>,
    pub max_detections: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            // NanoDet (the default model) puts its false positives at 0.30-0.34 on the test
            // photos (docs/vision.md); the objects that matter score higher.
            score_threshold: 0.35,
            classes: None,
            max_detections: 100,
        }
    }
}

/// Detections of one frame plus timing.
#[derive(Clone, Debug, Serialize)]
pub struct DetectionResult {
    pub detections: Vec<Detection>,
    /// Time spent in the network itself.
    pub inference_ms: f32,
    /// Pre-processing + inference + decoding.
    pub total_ms: f32,
}

/// What the detector runs on; shown in logs and `/healthz`.
#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    /// "tract" or "onnxruntime".
    pub backend: String,
    pub version: String,
    pub threads: usize,
    /// Inferences that can run at once (onnxruntime sessions; tract shares one plan).
    pub workers: usize,
    pub model: String,
    /// Input size of the network as `[width, height]` for the default (square) case.
    pub input_size: [usize; 2],
}

//! The `Detector`: model + backend + pre/post-processing.

use crate::config::DetectorConfig;
use crate::error::{Result, VisionError};
use crate::types::{BackendInfo, DetectOptions, DetectionResult, I420Frame};

/// A loaded detector; `Send + Sync`, share it via `Arc`.
pub struct Detector {
    info: BackendInfo,
}

impl Detector {
    pub fn load(_config: &DetectorConfig) -> Result<Detector> {
        Err(VisionError::Config("not implemented yet".into()))
    }

    pub fn detect_i420(&self, _frame: &I420Frame<'_>, _opts: &DetectOptions) -> Result<DetectionResult> {
        Err(VisionError::Config("not implemented yet".into()))
    }

    pub fn detect_rgb(&self, _image: &image::RgbImage, _opts: &DetectOptions) -> Result<DetectionResult> {
        Err(VisionError::Config("not implemented yet".into()))
    }

    pub fn info(&self) -> BackendInfo {
        self.info.clone()
    }

    /// How many frames the live scheduler should detect concurrently.
    pub fn recommended_workers(&self) -> usize {
        1
    }
}

//! Class names: COCO-80 (the bundled models' classes) and user label files.

use crate::error::{Result, VisionError};
use std::path::Path;

/// COCO-80 names in the order the bundled models number them (0-based).
pub const COCO80: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// The COCO-80 names as owned strings.
pub fn coco80() -> Vec<String> {
    COCO80.iter().map(|s| s.to_string()).collect()
}

/// Parses a labels file: one name per line, blank lines and `#` comments skipped.
pub fn parse_labels(text: &str) -> Result<Vec<String>> {
    let labels: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    if labels.is_empty() {
        return Err(VisionError::Labels("no labels found".into()));
    }
    Ok(labels)
}

/// Reads a labels file from disk.
pub fn load_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io { path: path.to_path_buf(), source })?;
    parse_labels(&text).map_err(|e| VisionError::Labels(format!("{}: {e}", path.display())))
}

/// Resolves a class name (case-insensitive) or numeric id to an id.
pub fn class_id(labels: &[String], name_or_id: &str) -> Option<u32> {
    let s = name_or_id.trim();
    if let Ok(id) = s.parse::<u32>() {
        return ((id as usize) < labels.len()).then_some(id);
    }
    labels.iter().position(|l| l.eq_ignore_ascii_case(s)).map(|i| i as u32)
}

/// Parses `--classes person,car,2` against the labels.
pub fn parse_classes(spec: &str, labels: &[String]) -> Result<Vec<u32>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| class_id(labels, s).ok_or_else(|| VisionError::Config(format!("unknown class {:?}", s.trim()))))
        .collect()
}

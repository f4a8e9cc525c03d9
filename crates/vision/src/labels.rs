//! Class names: COCO-80 (the bundled models' classes) and user label files.

use crate::error::{Result, VisionError};
use std::path::Path;

/// The COCO-80 names, one per line, line *i* = class id *i* of the bundled models: the
/// one table of them, `models/coco80.txt` (provenance and checksum in models/README.md),
/// embedded. The web client asks the server for it (`GET /api/labels`).
pub static COCO80_TXT: &str = include_str!("../../../models/coco80.txt");

/// The COCO-80 name of class `id`, None outside 0..80.
pub fn coco80_name(id: u32) -> Option<&'static str> {
    COCO80_TXT.lines().nth(id as usize)
}

/// The COCO-80 names as owned strings.
pub fn coco80() -> Vec<String> {
    COCO80_TXT.lines().map(str::to_string).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco80_has_80_names_in_model_order() {
        let names = coco80();
        assert_eq!(names.len(), 80);
        assert!(names.iter().all(|n| !n.trim().is_empty() && n.trim() == n), "{names:?}");
        assert_eq!(
            (coco80_name(0), coco80_name(5), coco80_name(79)),
            (Some("person"), Some("bus"), Some("toothbrush"))
        );
        assert_eq!(coco80_name(80), None);
        assert_eq!(parse_labels(COCO80_TXT).expect("parses"), names);
    }
}

//! The labelled evaluation set (`bench/eval/annotations.json`): photos, their source
//! package and licence, and hand-checked COCO boxes in pixels (`[x, y, w, h]`).

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::Path;

/// The annotation file. Unknown fields (provenance, notes) are allowed and ignored here.
#[derive(Debug, Deserialize)]
pub struct EvalSet {
    pub images: Vec<ImageTruth>,
}

#[derive(Debug, Deserialize)]
pub struct ImageTruth {
    /// File name inside the images directory.
    pub file: String,
    pub width: u32,
    pub height: u32,
    /// Objects a person would label: each must be found.
    #[serde(default)]
    pub objects: Vec<Object>,
    /// Regions where detections of that label are neither right nor wrong (crowds,
    /// reflections, objects only partly of the class): COCO's `iscrowd`.
    #[serde(default)]
    pub ignore: Vec<Object>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Object {
    /// COCO-80 class name, as in models/coco80.txt.
    pub label: String,
    /// `[x, y, w, h]` in pixels of the photo.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

impl EvalSet {
    /// Reads and checks the file: known labels, boxes inside their photo, unique names.
    pub fn load(path: &Path, labels: &[String]) -> anyhow::Result<EvalSet> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let set: EvalSet = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut names = std::collections::HashSet::new();
        for im in &set.images {
            if !names.insert(im.file.as_str()) {
                bail!("{}: {} is listed twice", path.display(), im.file);
            }
            for o in im.objects.iter().chain(&im.ignore) {
                if !labels.iter().any(|l| l == &o.label) {
                    bail!("{}: {}: unknown label {:?}", path.display(), im.file, o.label);
                }
                let [x, y, w, h] = o.bbox;
                let inside =
                    x >= -1.0 && y >= -1.0 && x + w <= im.width as f32 + 1.0 && y + h <= im.height as f32 + 1.0;
                if !(w > 0.0 && h > 0.0 && inside) {
                    bail!("{}: {}: box {:?} is not inside {}x{}", path.display(), im.file, o.bbox, im.width, im.height);
                }
            }
        }
        Ok(set)
    }

    /// Only the named photos (all when `only` is empty); unknown names are an error.
    pub fn select(mut self, only: &[String]) -> anyhow::Result<EvalSet> {
        if only.is_empty() {
            return Ok(self);
        }
        for name in only {
            if !self.images.iter().any(|im| &im.file == name) {
                bail!("--only {name}: not in the set");
            }
        }
        self.images.retain(|im| only.contains(&im.file));
        Ok(self)
    }
}

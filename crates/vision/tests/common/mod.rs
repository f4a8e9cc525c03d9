//! Shared test helpers: test data, the repo's onnxruntime, reference JSON.
#![allow(dead_code)]

use callsight_vision::{BackendChoice, Detection, DetectorConfig, ModelKind, ModelSource};
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test photos; FAILS (not skips) when missing.
pub fn test_data(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("CALLSIGHT_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join("test-data"));
    let p = dir.join(name);
    assert!(p.is_file(), "missing test data {}: run scripts/fetch-test-data.sh", p.display());
    p
}

pub fn load_rgb(name: &str) -> image::RgbImage {
    image::open(test_data(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb8()
}

/// libonnxruntime from the repo's .venv (scripts/fetch-test-data.sh installs it); FAILS if absent.
pub fn venv_ort() -> PathBuf {
    let site = repo_root().join(".venv/lib");
    let found = std::fs::read_dir(&site).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| std::fs::read_dir(capi).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
    });
    found.unwrap_or_else(|| panic!("no libonnxruntime.so.* under {}: run scripts/fetch-test-data.sh", site.display()))
}

pub fn model_file(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

pub fn tract(model: ModelSource) -> DetectorConfig {
    DetectorConfig { model, backend: BackendChoice::Tract, ..Default::default() }
}

pub fn ort(model: ModelSource) -> DetectorConfig {
    DetectorConfig {
        model,
        backend: BackendChoice::Ort,
        onnxruntime_path: Some(venv_ort()),
        threads: 1,
        ..Default::default()
    }
}

pub fn file(name: &str, kind: ModelKind) -> ModelSource {
    ModelSource::File { path: model_file(name), kind, labels: None }
}

pub fn count(dets: &[Detection], label: &str) -> usize {
    dets.iter().filter(|d| d.label == label).count()
}

pub fn describe(dets: &[Detection]) -> String {
    dets.iter().map(|d| format!("{} {:.3} {:?}", d.label, d.score, d.bbox)).collect::<Vec<_>>().join("; ")
}

/// Reference detections (models/reference/<model>-<image>.json).
pub fn reference(model: &str, image: &str) -> Vec<(u32, f32, [f32; 4])> {
    let p = repo_root().join(format!("models/reference/{model}-{image}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    v["detections"]
        .as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let b: Vec<f32> =
                d["box"].as_array().expect("box").iter().map(|x| x.as_f64().expect("num") as f32).collect();
            (
                d["class_id"].as_u64().expect("class_id") as u32,
                d["score"].as_f64().expect("score") as f32,
                [b[0], b[1], b[2], b[3]],
            )
        })
        .collect()
}

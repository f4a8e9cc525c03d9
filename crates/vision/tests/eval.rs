//! The accuracy evaluator (`vision-eval`) end to end: its numbers on a hand-computed case,
//! and a real model on two labelled photos.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callsight-eval-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn run_eval(name: &str, args: &[&str]) -> Vec<Value> {
    let dir = scratch(name);
    let json = dir.join("rows.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vision-eval"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run vision-eval");
    assert!(
        out.status.success(),
        "vision-eval failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("rows");
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Two 100×100 photos, computed by hand (the same case as the metrics unit test, here
/// through the file formats: pixel truth, normalised JSON-lines detections):
/// person AP = (1 + 1/2) / 3 = 0.5, dog AP = 1, mAP = 0.75; at score ≥ 0.65 one hit and
/// two false positives (the cat inside an ignore region counts for nothing).
#[test]
fn evaluator_matches_a_hand_computed_case() {
    let dir = scratch("case");
    let set = r#"{"images": [
      {"file": "a.jpg", "width": 100, "height": 100,
       "objects": [{"label": "person", "box": [10, 10, 20, 40]}, {"label": "person", "box": [60, 10, 20, 40]}]},
      {"file": "b.jpg", "width": 100, "height": 100,
       "objects": [{"label": "person", "box": [0, 50, 30, 50]}, {"label": "dog", "box": [50, 50, 40, 40]}],
       "ignore": [{"label": "cat", "box": [0, 0, 50, 50]}]}]}"#;
    let dets = [
        r#"{"file": "some/dir/a.jpg", "frame": 0, "detections": [
            {"label": "person", "score": 0.9, "box": [0.10, 0.10, 0.20, 0.38]},
            {"label": "person", "score": 0.7, "box": [0.12, 0.12, 0.20, 0.40]},
            {"label": "car", "score": 0.5, "box": [0.40, 0.40, 0.10, 0.10]}]}"#,
        r#"{"file": "b.jpg", "frame": 0, "detections": [
            {"label": "cat", "score": 0.95, "box": [0.10, 0.10, 0.20, 0.20]},
            {"label": "person", "score": 0.8, "box": [0.60, 0.0, 0.20, 0.20]},
            {"label": "person", "score": 0.6, "box": [0.0, 0.55, 0.30, 0.45]},
            {"label": "dog", "score": 0.4, "box": [0.52, 0.50, 0.40, 0.40]}]}"#,
        r#"{"file": "not-in-the-set.jpg", "frame": 0, "detections": [{"label": "person", "score": 0.99, "box": [0, 0, 1, 1]}]}"#,
    ];
    std::fs::write(dir.join("set.json"), set).expect("write set");
    // One JSON object per line.
    let lines: Vec<String> = dets.iter().map(|d| d.replace('\n', " ")).collect();
    std::fs::write(dir.join("dets.jsonl"), lines.join("\n")).expect("write dets");
    let set_path = dir.join("set.json");
    let det_path = dir.join("dets.jsonl");
    let rows = run_eval(
        "case-out",
        &[
            "--set",
            set_path.to_str().expect("utf-8"),
            "--detections",
            det_path.to_str().expect("utf-8"),
            "--threshold",
            "0.65",
            "--floor",
            "0",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert!((num(r, "map50") - 0.75).abs() < 1e-6, "mAP {r}");
    assert_eq!((num(r, "hits"), num(r, "false_positives"), num(r, "objects")), (1.0, 2.0, 4.0), "{r}");
    assert!((num(r, "recall_at_threshold") - 0.25).abs() < 1e-6, "{r}");
    let classes = r["per_class_ap50"].as_array().expect("per class");
    let person = classes.iter().find(|c| c[0] == "person").expect("person row");
    assert!((person[2].as_f64().expect("ap") - 0.5).abs() < 1e-6, "{person}");
}

/// NanoDet on bus.jpg and zidane.jpg with the committed labels: the bus and the two men
/// in front are easy, so a pipeline that maps boxes back correctly finds them. A box
/// scaling or matching bug gives recall near 0.
#[test]
fn evaluator_scores_a_real_model_on_labelled_photos() {
    let images = test_data("bus.jpg").parent().expect("dir").to_path_buf();
    let rows = run_eval(
        "photos-out",
        &[
            "--images",
            images.to_str().expect("utf-8"),
            "--only",
            "bus.jpg,zidane.jpg",
            "--models",
            "nanodet",
            "--sizes",
            "416",
            "--backends",
            "tract",
            "--precisions",
            "fp32",
        ],
    );
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(num(r, "objects"), 7.0, "bus.jpg: 4 persons + bus; zidane.jpg: 2 persons");
    let classes = r["per_class_ap50"].as_array().expect("per class");
    let bus = classes.iter().find(|c| c[0] == "bus").expect("bus row");
    assert_eq!(bus[2].as_f64(), Some(1.0), "the bus is found: {r}");
    assert!(num(r, "map50") >= 0.5, "{r}");
    assert!(num(r, "hits") >= 3.0, "the bus and at least 2 of the 6 persons at the page's score: {r}");
}

//! `callsight detect` end to end, the real binary on real photos and video: JSON lines,
//! annotated copies, bad inputs → a message and a non-zero exit while the rest is done.
//!
//! Needs test-data/ (scripts/fetch-test-data.sh).

use std::path::PathBuf;
use std::process::Command;

fn test_data(name: &str) -> PathBuf {
    let p = callsight_media::synth::test_data_dir().join(name);
    assert!(p.is_file(), "missing test data {}: run scripts/fetch-test-data.sh", p.display());
    p
}

fn load_rgb(name: &str) -> image::RgbImage {
    image::open(test_data(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb8()
}

#[test]
fn detect_cli_reports_lines_annotates_and_fails_on_bad_inputs() {
    let dir = std::env::temp_dir().join(format!("callsight-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).expect("tmp");
    std::fs::copy(test_data("bus.jpg"), dir.join("in/bus.jpg")).expect("copy");
    let bytes = std::fs::read(test_data("zidane.jpg")).expect("read");
    std::fs::write(dir.join("in/broken.jpg"), &bytes[..bytes.len() / 2]).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_callsight"))
        .arg("detect")
        .arg(dir.join("in"))
        .arg(test_data("person.y4m"))
        .arg("--annotate")
        .arg(dir.join("out"))
        .output()
        .expect("run callsight detect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken input must give a non-zero exit");
    assert!(stderr.contains("broken.jpg"), "stderr names the bad file: {stderr}");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
    let bus: Vec<_> = lines.iter().filter(|l| l["file"].as_str().is_some_and(|f| f.ends_with("bus.jpg"))).collect();
    assert_eq!(bus.len(), 1, "{stdout}");
    let labels: Vec<&str> =
        bus[0]["detections"].as_array().expect("array").iter().filter_map(|d| d["label"].as_str()).collect();
    assert!(labels.contains(&"bus") && labels.iter().filter(|l| **l == "person").count() >= 3, "{labels:?}");
    let b = &bus[0]["detections"][0]["box"];
    assert_eq!(b.as_array().map(|a| a.len()), Some(4), "box is [x, y, w, h]");
    // person.y4m: 90 frames, each with the two people of zidane.jpg.
    let frames: Vec<_> =
        lines.iter().filter(|l| l["file"].as_str().is_some_and(|f| f.ends_with("person.y4m"))).collect();
    assert_eq!(frames.len(), 90);
    assert_eq!(frames[89]["frame"], 89);
    let persons = frames[0]["detections"].as_array().expect("array").iter().filter(|d| d["label"] == "person").count();
    assert!(persons >= 2, "{}", frames[0]);
    // Annotated copies: same size as the input, and not identical to it.
    let ann = image::open(dir.join("out/bus.jpg")).expect("annotated bus.jpg").to_rgb8();
    let orig = load_rgb("bus.jpg");
    assert_eq!(ann.dimensions(), orig.dimensions());
    assert!(dir.join("out/person-00089.png").is_file());
    let changed = ann
        .pixels()
        .zip(orig.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0.iter()).any(|(x, y)| x.abs_diff(*y) > 60))
        .count();
    assert!(changed > 1000, "boxes drawn: {changed} pixels changed");
    let _ = std::fs::remove_dir_all(&dir);
}

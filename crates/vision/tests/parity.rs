//! Parity: the Rust pipeline against the original TF.js runtime (models/reference/*.json),
//! tract against onnxruntime, and the heads model's Rust decoding against the full graph's.

mod common;
use callsight_vision::nms::iou_xywh;
use callsight_vision::{DetectOptions, Detection, Detector, ModelKind, ModelSource};
use common::*;

/// Every expected detection has a match of the same class (IoU >= `iou`, score within `ds`),
/// and there are no extra detections.
fn assert_match(want: &[(u32, f32, [f32; 4])], got: &[Detection], iou: f32, ds: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} detections, want {}: got {}", got.len(), want.len(), describe(got));
    for (class, score, b) in want {
        let best = got
            .iter()
            .filter(|d| d.class_id == *class)
            .map(|d| (iou_xywh(&d.bbox, b), d))
            .max_by(|x, y| x.0.total_cmp(&y.0));
        let Some((i, d)) = best else {
            panic!("{what}: no class {class} for {b:?}; got {}", describe(got));
        };
        assert!(i >= iou, "{what}: class {class} IoU {i} < {iou} ({b:?} vs {:?})", d.bbox);
        assert!((d.score - score).abs() <= ds, "{what}: class {class} score {} vs {score} (tolerance {ds})", d.score);
    }
}

fn as_ref(dets: &[Detection]) -> Vec<(u32, f32, [f32; 4])> {
    dets.iter().map(|d| (d.class_id, d.score, d.bbox)).collect()
}

#[test]
fn matches_tfjs_reference() {
    let opts = DetectOptions { score_threshold: 0.3, ..Default::default() }; // as in the references
    for (model, source) in [
        ("centernet", file("centernet.onnx", ModelKind::CenterNet)),
        ("nanodet", ModelSource::Bundled("nanodet".into())),
    ] {
        for backend in ["tract", "ort"] {
            let cfg = if backend == "tract" { tract(source.clone()) } else { ort(source.clone()) };
            let det = Detector::load(&cfg).unwrap_or_else(|e| panic!("{model}/{backend}: {e}"));
            for image in ["bus", "zidane"] {
                // The references are square letterboxes (512 / 416).
                let size = if model == "centernet" { 512 } else { 416 };
                let got = det.detect_rgb_at(&load_rgb(&format!("{image}.jpg")), size, size, &opts).expect("detect");
                let want = reference(model, image);
                assert_match(&want, &got.detections, 0.9, 0.02, &format!("{model}/{backend}/{image}"));
            }
        }
    }
}

#[test]
fn tract_and_onnxruntime_agree() {
    let opts = DetectOptions { score_threshold: 0.2, ..Default::default() };
    for source in [ModelSource::Default, ModelSource::Bundled("nanodet".into())] {
        let t = Detector::load(&tract(source.clone())).expect("tract");
        let o = Detector::load(&ort(source.clone())).expect("ort");
        assert_eq!(t.info().backend, "tract");
        assert_eq!(o.info().backend, "onnxruntime");
        for image in ["bus.jpg", "zidane.jpg"] {
            let img = load_rgb(image);
            let a = t.detect_rgb(&img, &opts).expect("tract detect");
            let b = o.detect_rgb(&img, &opts).expect("ort detect");
            assert!(!a.detections.is_empty());
            assert_match(&as_ref(&a.detections), &b.detections, 0.99, 1e-3, &format!("{source:?} {image}"));
        }
    }
}

#[test]
fn heads_decoding_matches_full_graph() {
    // Full graph (its own TopK decode) vs the heads model decoded in Rust, same 512x512
    // letterboxed input; a low threshold compares many rows, not just the obvious ones.
    let opts = DetectOptions { score_threshold: 0.05, max_detections: 100, ..Default::default() };
    let full = Detector::load(&ort(file("centernet.onnx", ModelKind::CenterNet))).expect("full");
    let heads = Detector::load(&ort(file("centernet-heads.onnx", ModelKind::CenterNet))).expect("heads");
    for image in ["bus.jpg", "zidane.jpg"] {
        let img = load_rgb(image);
        let a = full.detect_rgb(&img, &opts).expect("full detect");
        let b = heads.detect_rgb_at(&img, 512, 512, &opts).expect("heads detect");
        assert!(a.detections.len() > 10, "{image}: only {} rows", a.detections.len());
        assert_match(&as_ref(&a.detections), &b.detections, 0.999, 1e-4, image);
    }
}

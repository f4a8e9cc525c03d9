//! Real photos through the real bundled models: what they must find.

mod common;
use callsight_vision::{DetectOptions, Detector, ModelSource};
use common::*;

fn check_photos(cfg: &callsight_vision::DetectorConfig, name: &str, threshold: f32) {
    let det = Detector::load(cfg).unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let opts = DetectOptions { score_threshold: threshold, ..Default::default() };
    let bus = det.detect_rgb(&load_rgb("bus.jpg"), &opts).expect("bus");
    let d = &bus.detections;
    assert!(count(d, "bus") >= 1 && count(d, "person") >= 3, "{name} bus.jpg: {}", describe(d));
    let z = det.detect_rgb(&load_rgb("zidane.jpg"), &opts).expect("zidane");
    let n = count(&z.detections, "person");
    assert_eq!(n, 2, "{name} zidane.jpg: {}", describe(&z.detections));
    for r in [&bus, &z] {
        for x in &r.detections {
            let [bx, by, bw, bh] = x.bbox;
            assert!(
                bx >= 0.0 && by >= 0.0 && bw > 0.0 && bh > 0.0 && bx + bw <= 1.0001 && by + bh <= 1.0001,
                "{name}: box {:?}",
                x.bbox
            );
        }
    }
}

fn default_threshold() -> f32 {
    DetectOptions::default().score_threshold
}

#[test]
fn default_model_tract_finds_bus_and_people() {
    check_photos(&tract(ModelSource::Default), "default/tract", default_threshold());
}

#[test]
fn default_model_ort_finds_bus_and_people() {
    check_photos(&ort(ModelSource::Default), "default/ort", default_threshold());
}

#[test]
fn centernet_finds_bus_and_people() {
    // CenterNet's scores run lower; its references use 0.3.
    check_photos(&ort(ModelSource::Bundled("centernet".into())), "centernet/ort", 0.3);
}

#[test]
fn default_model_from_i420_matches_rgb() {
    // The I420 path (what video gives) finds the same objects as the RGB path.
    let det = Detector::load(&ort(ModelSource::Default)).expect("load");
    let opts = DetectOptions::default();
    for name in ["bus.jpg", "zidane.jpg"] {
        let img = load_rgb(name);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let callsight_vision::I420Buffer { y, u, v, .. } = callsight_vision::preprocess::rgb_to_i420(&img);
        // Pad the strides like a decoder does.
        let (ys, cs) = (w + 64, w.div_ceil(2) + 32);
        let pad = |src: &[u8], rw: usize, rows: usize, stride: usize| {
            let mut out = vec![0u8; stride * rows];
            for r in 0..rows {
                out[r * stride..r * stride + rw].copy_from_slice(&src[r * rw..(r + 1) * rw]);
            }
            out
        };
        let (py, pu, pv) =
            (pad(&y, w, h, ys), pad(&u, w.div_ceil(2), h.div_ceil(2), cs), pad(&v, w.div_ceil(2), h.div_ceil(2), cs));
        let f =
            callsight_vision::I420Frame { width: w, height: h, y: &py, u: &pu, v: &pv, y_stride: ys, uv_stride: cs };
        let a = det.detect_rgb(&img, &opts).expect("rgb").detections;
        let b = det.detect_i420(&f, &opts).expect("i420").detections;
        for l in ["bus", "person"] {
            assert_eq!(count(&a, l), count(&b, l), "{name} {l}: rgb {} / i420 {}", describe(&a), describe(&b));
        }
    }
}

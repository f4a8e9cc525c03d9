//! Real photos through the real bundled models: what they must find.

mod common;
use callsight_vision::{DetectOptions, Detector, ModelSource};
use common::*;

fn check_photos(cfg: &callsight_vision::DetectorConfig, name: &str, zidane_persons: std::ops::RangeInclusive<usize>) {
    let det = Detector::load(cfg).unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let opts = DetectOptions::default();
    let bus = det.detect_rgb(&load_rgb("bus.jpg"), &opts).expect("bus");
    let d = &bus.detections;
    assert!(count(d, "bus") >= 1 && count(d, "person") >= 3, "{name} bus.jpg: {}", describe(d));
    let z = det.detect_rgb(&load_rgb("zidane.jpg"), &opts).expect("zidane");
    let n = count(&z.detections, "person");
    assert!(
        zidane_persons.contains(&n),
        "{name} zidane.jpg: {n} persons, want {zidane_persons:?}: {}",
        describe(&z.detections)
    );
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

#[test]
fn default_model_tract_finds_bus_and_people() {
    check_photos(&tract(ModelSource::Default), "default/tract", 2..=2);
}

#[test]
fn default_model_ort_finds_bus_and_people() {
    check_photos(&ort(ModelSource::Default), "default/ort", 2..=2);
}

#[test]
fn nanodet_finds_bus_and_people() {
    // NanoDet also fires on the union of the two people and on a third region at 0.31-0.32
    // (see docs/vision.md): at least the two, at most four.
    check_photos(&ort(ModelSource::Bundled("nanodet".into())), "nanodet/ort", 2..=4);
}

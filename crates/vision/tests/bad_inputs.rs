//! Untrusted inputs: clear errors, no panics.

mod common;
use callsight_vision::io::{decode_image, ImageLimits};
use callsight_vision::{
    BackendChoice, DetectOptions, Detector, DetectorConfig, I420Frame, ModelKind, ModelSource, VisionError,
};
use common::*;

#[test]
fn truncated_and_empty_images_are_errors() {
    let lim = ImageLimits::default();
    let bytes = std::fs::read(test_data("bus.jpg")).expect("read");
    let cut = &bytes[..bytes.len() / 3];
    match decode_image(cut, &lim) {
        Err(VisionError::Image(m)) => assert!(m.contains("truncated"), "{m}"),
        Err(e) => panic!("wrong error for a truncated JPEG: {e}"),
        Ok(_) => panic!("a truncated JPEG decoded without error"),
    }
    let png = {
        let mut v = Vec::new();
        load_rgb("zidane.jpg")
            .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
            .expect("encode png");
        v
    };
    assert!(decode_image(&png, &lim).is_ok());
    assert!(decode_image(&png[..png.len() / 2], &lim).is_err(), "truncated PNG");
    assert!(decode_image(&[], &lim).is_err());
    assert!(decode_image(b"not an image at all", &lim).is_err());
    assert!(decode_image(&bytes[..2], &lim).is_err());

    let det = Detector::load(&tract(ModelSource::Default)).expect("load");
    let err = det.detect_rgb(&image::RgbImage::new(0, 0), &DetectOptions::default()).expect_err("zero-size image");
    assert!(matches!(err, VisionError::InvalidFrame(_)), "{err}");
    let y = [0u8; 16];
    let f = I420Frame { width: 0, height: 0, y: &y, u: &y, v: &y, y_stride: 0, uv_stride: 0 };
    assert!(det.detect_i420(&f, &DetectOptions::default()).is_err());
    let f = I420Frame { width: 640, height: 480, y: &y, u: &y, v: &y, y_stride: 640, uv_stride: 320 };
    assert!(matches!(det.detect_i420(&f, &DetectOptions::default()), Err(VisionError::InvalidFrame(_))));
}

#[test]
fn wrong_models_are_errors_naming_shapes() {
    // NanoDet's six outputs are not YOLOv8's one.
    let err = Detector::load(&tract(file("nanodet.onnx", ModelKind::YoloV8))).err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, VisionError::Shape { .. }), "{msg}");
    assert!(msg.contains("[1, 84, N]") && msg.contains("44]"), "{msg}");
    // CenterNet full graph takes NHWC: not a NanoDet.
    let err = Detector::load(&tract(file("centernet.onnx", ModelKind::NanoDet))).err().expect("must fail");
    assert!(matches!(err, VisionError::Shape { .. }), "{err}");
    // Labels that don't fit the model's class count.
    let dir = std::env::temp_dir().join(format!("callsight-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let labels = dir.join("three.txt");
    std::fs::write(&labels, "a\nb\nc\n").expect("write");
    let src = ModelSource::File {
        path: model_file("centernet-heads.onnx"),
        kind: ModelKind::CenterNet,
        labels: Some(labels),
    };
    let err = Detector::load(&tract(src)).err().expect("must fail");
    assert!(err.to_string().contains("3 labels"), "{err}");
    // Not a model at all; a missing file.
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not protobuf").expect("write");
    let err = Detector::load(&tract(ModelSource::File { path: junk, kind: ModelKind::YoloV8, labels: None }))
        .err()
        .expect("junk");
    assert!(matches!(err, VisionError::Model(_)), "{err}");
    let err = Detector::load(&tract(ModelSource::File {
        path: dir.join("nope.onnx"),
        kind: ModelKind::YoloV8,
        labels: None,
    }))
    .err()
    .expect("missing");
    assert!(matches!(err, VisionError::Io { .. }), "{err}");
    let err = Detector::load(&tract(ModelSource::Bundled("yolo-nope".into()))).err().expect("unknown name");
    assert!(err.to_string().contains("centernet"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_onnxruntime_paths_are_errors_and_auto_falls_back() {
    let dir = std::env::temp_dir().join(format!("callsight-ortlib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let text = dir.join("libonnxruntime.so");
    std::fs::write(&text, b"not a library").expect("write");
    // A real shared library that is not onnxruntime.
    let other =
        ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libm.so.6"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
            .expect("some system shared library");
    for (path, want) in [
        (dir.join("missing.so"), "missing.so"),
        (text.clone(), "not a shared library"),
        (other.clone(), "OrtGetApiBase"),
        (dir.clone(), "not a regular file"),
    ] {
        let cfg =
            DetectorConfig { backend: BackendChoice::Ort, onnxruntime_path: Some(path.clone()), ..Default::default() };
        let err = Detector::load(&cfg).err().unwrap_or_else(|| panic!("{}: must fail", path.display()));
        assert!(matches!(err, VisionError::OrtUnavailable(_)), "{err}");
        assert!(err.to_string().contains(want), "{}: {err}", path.display());
        // auto: same bad library → tract, with a warning.
        let det = Detector::load(&DetectorConfig { backend: BackendChoice::Auto, ..cfg }).expect("auto falls back");
        assert_eq!(det.info().backend, "tract");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

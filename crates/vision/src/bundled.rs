//! The models embedded in the binary (see models/README.md for origin and licence).

use crate::config::ModelKind;
use crate::preprocess::{Layout, Normalize};

/// CenterNet (MobileNetV3) cut at its raw heads: any input shape, decoded in Rust.
pub static CENTERNET_HEADS: &[u8] = include_bytes!("../../../models/centernet-heads.onnx");
/// NanoDet (GFL head, strides 8/16/32), any input shape.
pub static NANODET: &[u8] = include_bytes!("../../../models/nanodet.onnx");

/// NanoDet quantised to int8 (QDQ, onnxruntime static quantisation; models/README.md).
pub static NANODET_INT8: &[u8] = include_bytes!("../../../models/nanodet-int8.onnx");

/// Name of the default bundled model (chosen by speed and accuracy, see docs/vision.md).
pub const DEFAULT_MODEL: &str = "nanodet";

/// NanoDet's default input (long side). Measured on the labelled photo set
/// (bench/accuracy.sh, README "Accuracy on labelled photos"): 320 equals 416 on close-up
/// photos but loses far/small objects (photos shrunk to a third: recall 0.60 vs 0.67), and
/// the server's moving-bus tracking test never sees the bus at 320; 512 costs 1.5x.
pub const NANODET_DEFAULT_SIZE: usize = 416;

/// Names accepted by `--model-name`.
pub const NAMES: [&str; 2] = ["centernet", "nanodet"];

/// Everything needed to feed and decode a model.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub name: String,
    pub kind: ModelKind,
    pub layout: Layout,
    pub norm: Normalize,
    /// Input size when nothing else is asked (long side for any-shape models).
    pub default_size: usize,
}

/// CenterNet input: RGB 0..255.
pub const CENTERNET_NORM: Normalize = Normalize::RAW;

/// NanoDet's training normalisation (BGR, mean/std in B, G, R order); models/README.md.
pub const NANODET_NORM: Normalize = Normalize {
    mean: [103.53, 116.28, 123.675],
    scale: [1.0 / 57.375, 1.0 / 57.12, 1.0 / 58.395],
    bgr: true,
    pad: 0.0,
};

/// YOLO exports (ultralytics): RGB / 255, grey 114 bars.
pub const YOLO_NORM: Normalize = Normalize { mean: [0.0; 3], scale: [1.0 / 255.0; 3], bgr: false, pad: 114.0 };

/// A bundled model by name: bytes and spec.
pub fn bundled(name: &str) -> Option<(&'static [u8], ModelSpec)> {
    match name {
        "nanodet-int8" => Some((
            NANODET_INT8,
            ModelSpec {
                name: "nanodet-int8".into(),
                kind: ModelKind::NanoDet,
                layout: Layout::Nchw,
                norm: NANODET_NORM,
                default_size: NANODET_DEFAULT_SIZE,
            },
        )),
        "centernet" => Some((
            CENTERNET_HEADS,
            ModelSpec {
                name: "centernet".into(),
                kind: ModelKind::CenterNet,
                layout: Layout::Nchw,
                norm: CENTERNET_NORM,
                default_size: 512,
            },
        )),
        "nanodet" => Some((
            NANODET,
            ModelSpec {
                name: "nanodet".into(),
                kind: ModelKind::NanoDet,
                layout: Layout::Nchw,
                norm: NANODET_NORM,
                default_size: NANODET_DEFAULT_SIZE,
            },
        )),
        _ => None,
    }
}

/// Spec for a user model of a given kind; the layout is read from the model's input.
pub fn user_spec(name: String, kind: ModelKind, layout: Layout) -> ModelSpec {
    let (norm, default_size) = match kind {
        ModelKind::CenterNet => (CENTERNET_NORM, 512),
        ModelKind::NanoDet => (NANODET_NORM, 416),
        ModelKind::YoloV8 | ModelKind::YoloV5 => (YOLO_NORM, 640),
    };
    ModelSpec { name, kind, layout, norm, default_size }
}

//! The `Detector`: model + backend + pre/post-processing.

use crate::backend::{input_dims, parse_onnx, Backend, TractBackend};
use crate::bundled::{self, ModelSpec};
use crate::config::{BackendChoice, DetectorConfig, ModelKind, ModelSource, Precision};
use crate::decode::{decode, DecodeParams, Head};
use crate::error::{Result, VisionError};
use crate::labels;
use crate::nms::nms_classwise;
use crate::preprocess::{frame_shaped, i420_to_tensor, rgb_to_tensor, Layout, Letterbox};
use crate::types::{BackendInfo, DetectOptions, Detection, DetectionResult, I420Frame};
use std::cell::RefCell;
use std::time::Instant;

/// IoU above which a box of the same class is suppressed.
pub const NMS_IOU: f32 = 0.5;
/// Candidates kept before NMS (CenterNet's own graph keeps 100).
pub const TOP_K: usize = 100;
/// Every supported network downsamples by at most 32.
const STRIDE: usize = 32;

thread_local! {
    // Reused input buffer: no allocation per frame.
    static INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A loaded detector; `Send + Sync`, share it via `Arc`.
pub struct Detector {
    backend: Box<dyn Backend>,
    spec: ModelSpec,
    head: Head,
    labels: Vec<String>,
    /// Fixed input `(w, h)` of the model, or None if it takes any shape.
    fixed: Option<(usize, usize)>,
    detect_size: usize,
    workers: usize,
}

/// Which layout an input with these dims has.
fn layout_of(dims: &[Option<usize>]) -> Result<(Layout, Option<(usize, usize)>)> {
    let bad = || VisionError::Shape {
        expected: "one image input [1, 3, H, W] or [1, H, W, 3]".into(),
        found: format!("{:?}", dims.iter().map(|d| d.map_or("?".to_string(), |d| d.to_string())).collect::<Vec<_>>()),
    };
    if dims.len() != 4 || dims[0].is_some_and(|b| b != 1) {
        return Err(bad());
    }
    let fixed = |h: Option<usize>, w: Option<usize>| match (w, h) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Some((w, h)),
        _ => None,
    };
    if dims[1] == Some(3) {
        Ok((Layout::Nchw, fixed(dims[2], dims[3])))
    } else if dims[3] == Some(3) {
        Ok((Layout::Nhwc, fixed(dims[1], dims[2])))
    } else {
        Err(bad())
    }
}

impl Detector {
    /// Loads the model, picks the backend, and runs one warm-up inference whose outputs
    /// are checked against what the decoder expects (so a wrong model fails here).
    pub fn load(config: &DetectorConfig) -> Result<Detector> {
        let resolved;
        let config = match config.precision {
            Precision::Fp32 => config,
            Precision::Int8 => {
                resolved = int8_config(config)?;
                &resolved
            }
        };
        let (bytes, spec_hint, labels): (std::borrow::Cow<'static, [u8]>, Option<ModelSpec>, Vec<String>) =
            match &config.model {
                ModelSource::Default => {
                    let (b, s) = bundled::bundled(bundled::DEFAULT_MODEL)
                        .ok_or_else(|| VisionError::Config("default model missing".into()))?;
                    (b.into(), Some(s), labels::coco80())
                }
                ModelSource::Bundled(name) => {
                    let (b, s) = bundled::bundled(name).ok_or_else(|| {
                        VisionError::Config(format!(
                            "no bundled model {name:?} (available: {})",
                            bundled::NAMES.join(", ")
                        ))
                    })?;
                    (b.into(), Some(s), labels::coco80())
                }
                ModelSource::File { path, labels: lp, .. } => {
                    let b = crate::io::read_file_limited(path, config.max_model_bytes, "--max-model-bytes")?;
                    let l = match lp {
                        Some(p) => labels::load_labels(p)?,
                        None => labels::coco80(),
                    };
                    (b.into(), None, l)
                }
            };
        let model = parse_onnx(&bytes)?;
        let dims = input_dims(&model)?;
        let (layout, fixed) = layout_of(&dims)?;
        let spec = match (spec_hint, &config.model) {
            (Some(s), _) => s,
            (None, ModelSource::File { path, kind, .. }) => {
                if matches!(kind, ModelKind::YoloV8 | ModelKind::YoloV5 | ModelKind::NanoDet) && layout != Layout::Nchw
                {
                    return Err(VisionError::Shape {
                        expected: format!("{kind:?} input [1, 3, H, W]"),
                        found: format!("{dims:?}"),
                    });
                }
                let name = path.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned());
                bundled::user_spec(name, *kind, layout)
            }
            (None, _) => return Err(VisionError::Config("model spec missing".into())),
        };
        if spec.layout != layout {
            return Err(VisionError::Shape {
                expected: format!("{:?} input", spec.layout),
                found: format!("{dims:?}"),
            });
        }
        let mut detect_size = config.detect_size.unwrap_or(spec.default_size);
        if !(STRIDE..=4096).contains(&detect_size) {
            return Err(VisionError::Config(format!("detect size {detect_size} out of range ({STRIDE}..=4096)")));
        }
        if let Some((w, h)) = fixed {
            if config.detect_size.is_some_and(|s| s != w.max(h)) {
                tracing::warn!(model = %spec.name, "model input is fixed at {w}x{h}; ignoring detect size {detect_size}");
            }
            detect_size = w.max(h);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Default arrangement (measured, see recommended_workers): 1 thread per inference,
        // one onnxruntime session per core.
        let workers = if config.workers == 0 { cores } else { config.workers };
        let backend = make_backend(config, &bytes, model, workers)?;
        let mut det =
            Detector { backend, head: Head::detect(spec.kind, &[]), spec, labels, fixed, detect_size, workers };
        det.warm_up()?;
        tracing::info!(
            backend = det.backend.name(),
            version = %det.backend.version(),
            threads = det.backend.threads(),
            model = %det.spec.name,
            detect_size = det.detect_size,
            "detector ready"
        );
        Ok(det)
    }

    /// One inference on a blank 4:3 frame: builds the plan and checks the output shapes.
    fn warm_up(&mut self) -> Result<()> {
        let (w, h) = self.input_shape(640, 480);
        let shape = self.tensor_shape(w, h);
        let data = vec![0.0f32; w * h * 3];
        let outs = self.backend.run(shape, &data)?;
        let shapes: Vec<Vec<usize>> = outs.iter().map(|o| o.shape.clone()).collect();
        self.head = Head::detect(self.spec.kind, &shapes);
        let p = DecodeParams {
            in_w: w,
            in_h: h,
            num_classes: self.labels.len(),
            threshold: 0.99,
            classes: None,
            top_k: TOP_K,
        };
        decode(self.head, &outs, &p).map_err(|e| match e {
            VisionError::Shape { expected, found } => VisionError::Shape {
                expected: format!("{expected} ({:?} model, {} labels)", self.spec.kind, self.labels.len()),
                found,
            },
            other => other,
        })?;
        Ok(())
    }

    /// Network input `(w, h)` for a frame of this size.
    pub fn input_shape(&self, frame_w: usize, frame_h: usize) -> (usize, usize) {
        match self.fixed {
            Some(s) => s,
            None => frame_shaped(frame_w, frame_h, self.detect_size, STRIDE),
        }
    }

    fn tensor_shape(&self, w: usize, h: usize) -> [usize; 4] {
        match self.spec.layout {
            Layout::Nchw => [1, 3, h, w],
            Layout::Nhwc => [1, h, w, 3],
        }
    }

    pub fn detect_i420(&self, frame: &I420Frame<'_>, opts: &DetectOptions) -> Result<DetectionResult> {
        let t0 = Instant::now();
        let (w, h) = self.input_shape(frame.width.max(1), frame.height.max(1));
        let lb = Letterbox::fit(frame.width.max(1), frame.height.max(1), w, h);
        INPUT.with(|buf| {
            let mut buf = buf.borrow_mut();
            i420_to_tensor(frame, &lb, self.spec.layout, &self.spec.norm, &mut buf)?;
            self.infer(&buf, &lb, opts, t0)
        })
    }

    pub fn detect_rgb(&self, image: &image::RgbImage, opts: &DetectOptions) -> Result<DetectionResult> {
        let t0 = Instant::now();
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        if iw == 0 || ih == 0 {
            return Err(VisionError::InvalidFrame(format!("zero-size image {iw}x{ih}")));
        }
        let (w, h) = self.input_shape(iw, ih);
        let lb = Letterbox::fit(iw, ih, w, h);
        INPUT.with(|buf| {
            let mut buf = buf.borrow_mut();
            rgb_to_tensor(image, &lb, self.spec.layout, &self.spec.norm, &mut buf)?;
            self.infer(&buf, &lb, opts, t0)
        })
    }

    /// Like [`Detector::detect_rgb`] but at a given network input size (any-shape models
    /// only; fixed models use their own size). For tests and size sweeps.
    pub fn detect_rgb_at(
        &self,
        image: &image::RgbImage,
        input_w: usize,
        input_h: usize,
        opts: &DetectOptions,
    ) -> Result<DetectionResult> {
        let t0 = Instant::now();
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        if iw == 0 || ih == 0 {
            return Err(VisionError::InvalidFrame(format!("zero-size image {iw}x{ih}")));
        }
        let (w, h) = self.fixed.unwrap_or((input_w, input_h));
        if w % STRIDE != 0 || h % STRIDE != 0 || w == 0 || h == 0 {
            return Err(VisionError::Config(format!("input {w}x{h} is not a multiple of {STRIDE}")));
        }
        let lb = Letterbox::fit(iw, ih, w, h);
        INPUT.with(|buf| {
            let mut buf = buf.borrow_mut();
            rgb_to_tensor(image, &lb, self.spec.layout, &self.spec.norm, &mut buf)?;
            self.infer(&buf, &lb, opts, t0)
        })
    }

    fn infer(&self, input: &[f32], lb: &Letterbox, opts: &DetectOptions, t0: Instant) -> Result<DetectionResult> {
        let t1 = Instant::now();
        let outs = self.backend.run(self.tensor_shape(lb.dst_w, lb.dst_h), input)?;
        let inference_ms = t1.elapsed().as_secs_f32() * 1000.0;
        let p = DecodeParams {
            in_w: lb.dst_w,
            in_h: lb.dst_h,
            num_classes: self.labels.len(),
            threshold: opts.score_threshold,
            classes: opts.classes.as_deref(),
            top_k: TOP_K,
        };
        let cands = nms_classwise(decode(self.head, &outs, &p)?, NMS_IOU, usize::MAX);
        let detections: Vec<Detection> = cands
            .into_iter()
            .filter_map(|c| {
                let bbox = lb.to_frame(c.xyxy)?;
                Some(Detection {
                    class_id: c.class_id,
                    label: self.labels.get(c.class_id as usize).cloned().unwrap_or_default(),
                    score: c.score,
                    bbox,
                })
            })
            .take(opts.max_detections)
            .collect();
        Ok(DetectionResult { detections, inference_ms, total_ms: t0.elapsed().as_secs_f32() * 1000.0 })
    }

    /// Runs the network alone on a prepared input (benches).
    pub fn infer_raw(&self, w: usize, h: usize, input: &[f32]) -> Result<()> {
        self.backend.run(self.tensor_shape(w, h), input).map(|_| ())
    }

    pub fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: self.backend.name().to_string(),
            version: self.backend.version(),
            threads: self.backend.threads(),
            workers: self.workers,
            model: self.spec.name.clone(),
            input_size: self.fixed.map_or([self.detect_size, self.detect_size], |(w, h)| [w, h]),
        }
    }

    /// Class names, indexed by class id.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// How many frames the live scheduler should detect concurrently with this detector.
    /// Measured on 2 cores (docs/vision.md): one single-threaded inference per core beats
    /// intra-op threads once 2+ streams compete (onnxruntime: 2 sessions x 1 thread gave
    /// 27 frames/s vs 16 for 1 session x 2 threads), so: cores / intra-op threads.
    pub fn recommended_workers(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.backend.threads().max(1)).max(1)
    }
}

/// `--precision int8`: the bundled int8 NanoDet on onnxruntime (auto means onnxruntime
/// here: tract runs the int8 graph slower than the float one, models/README.md).
fn int8_config(config: &DetectorConfig) -> Result<DetectorConfig> {
    let name = match &config.model {
        ModelSource::Default => bundled::DEFAULT_MODEL,
        ModelSource::Bundled(n) => n.as_str(),
        ModelSource::File { .. } => {
            return Err(VisionError::Config(
                "--precision int8 picks a bundled int8 model; for your own quantised model pass it with --model".into(),
            ))
        }
    };
    if name != "nanodet" {
        return Err(VisionError::Config(format!("--precision int8 exists for nanodet only, not {name:?}")));
    }
    let backend = match config.backend {
        BackendChoice::Tract => {
            return Err(VisionError::Config(
                "--precision int8 needs onnxruntime (tract runs the int8 model slower than float)".into(),
            ))
        }
        BackendChoice::Auto | BackendChoice::Ort => BackendChoice::Ort,
    };
    Ok(DetectorConfig {
        model: ModelSource::Bundled("nanodet-int8".into()),
        backend,
        precision: Precision::Fp32,
        ..config.clone()
    })
}

fn make_backend(
    config: &DetectorConfig,
    bytes: &[u8],
    model: tract_onnx::prelude::InferenceModel,
    workers: usize,
) -> Result<Box<dyn Backend>> {
    // 0 = one thread per inference (the measured default arrangement, see `workers`).
    let threads = config.threads.max(1);
    match config.backend {
        BackendChoice::Tract => Ok(Box::new(TractBackend::new(model))),
        BackendChoice::Ort => ort_backend(config, bytes, threads, workers),
        BackendChoice::Auto => match ort_backend(config, bytes, threads, workers) {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::warn!("onnxruntime not used, falling back to tract: {e}");
                Ok(Box::new(TractBackend::new(model)))
            }
        },
    }
}

#[cfg(feature = "ort")]
fn ort_backend(config: &DetectorConfig, bytes: &[u8], threads: usize, workers: usize) -> Result<Box<dyn Backend>> {
    Ok(Box::new(crate::ort_backend::OrtBackend::new(bytes, config.onnxruntime_path.as_deref(), threads, workers)?))
}

#[cfg(not(feature = "ort"))]
fn ort_backend(_: &DetectorConfig, _: &[u8], _: usize, _: usize) -> Result<Box<dyn Backend>> {
    Err(VisionError::BackendNotBuilt("onnxruntime"))
}

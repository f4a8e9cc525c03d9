//! Network outputs → candidate boxes (input pixels), one decoder per model family.
//! Every decoder checks the output shapes first and says what it expected.

use crate::config::ModelKind;
use crate::error::{Result, VisionError};
use crate::nms::Candidate;

/// One output tensor of a network run.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// How a network's outputs are laid out (a refinement of [`ModelKind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// CenterNet with its own decode in the graph: `[1, K, 6]` rows `[x1, y1, x2, y2, score, class]`.
    CenterNetFull,
    /// CenterNet cut at the raw heads: class logits `[1, C, H/4, W/4]` and distances `[1, 4, H/4, W/4]`.
    CenterNetHeads,
    /// NanoDet: per stride 8/16/32 scores `[1, N, C]` (sigmoid applied) and distributions `[1, N, 44]`.
    NanoDet,
    /// YOLOv8: `[1, 4 + C, N]` (or transposed), cx/cy/w/h in input pixels, no objectness.
    YoloV8,
    /// YOLOv5: `[1, N, 5 + C]`, cx/cy/w/h, objectness, class scores.
    YoloV5,
}

impl Head {
    /// Picks the head layout of a model kind from its output shapes.
    pub fn detect(kind: ModelKind, shapes: &[Vec<usize>]) -> Head {
        match kind {
            ModelKind::CenterNet => {
                if shapes.len() == 1 {
                    Head::CenterNetFull
                } else {
                    Head::CenterNetHeads
                }
            }
            ModelKind::NanoDet => Head::NanoDet,
            ModelKind::YoloV8 => Head::YoloV8,
            ModelKind::YoloV5 => Head::YoloV5,
        }
    }
}

/// Settings shared by all decoders.
#[derive(Clone, Debug)]
pub struct DecodeParams<'a> {
    pub in_w: usize,
    pub in_h: usize,
    pub num_classes: usize,
    pub threshold: f32,
    pub classes: Option<&'a [u32]>,
    /// Top-k candidates before NMS (CenterNet's graph uses 100).
    pub top_k: usize,
}

impl DecodeParams<'_> {
    fn wanted(&self, class: u32) -> bool {
        self.classes.is_none_or(|c| c.contains(&class))
    }
}

fn shape_err(expected: impl Into<String>, outputs: &[Output]) -> VisionError {
    let found: Vec<String> = outputs.iter().map(|o| format!("{} {:?}", o.name, o.shape)).collect();
    VisionError::Shape {
        expected: expected.into(),
        found: if found.is_empty() { "no outputs".into() } else { found.join(", ") },
    }
}

/// Decodes one run's outputs into candidates (before NMS).
pub fn decode(head: Head, outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    match head {
        Head::CenterNetFull => centernet_full(outputs, p),
        Head::CenterNetHeads => centernet_heads(outputs, p),
        Head::NanoDet => nanodet(outputs, p),
        Head::YoloV8 => yolov8(outputs, p),
        Head::YoloV5 => yolov5(outputs, p),
    }
}

fn centernet_full(outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    let expected = "one output [1, K, 6] (rows x1, y1, x2, y2, score, class)";
    let o = match outputs {
        [o] if o.shape.len() == 3 && o.shape[0] == 1 && o.shape[2] == 6 => o,
        _ => return Err(shape_err(expected, outputs)),
    };
    let mut out = Vec::new();
    for row in o.data.chunks_exact(6) {
        let (score, class) = (row[4], row[5]);
        if !at_least(score, p.threshold) || !at_least(class, 0.0) || class as usize >= p.num_classes {
            continue;
        }
        let class_id = class as u32;
        if p.wanted(class_id) {
            out.push(Candidate { class_id, score, xyxy: [row[0], row[1], row[2], row[3]] });
        }
    }
    Ok(out)
}

/// `v >= t`, false for NaN (a model may output NaN; it never passes a threshold).
#[inline]
fn at_least(v: f32, t: f32) -> bool {
    v >= t
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// CenterNet heads, decoded as the full graph does: sigmoid, 3×3 peaks (SAME padding),
/// top-k by score (ties in NHWC order), box = centre ∓ distances.
fn centernet_heads(outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    let c = p.num_classes;
    let expected = format!(
        "two outputs [1, {c}, {h}, {w}] (class logits) and [1, 4, {h}, {w}] (box distances) for input {iw}x{ih}",
        h = p.in_h / 4,
        w = p.in_w / 4,
        iw = p.in_w,
        ih = p.in_h
    );
    let (logits, wh) = match outputs {
        [a, b] if a.shape.len() == 4 && b.shape.len() == 4 => {
            if a.shape[1] == 4 && b.shape[1] == c {
                (b, a)
            } else {
                (a, b)
            }
        }
        _ => return Err(shape_err(expected, outputs)),
    };
    let (h, w) = (logits.shape[2], logits.shape[3]);
    if logits.shape[0] != 1
        || logits.shape[1] != c
        || wh.shape != [1, 4, h, w]
        || h == 0
        || w == 0
        || p.in_h / h != 4
        || p.in_w / w != 4
    {
        return Err(shape_err(expected, outputs));
    }
    let plane = h * w;
    let stride = (p.in_w as f32) / (w as f32);
    // Compare logits against logit(threshold) first: exp only for the few that pass.
    let t = p.threshold.clamp(1e-6, 1.0 - 1e-6);
    let logit_t = (t / (1.0 - t)).ln() - 1e-4;
    let mut cand: Vec<(f32, usize)> = Vec::new(); // (score, NHWC flat index)
    for cls in 0..c {
        if !p.wanted(cls as u32) {
            continue;
        }
        let l = &logits.data[cls * plane..(cls + 1) * plane];
        for y in 0..h {
            for x in 0..w {
                let v = l[y * w + x];
                if v < logit_t {
                    continue;
                }
                let s = sigmoid(v);
                if s < p.threshold {
                    continue;
                }
                let mut peak = true;
                'n: for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        if sigmoid(l[yy * w + xx]) > s {
                            peak = false;
                            break 'n;
                        }
                    }
                }
                if peak {
                    cand.push((s, (y * w + x) * c + cls));
                }
            }
        }
    }
    let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if cand.len() > p.top_k && p.top_k > 0 {
        cand.select_nth_unstable_by(p.top_k - 1, by_score);
        cand.truncate(p.top_k);
    }
    cand.sort_by(by_score);
    Ok(cand
        .into_iter()
        .map(|(score, i)| {
            let (cls, cell) = (i % c, i / c);
            let (y, x) = (cell / w, cell % w);
            let d = |k: usize| wh.data[k * plane + cell];
            let (cx, cy) = (x as f32 * stride, y as f32 * stride);
            Candidate { class_id: cls as u32, score, xyxy: [cx - d(0), cy - d(1), cx + d(2), cy + d(3)] }
        })
        .collect())
}

const NANODET_STRIDES: [usize; 3] = [8, 16, 32];
const NANODET_BINS: usize = 11;

/// NanoDet GFL decode: centre `(gx + 0.5, gy + 0.5) × s`, each side = softmax-expected bin × s.
fn nanodet(outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    let c = p.num_classes;
    let cells: Vec<usize> = NANODET_STRIDES.iter().map(|s| p.in_w.div_ceil(*s) * p.in_h.div_ceil(*s)).collect();
    let expected = format!(
        "six outputs: scores [1, N, {c}] and distributions [1, N, {}] for N = {:?} (strides 8/16/32 at {}x{})",
        4 * NANODET_BINS,
        cells,
        p.in_w,
        p.in_h
    );
    let find = |n: usize, last: usize| {
        outputs.iter().find(|o| o.shape.len() == 3 && o.shape[0] == 1 && o.shape[1] == n && o.shape[2] == last)
    };
    let mut out = Vec::new();
    for (si, &s) in NANODET_STRIDES.iter().enumerate() {
        let n = cells[si];
        let (Some(sc), Some(di)) = (find(n, c), find(n, 4 * NANODET_BINS)) else {
            return Err(shape_err(expected, outputs));
        };
        let fw = p.in_w.div_ceil(s);
        for cell in 0..n {
            let row = &sc.data[cell * c..(cell + 1) * c];
            let mut sides: Option<[f32; 4]> = None;
            for (cls, &score) in row.iter().enumerate() {
                if !at_least(score, p.threshold) || !p.wanted(cls as u32) {
                    continue;
                }
                let [l, t, r, b] = *sides.get_or_insert_with(|| {
                    let bins = &di.data[cell * 4 * NANODET_BINS..(cell + 1) * 4 * NANODET_BINS];
                    let mut d = [0.0f32; 4];
                    for (k, side) in d.iter_mut().enumerate() {
                        let b = &bins[k * NANODET_BINS..(k + 1) * NANODET_BINS];
                        let m = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let (mut num, mut den) = (0.0f32, 0.0f32);
                        for (i, &v) in b.iter().enumerate() {
                            let e = (v - m).exp();
                            num += e * i as f32;
                            den += e;
                        }
                        *side = num / den * s as f32;
                    }
                    d
                });
                let cx = ((cell % fw) as f32 + 0.5) * s as f32;
                let cy = ((cell / fw) as f32 + 0.5) * s as f32;
                out.push(Candidate { class_id: cls as u32, score, xyxy: [cx - l, cy - t, cx + r, cy + b] });
            }
        }
    }
    Ok(out)
}

fn best_class(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    scores.enumerate().fold((0, f32::NEG_INFINITY), |a, (i, s)| if s > a.1 { (i, s) } else { a })
}

fn cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

fn yolov8(outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    let f = 4 + p.num_classes;
    let expected = format!("one output [1, {f}, N] or [1, N, {f}] (4 box values + {} classes)", p.num_classes);
    let o = match outputs {
        [o] if o.shape.len() == 3 && o.shape[0] == 1 && (o.shape[1] == f || o.shape[2] == f) => o,
        _ => return Err(shape_err(expected, outputs)),
    };
    // [1, f, N] is what ultralytics exports; [1, N, f] when transposed afterwards.
    let channels_first = o.shape[1] == f && o.shape[2] != f;
    let n = if channels_first { o.shape[2] } else { o.shape[1] };
    let at = |i: usize, k: usize| if channels_first { o.data[k * n + i] } else { o.data[i * f + k] };
    let mut out = Vec::new();
    for i in 0..n {
        let (cls, score) = best_class((0..p.num_classes).map(|k| at(i, 4 + k)));
        if score >= p.threshold && p.wanted(cls as u32) {
            out.push(Candidate { class_id: cls as u32, score, xyxy: cxcywh(at(i, 0), at(i, 1), at(i, 2), at(i, 3)) });
        }
    }
    Ok(out)
}

fn yolov5(outputs: &[Output], p: &DecodeParams<'_>) -> Result<Vec<Candidate>> {
    let f = 5 + p.num_classes;
    let expected = format!("one output [1, N, {f}] (4 box values, objectness, {} classes)", p.num_classes);
    let o = match outputs {
        [o] if o.shape.len() == 3 && o.shape[0] == 1 && o.shape[2] == f => o,
        _ => return Err(shape_err(expected, outputs)),
    };
    let mut out = Vec::new();
    for row in o.data.chunks_exact(f) {
        let obj = row[4];
        if !at_least(obj, p.threshold) {
            continue;
        }
        let (cls, cs) = best_class(row[5..].iter().copied());
        let score = obj * cs;
        if score >= p.threshold && p.wanted(cls as u32) {
            out.push(Candidate { class_id: cls as u32, score, xyxy: cxcywh(row[0], row[1], row[2], row[3]) });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(w: usize, h: usize, c: usize) -> DecodeParams<'static> {
        DecodeParams { in_w: w, in_h: h, num_classes: c, threshold: 0.3, classes: None, top_k: 100 }
    }

    #[test]
    fn heads_finds_peaks_only() {
        // 2 classes on an 8x8 grid (32x32 input): one peak of class 1 at (x=2, y=3) with a
        // weaker neighbour that is not a peak.
        let (c, h, w) = (2, 8, 8);
        let mut logits = vec![-10.0f32; c * h * w];
        logits[h * w + 3 * w + 2] = 2.0;
        logits[h * w + 3 * w + 3] = 1.0;
        let mut wh = vec![0.0f32; 4 * h * w];
        for k in 0..4 {
            wh[k * h * w + 3 * w + 2] = (k + 1) as f32;
        }
        let outs = vec![
            Output { name: "logits".into(), shape: vec![1, c, h, w], data: logits },
            Output { name: "wh".into(), shape: vec![1, 4, h, w], data: wh },
        ];
        let got = decode(Head::CenterNetHeads, &outs, &params(32, 32, c)).expect("decode");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].class_id, 1);
        assert_eq!(got[0].xyxy, [8.0 - 1.0, 12.0 - 2.0, 8.0 + 3.0, 12.0 + 4.0]);
    }

    #[test]
    fn wrong_shapes_name_expected_and_found() {
        let outs = vec![Output { name: "out".into(), shape: vec![1, 10, 7], data: vec![0.0; 70] }];
        let err = decode(Head::YoloV8, &outs, &params(640, 640, 80)).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("[1, 84, N]") && msg.contains("[1, 10, 7]"), "{msg}");
    }
}

//! Candidate boxes, class-wise greedy NMS, filtering.

/// A decoded candidate in network-input pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub class_id: u32,
    pub score: f32,
    /// `[x1, y1, x2, y2]`
    pub xyxy: [f32; 4],
}

/// IoU of two `[x1, y1, x2, y2]` boxes.
pub fn iou_xyxy(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// IoU of two `[x, y, w, h]` boxes.
pub fn iou_xywh(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    iou_xyxy(&[a[0], a[1], a[0] + a[2], a[1] + a[3]], &[b[0], b[1], b[0] + b[2], b[1] + b[3]])
}

/// Greedy NMS per class, in score order (stable for ties); drops a box whose IoU with a
/// kept box of the same class is > `iou`. Keeps at most `max` boxes.
pub fn nms_classwise(mut c: Vec<Candidate>, iou: f32, max: usize) -> Vec<Candidate> {
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Candidate> = Vec::new();
    for d in c {
        if keep.len() >= max {
            break;
        }
        if keep.iter().all(|k| k.class_id != d.class_id || iou_xyxy(&k.xyxy, &d.xyxy) <= iou) {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_is_classwise() {
        let a = Candidate { class_id: 0, score: 0.9, xyxy: [0.0, 0.0, 10.0, 10.0] };
        let b = Candidate { class_id: 0, score: 0.8, xyxy: [1.0, 1.0, 10.0, 10.0] };
        let c = Candidate { class_id: 1, score: 0.7, xyxy: [1.0, 1.0, 10.0, 10.0] };
        let d = Candidate { class_id: 0, score: 0.6, xyxy: [20.0, 20.0, 30.0, 30.0] };
        let kept = nms_classwise(vec![d, c, b, a], 0.5, 100);
        assert_eq!(kept, vec![a, c, d]);
        assert_eq!(nms_classwise(vec![a, c, d], 0.5, 2).len(), 2);
    }
}

//! Matching detections to the truth, and the numbers: precision and recall at a score
//! threshold, AP at IoU 0.5 per class (all-point interpolation, as PASCAL VOC 2010+ and
//! COCO's per-IoU AP without the 101-point sampling), their mean over the classes present.
//!
//! Matching (COCO's rules at one IoU): per class, detections from all photos in
//! descending score order; each takes the unmatched true box of its photo with the highest
//! IoU if that is ≥ `iou`; else, if an ignore region of its class covers ≥ `iou` of its
//! area, it is dropped (neither right nor wrong); else it is a false positive (also a
//! second detection of an already found object). Greedy in score order, so the matches of
//! the detections above any threshold are the same as if only those had been given.

use crate::truth::{ImageTruth, Object};
use std::collections::BTreeMap;

/// One detection, in pixels of its photo.
#[derive(Clone, Debug)]
pub struct Det {
    /// Index into the set's images.
    pub image: usize,
    pub label: String,
    pub score: f32,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f32; 4],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Hit,
    Wrong,
    Ignored,
}

/// The result of matching one run's detections against the set.
pub struct Evaluation {
    /// Per class: (score, outcome) in ranking order.
    ranked: BTreeMap<String, Vec<(f32, Outcome)>>,
    /// Per class: number of true objects.
    truths: BTreeMap<String, usize>,
    /// Per image, per object: score of the detection that found it.
    found_by: Vec<Vec<Option<f32>>>,
    /// Detections that matched nothing (index into the input), for the per-photo report.
    wrong: Vec<Det>,
}

/// Counts at one score threshold, all classes together.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub hits: usize,
    pub wrong: usize,
    pub truths: usize,
}

impl Counts {
    pub fn precision(&self) -> f32 {
        if self.hits + self.wrong == 0 {
            return 1.0;
        }
        self.hits as f32 / (self.hits + self.wrong) as f32
    }
    pub fn recall(&self) -> f32 {
        if self.truths == 0 {
            return 1.0;
        }
        self.hits as f32 / self.truths as f32
    }
    pub fn f1(&self) -> f32 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let inter = intersection(a, b);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

fn intersection(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    w.max(0.0) * h.max(0.0)
}

/// Share of `det`'s area inside `region` (COCO's IoU against a crowd region).
fn covered(det: [f32; 4], region: [f32; 4]) -> f32 {
    let area = det[2] * det[3];
    if area <= 0.0 {
        0.0
    } else {
        intersection(det, region) / area
    }
}

pub fn evaluate(images: &[ImageTruth], dets: &[Det], iou_min: f32) -> Evaluation {
    let mut order: Vec<usize> = (0..dets.len()).collect();
    // Descending score; ties by input order, so the result does not depend on sorting.
    order.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score).then(a.cmp(&b)));
    let mut found_by: Vec<Vec<Option<f32>>> = images.iter().map(|im| vec![None; im.objects.len()]).collect();
    let mut ranked: BTreeMap<String, Vec<(f32, Outcome)>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for i in order {
        let d = &dets[i];
        let Some(im) = images.get(d.image) else { continue };
        let best = im
            .objects
            .iter()
            .enumerate()
            .filter(|(k, o)| o.label == d.label && found_by[d.image][*k].is_none())
            .map(|(k, o)| (k, iou(d.bbox, o.bbox)))
            .filter(|&(_, v)| v >= iou_min)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let outcome = if let Some((k, _)) = best {
            found_by[d.image][k] = Some(d.score);
            Outcome::Hit
        } else if im.ignore.iter().any(|r| r.label == d.label && covered(d.bbox, r.bbox) >= iou_min) {
            Outcome::Ignored
        } else {
            wrong.push(d.clone());
            Outcome::Wrong
        };
        ranked.entry(d.label.clone()).or_default().push((d.score, outcome));
    }
    let mut truths = BTreeMap::new();
    for o in images.iter().flat_map(|im| &im.objects) {
        *truths.entry(o.label.clone()).or_insert(0) += 1;
    }
    Evaluation { ranked, truths, found_by, wrong }
}

impl Evaluation {
    /// AP at the matching IoU for one class (None when the set has no such object).
    pub fn ap(&self, label: &str) -> Option<f32> {
        let n = *self.truths.get(label)?;
        let list: Vec<Outcome> =
            self.ranked.get(label).into_iter().flatten().map(|r| r.1).filter(|o| *o != Outcome::Ignored).collect();
        let mut precision = Vec::with_capacity(list.len());
        let mut hits = 0usize;
        for (k, o) in list.iter().enumerate() {
            hits += usize::from(*o == Outcome::Hit);
            precision.push(hits as f32 / (k + 1) as f32);
        }
        // Interpolated precision: the best precision at this recall or any higher one.
        for k in (0..precision.len().saturating_sub(1)).rev() {
            precision[k] = precision[k].max(precision[k + 1]);
        }
        let sum: f32 = list.iter().zip(&precision).filter(|(o, _)| **o == Outcome::Hit).map(|(_, p)| *p).sum();
        Some(sum / n as f32)
    }

    /// Mean AP over the classes that have objects in the set.
    pub fn map(&self) -> f32 {
        let aps: Vec<f32> = self.truths.keys().filter_map(|l| self.ap(l)).collect();
        if aps.is_empty() {
            return 0.0;
        }
        aps.iter().sum::<f32>() / aps.len() as f32
    }

    /// Classes with objects in the set and their AP, by name.
    pub fn per_class(&self) -> Vec<(String, usize, f32)> {
        self.truths.iter().map(|(l, n)| (l.clone(), *n, self.ap(l).unwrap_or(0.0))).collect()
    }

    /// Hits, false positives and objects, counting detections with score ≥ `threshold`.
    pub fn at(&self, threshold: f32) -> Counts {
        let mut c = Counts { hits: 0, wrong: 0, truths: self.truths.values().sum() };
        for (score, o) in self.ranked.values().flatten() {
            if *score >= threshold {
                match o {
                    Outcome::Hit => c.hits += 1,
                    Outcome::Wrong => c.wrong += 1,
                    Outcome::Ignored => {}
                }
            }
        }
        c
    }

    /// The score threshold (among the detections' own scores, ≥ `floor`) with the best F1;
    /// of equal F1 the highest.
    pub fn best_f1(&self, floor: f32) -> (f32, Counts) {
        let mut scores: Vec<f32> = self.ranked.values().flatten().map(|r| r.0).filter(|s| *s >= floor).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        scores.dedup();
        // From the highest score down, so of equal F1 the higher threshold (fewer boxes) wins.
        let mut best: Option<(f32, Counts)> = None;
        for s in scores {
            let c = self.at(s);
            if best.is_none_or(|b| c.f1() > b.1.f1()) {
                best = Some((s, c));
            }
        }
        best.unwrap_or((floor, self.at(floor)))
    }

    /// Objects of photo `image` not found by a detection with score ≥ `threshold`.
    pub fn missed<'a>(&self, images: &'a [ImageTruth], image: usize, threshold: f32) -> Vec<&'a Object> {
        images[image]
            .objects
            .iter()
            .zip(&self.found_by[image])
            .filter(|(_, f)| !f.is_some_and(|s| s >= threshold))
            .map(|(o, _)| o)
            .collect()
    }

    /// False positives of photo `image` with score ≥ `threshold`.
    pub fn false_positives(&self, image: usize, threshold: f32) -> Vec<&Det> {
        self.wrong.iter().filter(|d| d.image == image && d.score >= threshold).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(label: &str, bbox: [f32; 4]) -> Object {
        Object { label: label.into(), bbox }
    }

    fn det(image: usize, label: &str, score: f32, bbox: [f32; 4]) -> Det {
        Det { image, label: label.into(), score, bbox }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    /// Two photos; computed by hand:
    /// person: truths A1, A2 (photo 0), B1 (photo 1). Ranked: 0.9 → A1 (hit, P 1/1, R 1/3),
    /// 0.8 nothing in photo 1 (wrong, P 1/2), 0.7 → A1 again (duplicate: wrong, P 1/3),
    /// 0.6 → B1 (hit, P 2/4, R 2/3). Interpolated precision at the hits: 1 and 1/2, so
    /// AP = (1 + 1/2) / 3 = 0.5. dog: one truth, found once at 0.4: AP 1. mAP = 0.75.
    /// A "cat" detection inside photo 1's ignore region counts for nothing; a "car" with
    /// no car in the set is wrong but has no AP of its own.
    fn case() -> (Vec<ImageTruth>, Vec<Det>) {
        let images = vec![
            ImageTruth {
                file: "a.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![obj("person", [10.0, 10.0, 20.0, 40.0]), obj("person", [60.0, 10.0, 20.0, 40.0])],
                ignore: vec![],
            },
            ImageTruth {
                file: "b.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![obj("person", [0.0, 50.0, 30.0, 50.0]), obj("dog", [50.0, 50.0, 40.0, 40.0])],
                ignore: vec![obj("cat", [0.0, 0.0, 50.0, 50.0])],
            },
        ];
        let dets = vec![
            det(0, "person", 0.9, [10.0, 10.0, 20.0, 38.0]), // IoU 0.95 with A1
            det(1, "person", 0.8, [60.0, 0.0, 20.0, 20.0]),  // nothing there
            det(0, "person", 0.7, [12.0, 12.0, 20.0, 40.0]), // A1 again
            det(1, "person", 0.6, [0.0, 55.0, 30.0, 45.0]),  // IoU 0.9 with B1
            det(1, "dog", 0.4, [52.0, 50.0, 40.0, 40.0]),    // IoU 0.9 with the dog
            det(1, "cat", 0.95, [10.0, 10.0, 20.0, 20.0]),   // inside the ignore region
            det(0, "car", 0.5, [40.0, 40.0, 10.0, 10.0]),    // no car in the set
        ];
        (images, dets)
    }

    #[test]
    fn ap_matches_the_hand_computed_case() {
        let (images, dets) = case();
        let e = evaluate(&images, &dets, 0.5);
        assert!(close(e.ap("person").expect("person"), 0.5), "person AP {:?}", e.ap("person"));
        assert!(close(e.ap("dog").expect("dog"), 1.0));
        assert_eq!(e.ap("car"), None, "no car in the set: no AP");
        assert!(close(e.map(), 0.75), "mAP {}", e.map());
    }

    #[test]
    fn counts_at_a_threshold() {
        let (images, dets) = case();
        let e = evaluate(&images, &dets, 0.5);
        // ≥ 0.65: hit 0.9, wrong 0.8 and 0.7; the ignored cat counts for nothing.
        assert_eq!(e.at(0.65), Counts { hits: 1, wrong: 2, truths: 4 });
        // Everything: hits 0.9, 0.6, 0.4 (dog); wrong 0.8, 0.7, 0.5 (car).
        let all = e.at(0.0);
        assert_eq!(all, Counts { hits: 3, wrong: 3, truths: 4 });
        assert!(close(all.precision(), 0.5) && close(all.recall(), 0.75));
        // F1 per threshold: 0.9 → 2/5; 0.6 → 4/7; 0.4 → 3/5 (the best); 0.5 between them.
        let (t, c) = e.best_f1(0.0);
        assert!(close(t, 0.4) && close(c.f1(), 0.6), "best F1 at {t}: {c:?}");
    }

    #[test]
    fn per_photo_misses_and_false_positives() {
        let (images, dets) = case();
        let e = evaluate(&images, &dets, 0.5);
        let missed: Vec<[f32; 4]> = e.missed(&images, 0, 0.0).iter().map(|o| o.bbox).collect();
        assert_eq!(missed, vec![[60.0, 10.0, 20.0, 40.0]], "A2 is never found");
        let labels = |t: f32| e.missed(&images, 1, t).iter().map(|o| o.label.as_str()).collect::<Vec<_>>();
        assert_eq!(labels(0.5), vec!["dog"], "B1 is found at 0.6, the dog only at 0.4");
        assert_eq!(labels(0.65), vec!["person", "dog"]);
        let fp: Vec<f32> = e.false_positives(1, 0.0).iter().map(|d| d.score).collect();
        assert_eq!(fp, vec![0.8], "photo 1: the 0.8 person; the cat is ignored");
    }

    #[test]
    fn iou_of_known_boxes() {
        assert!(close(iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0]), 50.0 / 150.0));
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 5.0, 5.0]), 0.0);
        assert!(close(iou([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]), 1.0));
    }
}

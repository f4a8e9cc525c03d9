//! The objects of one detection result as the wire carries them: the detector's boxes
//! through the track's [`Tracker`] (stable `track_id`, velocity, coasting boxes marked
//! `predicted`), or as they are when tracking is off.

use callsight_signal::DetectedObject;
use callsight_vision::{DetectOptions, Detection, Tracker, TrackerConfig};

/// The detector options for a pipeline: with a tracker the detector must also report
/// the low-score boxes the tracker's second association stage uses.
pub(crate) fn detector_options(opts: &DetectOptions, tracking: Option<&TrackerConfig>) -> DetectOptions {
    let mut o = opts.clone();
    if let Some(t) = tracking {
        o.score_threshold = o.score_threshold.min(t.low_score);
    }
    o
}

/// The objects to send for the detections of the frame captured at `t_ms` (unwrapped
/// RTP clock, ms): tracked objects when there is a tracker, each at or above `min_score`.
pub(crate) fn objects(
    tracker: Option<&mut Tracker>,
    detections: Vec<Detection>,
    t_ms: f64,
    min_score: f32,
) -> Vec<DetectedObject> {
    match tracker {
        None => detections
            .into_iter()
            .filter(|d| d.score >= min_score)
            .map(|d| DetectedObject {
                class_id: d.class_id,
                label: d.label,
                score: d.score,
                bbox: d.bbox,
                track_id: None,
                velocity: None,
                predicted: false,
            })
            .collect(),
        Some(tracker) => tracker
            .update(&detections, t_ms)
            .into_iter()
            .filter(|o| o.score >= min_score)
            .map(|o| DetectedObject {
                class_id: o.class_id,
                label: o.label,
                score: o.score,
                bbox: o.bbox,
                track_id: Some(o.track_id),
                velocity: Some(o.velocity),
                predicted: o.predicted,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(score: f32, x: f32) -> Detection {
        Detection { class_id: 0, label: "person".into(), score, bbox: [x, 0.2, 0.2, 0.4] }
    }

    #[test]
    fn untracked_results_are_filtered_detections() {
        let out = objects(None, vec![det(0.9, 0.1), det(0.2, 0.5)], 0.0, 0.3);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].track_id, out[0].velocity, out[0].predicted), (None, None, false));
    }

    #[test]
    fn tracked_results_keep_an_id_through_a_miss_and_carry_velocity() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let min = 0.3;
        // Tentative at first sight: nothing is sent yet.
        assert!(objects(Some(&mut tr), vec![det(0.9, 0.10)], 0.0, min).is_empty());
        let a = objects(Some(&mut tr), vec![det(0.9, 0.12)], 100.0, min);
        let id = a[0].track_id.expect("an id");
        // Partly hidden, the detector's score drops: same id, and the track's score stays
        // above the viewer's threshold.
        let b = objects(Some(&mut tr), vec![det(0.2, 0.14)], 200.0, min);
        assert_eq!((b[0].track_id, b[0].predicted), (Some(id), false));
        assert!(b[0].score >= 0.35, "{:?}", b[0]);
        // Missed: the coasting box is sent, marked predicted, same id, moving on.
        let c = objects(Some(&mut tr), vec![], 300.0, min);
        assert_eq!((c[0].track_id, c[0].predicted), (Some(id), true));
        let v = c[0].velocity.expect("velocity");
        assert!(v[0] > 0.0 && c[0].bbox[0] > b[0].bbox[0], "moving right: {v:?}");
    }

    #[test]
    fn options_lower_the_detector_threshold_only_with_a_tracker() {
        let o = DetectOptions { score_threshold: 0.3, ..DetectOptions::default() };
        assert_eq!(detector_options(&o, None).score_threshold, 0.3);
        assert_eq!(detector_options(&o, Some(&TrackerConfig::default())).score_threshold, 0.1);
    }
}

//! The shape of one detection result on the wire (`detections` message), shared by the
//! media leg that produces it and every client that draws it (`docs/sync.md`).
//!
//! A result names the frame it belongs to twice: by the RTP timestamp the publisher
//! stamped on it (unchanged by the server, so a subscriber's `requestVideoFrameCallback`
//! `rtpTimestamp` matches it exactly) and by the sender's capture time. Objects carry a
//! `track_id` that stays the same while the tracker follows the object, and a velocity
//! so a client can move the box between results.

use serde::{Deserialize, Serialize};

/// Objects found in one frame of one published track.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct TrackDetections {
    /// The publishing participant's id.
    pub participant: String,
    /// The published track (today its mid in the publishing session).
    pub track: String,
    /// RTP timestamp (90 kHz) of the detected frame, as the publisher stamped it.
    pub rtp_timestamp: u32,
    /// Sender wall clock at capture of that frame, unix ms; `None` when unknown.
    pub capture_time: Option<f64>,
    /// Decoded frame size; boxes are normalised to it.
    pub width: u32,
    pub height: u32,
    /// Time the network itself took for this frame.
    pub inference_ms: f32,
    pub detections: Vec<DetectedObject>,
}

/// One object in a [`TrackDetections`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct DetectedObject {
    pub class_id: u32,
    pub label: String,
    pub score: f32,
    /// `[x, y, w, h]`, normalised to the frame (0..1), top-left origin.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Stable id of the tracked object within its track; `None` when tracking is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Rate of change of `box` in normalised units per second of capture time
    /// (`[dx, dy, dw, dh]`); `None` when tracking is off or not yet known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velocity: Option<[f32; 4]>,
    /// True when the tracker predicted this box through a frame where the detector did
    /// not see the object (coasting); clients may draw it fainter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_to_the_documented_shape() {
        let d = TrackDetections {
            participant: "AAAAAAAAAAAAAAAA".into(),
            track: "0".into(),
            rtp_timestamp: 90000,
            capture_time: Some(1.5),
            width: 640,
            height: 480,
            inference_ms: 12.5,
            detections: vec![DetectedObject {
                class_id: 0,
                label: "person".into(),
                score: 0.5,
                bbox: [0.25, 0.5, 0.125, 0.25],
                track_id: Some(7),
                velocity: Some([0.5, 0.0, 0.0, 0.0]),
                predicted: false,
            }],
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            json!({"participant":"AAAAAAAAAAAAAAAA","track":"0","rtp_timestamp":90000,"capture_time":1.5,
                   "width":640,"height":480,"inference_ms":12.5,
                   "detections":[{"class_id":0,"label":"person","score":0.5,"box":[0.25,0.5,0.125,0.25],
                                  "track_id":7,"velocity":[0.5,0.0,0.0,0.0]}]})
        );
        let back: TrackDetections = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn untracked_objects_omit_the_tracking_fields() {
        let o = DetectedObject {
            class_id: 1,
            label: "bicycle".into(),
            score: 0.9,
            bbox: [0.0; 4],
            track_id: None,
            velocity: None,
            predicted: false,
        };
        let v = serde_json::to_value(&o).unwrap();
        assert!(v.get("track_id").is_none() && v.get("velocity").is_none() && v.get("predicted").is_none());
    }
}

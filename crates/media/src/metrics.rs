//! Prometheus metrics of the media leg (`prometheus-client`): per-stage latency
//! histograms of each detected frame, per-track frame outcomes and objects, and the
//! leg's counters read at scrape time.
//!
//! Stages of one frame, in seconds: `receive` (first packet → its decoder starts on it),
//! `decode`, `queue` (decoded → a worker takes it), `inference` (pre-processing, network,
//! decoding of the output, tracking), `send` (result ready → queued to every
//! participant of the room; observed by the server).
//!
//! Label cardinality is bounded: a track is labelled by a slot number (the lowest one
//! free when it opens, freed and its series removed when it closes), so there are never
//! more series than tracks open at once (≤ `max_sessions` × `max_tracks_per_publish`).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::stats::Counters;

/// A stage of a frame's way through the media leg.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    Receive,
    Decode,
    Queue,
    Inference,
    Send,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: Stage,
}

/// What became of a decoded frame.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    Detected,
    /// The motion gate found it unchanged: not detected, tracks coasted.
    Gated,
    /// Replaced by a newer frame before a worker was free.
    Skipped,
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            Stage::Receive => "receive",
            Stage::Decode => "decode",
            Stage::Queue => "queue",
            Stage::Inference => "inference",
            Stage::Send => "send",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            Outcome::Detected => "detected",
            Outcome::Gated => "gated",
            Outcome::Skipped => "skipped",
        };
        EncodeLabelValue::encode(&name, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabel {
    track: u32,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrackLabel {
    track: u32,
}

type HistogramFamily = Family<StageLabel, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    // 0.25 ms … ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The media leg's metrics; cheap to share.
#[derive(Debug)]
pub struct MediaMetrics {
    stages: HistogramFamily,
    frames: Family<FrameLabel, Counter>,
    objects: Family<TrackLabel, Counter>,
    slots: Mutex<BTreeSet<u32>>,
    counters: Arc<Counters>,
}

impl MediaMetrics {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        MediaMetrics {
            stages: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            frames: Family::default(),
            objects: Family::default(),
            slots: Mutex::new(BTreeSet::new()),
            counters,
        }
    }

    /// Registers everything under `callsight_media_…`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("callsight_media");
        sub.register_with_unit(
            "stage_latency",
            "Time each detected frame spent per stage (receive, decode, queue, inference, send)",
            prometheus_client::registry::Unit::Seconds,
            self.stages.clone(),
        );
        sub.register(
            "track_frames",
            "Decoded frames per track slot by outcome (detected, gated, skipped)",
            self.frames.clone(),
        );
        sub.register("track_objects", "Objects sent in results per track slot", self.objects.clone());
        sub.register_collector(Box::new(self.clone()));
    }

    pub fn observe(&self, stage: Stage, d: Duration) {
        self.stages.get_or_create(&StageLabel { stage }).observe(d.as_secs_f64());
    }

    /// A slot number for a new track (the lowest free one).
    pub(crate) fn open_track(&self) -> u32 {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (0..).find(|s| !slots.contains(s)).unwrap_or(u32::MAX);
        slots.insert(slot);
        slot
    }

    /// Frees a track's slot and removes its series.
    pub(crate) fn close_track(&self, track: u32) {
        for outcome in [Outcome::Detected, Outcome::Gated, Outcome::Skipped] {
            self.frames.remove(&FrameLabel { track, outcome });
        }
        self.objects.remove(&TrackLabel { track });
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).remove(&track);
    }

    pub(crate) fn frame(&self, track: u32, outcome: Outcome) {
        self.frames.get_or_create(&FrameLabel { track, outcome }).inc();
    }

    pub(crate) fn objects(&self, track: u32, n: usize) {
        self.objects.get_or_create(&TrackLabel { track }).inc_by(n as u64);
    }
}

/// The leg's own counters, read at each scrape.
impl Collector for MediaMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        let gauges = [
            ("sessions", "Media sessions open", c.sessions.load(Relaxed)),
            ("decoders", "Decoder threads running (one per published video track)", c.decoders.load(Relaxed)),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters = [
            ("frames_received", "Video frames received", &c.received),
            ("frames_decoded", "Video frames decoded", &c.decoded),
            ("frames_detected", "Video frames detected", &c.detected),
            ("frames_gated", "Video frames the motion gate kept from the detector", &c.gated),
            ("frames_dropped", "Video frames received but never detected (replaced, gaps, refused)", &c.dropped),
            ("decode_errors", "H.264 decode errors", &c.decode_errors),
            ("detect_errors", "Detector errors", &c.detect_errors),
            ("keyframe_requests", "Keyframe requests sent to publishers", &c.keyframe_requests),
            ("garbage_packets", "Datagrams no session accepted", &c.garbage_packets),
            ("datagrams_dropped", "Datagrams dropped from full queues", &c.datagrams_dropped),
            (
                "datagrams_send_dropped",
                "Datagrams not sent: the socket send buffer was full",
                &c.datagrams_send_dropped,
            ),
            (
                "offers_repeated",
                "Renegotiation offers sent again, unanswered for the offer timeout",
                &c.offers_repeated,
            ),
        ];
        for (name, help, v) in counters {
            let k = ConstCounter::new(v.load(Relaxed));
            k.encode(encoder.encode_descriptor(name, help, None, k.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_slots_are_reused_and_their_series_removed() {
        let m = Arc::new(MediaMetrics::new(Arc::default()));
        let mut reg = Registry::default();
        m.register(&mut reg);
        let (a, b) = (m.open_track(), m.open_track());
        assert_eq!((a, b), (0, 1));
        m.frame(a, Outcome::Gated);
        m.frame(b, Outcome::Detected);
        m.close_track(a);
        assert_eq!(m.open_track(), 0, "the freed slot is reused");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(!text.contains("track=\"0\""), "closed track's series removed:\n{text}");
        assert!(text.contains("callsight_media_track_frames_total{track=\"1\",outcome=\"detected\"} 1"), "{text}");
    }
}

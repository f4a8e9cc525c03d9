//! The motion stage of one track: a [`FrameSink`] between its decoder and the detection
//! scheduler that runs the track's [`MotionGate`] on each decoded frame (on the decoder's
//! thread: one pass over the luma plane) and stamps the verdict on the frame. The
//! scheduler then skips still frames (tracks coast) and serves changed tracks first.

use std::sync::{Arc, Mutex};

use callsight_vision::{MotionConfig, MotionGate};

use crate::types::{Frame, FrameSink, TrackMeta};

pub(crate) struct MotionStage {
    gate: Mutex<MotionGate>,
    next: Arc<dyn FrameSink>,
}

impl MotionStage {
    pub(crate) fn new(config: MotionConfig, next: Arc<dyn FrameSink>) -> Self {
        MotionStage { gate: Mutex::new(MotionGate::new(config)), next }
    }
}

impl FrameSink for MotionStage {
    fn open(&self, track: u64, meta: TrackMeta) {
        self.next.open(track, meta);
    }

    fn submit(&self, track: u64, mut frame: Frame) {
        // Only this track's decoder thread calls in: the lock is never contended.
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        frame.motion = gate.observe(&frame.i420(), frame.rtp_ms());
        drop(gate);
        self.next.submit(track, frame);
    }

    fn close(&self, track: u64) {
        self.next.close(track);
    }
}

//! Counters shared by the sockets, the driver, the decoders and the workers. A leaf module.

use callsight_measure::percentile;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// How many recent frame latencies the percentiles are taken over.
const LATENCY_WINDOW: usize = 512;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub decoded: AtomicU64,
    pub detected: AtomicU64,
    pub gated: AtomicU64,
    pub dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub detect_errors: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub garbage_packets: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub datagrams_send_dropped: AtomicU64,
    pub sessions_panicked: AtomicU64,
    pub tracks_rejected: AtomicU64,
    pub offers_repeated: AtomicU64,
    pub downscaled: AtomicU64,
    pub refused: AtomicU64,
    pub sps_refused: AtomicU64,
    pub sessions: AtomicUsize,
    pub decoders: AtomicUsize,
    latencies: Mutex<VecDeque<f32>>,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_latency(&self, ms: f32) {
        let mut l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == LATENCY_WINDOW {
            l.pop_front();
        }
        l.push_back(ms);
    }

    /// (p50, p95) over the window, None before the first detection.
    pub(crate) fn latency_percentiles(&self) -> (Option<f32>, Option<f32>) {
        let l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<f32> = l.iter().copied().collect();
        drop(l);
        (percentile(&mut v, 50.0), percentile(&mut v, 95.0))
    }
}

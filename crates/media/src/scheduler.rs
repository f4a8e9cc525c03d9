//! Detection scheduling: one pool of worker threads shared by every track.
//!
//! - Latest frame wins: each track has one slot; a newer decoded frame replaces an
//!   undetected older one (counted as dropped), so no stale frame ever waits in a queue
//!   and memory is bounded by one frame per track.
//! - Fair: tracks are served round-robin (the served track goes to the back of the ring).
//! - `max_detect_fps` per track: a track is not served again before its interval is over.
//! - Workers are std threads: inference never runs on the async runtime.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callsight_signal::{DetectedObject, TrackDetections};
use callsight_vision::{DetectOptions, Detector, I420Frame};
use tokio::sync::broadcast;

use crate::error::MediaError;
use crate::stats::Counters;
use crate::types::{DetectionEvent, Frame, FrameSink, TrackMeta};

struct Slot {
    meta: TrackMeta,
    latest: Option<Frame>,
    next_allowed: Instant,
}

#[derive(Default)]
struct State {
    ring: VecDeque<u64>,
    slots: HashMap<u64, Slot>,
    shutdown: bool,
}

pub(crate) struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    min_interval: Duration,
    workers: usize,
    counters: Arc<Counters>,
}

impl Scheduler {
    pub(crate) fn start(
        workers: usize,
        nice: i32,
        max_fps: f32,
        opts: DetectOptions,
        detector: Arc<Detector>,
        counters: Arc<Counters>,
        events: broadcast::Sender<Arc<DetectionEvent>>,
    ) -> Result<Arc<Scheduler>, MediaError> {
        let min_interval =
            if max_fps > 0.0 && max_fps.is_finite() { Duration::from_secs_f32(1.0 / max_fps) } else { Duration::ZERO };
        let s = Arc::new(Scheduler {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            min_interval,
            workers,
            counters,
        });
        for i in 0..workers {
            let s = s.clone();
            let detector = detector.clone();
            let opts = opts.clone();
            let events = events.clone();
            std::thread::Builder::new().name(format!("detect-{i}")).spawn(move || {
                lower_priority(nice);
                s.worker(&detector, &opts, &events)
            })?;
        }
        Ok(s)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking worker must not take the whole pipeline down with a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) fn pending_frames(&self) -> usize {
        self.lock().slots.values().filter(|s| s.latest.is_some()).count()
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    /// Next (track, frame) to detect, blocking until there is one; None on shutdown.
    fn next_job(&self) -> Option<(u64, TrackMeta, Frame)> {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return None;
            }
            let now = Instant::now();
            let mut earliest: Option<Instant> = None;
            let mut pick = None;
            for (i, id) in st.ring.iter().enumerate() {
                let Some(slot) = st.slots.get(id) else { continue };
                if slot.latest.is_none() {
                    continue;
                }
                if slot.next_allowed <= now {
                    pick = Some(i);
                    break;
                }
                earliest = Some(earliest.map_or(slot.next_allowed, |e| e.min(slot.next_allowed)));
            }
            if let Some(i) = pick {
                let Some(id) = st.ring.remove(i) else { continue };
                st.ring.push_back(id);
                let interval = self.min_interval;
                if let Some(slot) = st.slots.get_mut(&id) {
                    slot.next_allowed = now + interval;
                    if let Some(frame) = slot.latest.take() {
                        return Some((id, slot.meta.clone(), frame));
                    }
                }
                continue;
            }
            st = match earliest {
                Some(t) => {
                    self.wake.wait_timeout(st, t.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0
                }
                None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    fn worker(&self, detector: &Detector, opts: &DetectOptions, events: &broadcast::Sender<Arc<DetectionEvent>>) {
        while let Some((id, meta, frame)) = self.next_job() {
            let i420 = I420Frame {
                width: frame.width,
                height: frame.height,
                y: &frame.y,
                u: &frame.u,
                v: &frame.v,
                y_stride: frame.width,
                uv_stride: frame.width.div_ceil(2),
            };
            let result = match detector.detect_i420(&i420, opts) {
                Ok(r) => r,
                Err(e) => {
                    Counters::inc(&self.counters.detect_errors);
                    tracing::warn!(track = %meta.track, participant = %meta.participant, "detection failed: {e}");
                    continue;
                }
            };
            // The publisher may have left while we were busy: its results go nowhere.
            if !self.lock().slots.contains_key(&id) {
                continue;
            }
            Counters::inc(&self.counters.detected);
            let detections = result
                .detections
                .into_iter()
                .map(|d| DetectedObject {
                    class_id: d.class_id,
                    label: d.label,
                    score: d.score,
                    bbox: d.bbox,
                    track_id: None,
                    velocity: None,
                    predicted: false,
                })
                .collect();
            let event = Arc::new(DetectionEvent {
                room: meta.room,
                result: TrackDetections {
                    participant: meta.participant,
                    track: meta.track,
                    rtp_timestamp: frame.rtp_timestamp,
                    capture_time: frame.capture_time,
                    width: frame.orig_width as u32,
                    height: frame.orig_height as u32,
                    inference_ms: result.inference_ms,
                    detections,
                },
            });
            // Recorded just before sending, so stats() agrees with what receivers saw.
            self.counters.record_latency(frame.arrival.elapsed().as_secs_f32() * 1000.0);
            // No receiver is fine (nobody in the room listens yet).
            let _ = events.send(event);
        }
    }
}

impl FrameSink for Scheduler {
    fn open(&self, id: u64, meta: TrackMeta) {
        let mut st = self.lock();
        st.slots.insert(id, Slot { meta, latest: None, next_allowed: Instant::now() });
        st.ring.push_back(id);
    }

    /// Hands the newest decoded frame of a track over; an undetected older one is dropped.
    fn submit(&self, id: u64, frame: Frame) {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(&id) else {
            Counters::inc(&self.counters.dropped);
            return;
        };
        if slot.latest.replace(frame).is_some() {
            Counters::inc(&self.counters.dropped);
        }
        drop(st);
        self.wake.notify_one();
    }

    fn close(&self, id: u64) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.remove(&id) {
            if slot.latest.is_some() {
                Counters::inc(&self.counters.dropped);
            }
        }
        st.ring.retain(|t| *t != id);
    }
}

/// Renices the calling thread (Linux: nice is per thread). Failure only costs priority.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and setpriority take no pointers and only affect this thread.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if r != 0 {
        tracing::debug!("setpriority({nice}) failed: {}", std::io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

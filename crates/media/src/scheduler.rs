//! Detection scheduling: one pool of worker threads shared by every track.
//!
//! Which track is served next is `queue`'s policy (latest frame wins, changed pictures
//! first, no track starves, one job per track at a time, the fps cap); this module runs
//! it: worker threads, the wake-ups, inference, and each track's tracker (`tracking`),
//! which moves with the job so a track's results are tracked in capture order.
//! Workers are std threads: inference never runs on the async runtime.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callsight_signal::TrackDetections;
use callsight_vision::{DetectOptions, Detector, Tracker, TrackerConfig};
use tokio::sync::broadcast;

use crate::error::MediaError;
use crate::metrics::{MediaMetrics, Outcome, Stage};
use crate::queue::{Pick, ServeQueue, Submitted};
use crate::stats::Counters;
use crate::tracking;
use crate::types::{DetectionEvent, Frame, FrameSink, TrackMeta};

/// A track's own state beside its place in the queue.
struct TrackCtx {
    meta: TrackMeta,
    /// Taken by the worker that serves the track (one at a time), then put back.
    tracker: Option<Tracker>,
    /// Its label in the metrics.
    slot: u32,
}

struct State {
    queue: ServeQueue<Frame>,
    tracks: HashMap<u64, TrackCtx>,
    shutdown: bool,
}

/// How the pipeline detects: what the workers need besides the detector.
#[derive(Clone)]
pub(crate) struct DetectPlan {
    pub workers: usize,
    pub nice: i32,
    pub max_fps: f32,
    pub max_wait: Duration,
    /// What the viewers get: `score_threshold` is the lowest score sent.
    pub opts: DetectOptions,
    pub tracking: Option<TrackerConfig>,
}

pub(crate) struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    workers: usize,
    tracking: Option<TrackerConfig>,
    counters: Arc<Counters>,
    metrics: Arc<MediaMetrics>,
}

/// A job handed to a worker.
struct Job {
    id: u64,
    slot: u32,
    meta: TrackMeta,
    frame: Frame,
    tracker: Option<Tracker>,
}

impl Scheduler {
    pub(crate) fn start(
        plan: DetectPlan,
        detector: Arc<Detector>,
        counters: Arc<Counters>,
        metrics: Arc<MediaMetrics>,
        events: broadcast::Sender<Arc<DetectionEvent>>,
    ) -> Result<Arc<Scheduler>, MediaError> {
        let min_interval = if plan.max_fps > 0.0 && plan.max_fps.is_finite() {
            Duration::from_secs_f32(1.0 / plan.max_fps)
        } else {
            Duration::ZERO
        };
        let s = Arc::new(Scheduler {
            state: Mutex::new(State {
                queue: ServeQueue::new(min_interval, plan.max_wait),
                tracks: HashMap::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
            workers: plan.workers,
            tracking: plan.tracking.clone(),
            counters,
            metrics,
        });
        let run_opts = tracking::detector_options(&plan.opts, plan.tracking.as_ref());
        let min_score = plan.opts.score_threshold;
        for i in 0..plan.workers {
            let s = s.clone();
            let detector = detector.clone();
            let opts = run_opts.clone();
            let events = events.clone();
            let nice = plan.nice;
            std::thread::Builder::new().name(format!("detect-{i}")).spawn(move || {
                lower_priority(nice);
                s.worker(&detector, &opts, min_score, &events)
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
        self.lock().queue.pending()
    }

    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    /// Next job, blocking until there is one; None on shutdown.
    fn next_job(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return None;
            }
            let now = Instant::now();
            st = match st.queue.pick(now) {
                Pick::Job { track, frame } => {
                    let Some(ctx) = st.tracks.get_mut(&track) else {
                        st.queue.done(track);
                        continue;
                    };
                    let tracker = ctx.tracker.take();
                    self.metrics.observe(Stage::Queue, now.saturating_duration_since(frame.decoded));
                    return Some(Job { id: track, slot: ctx.slot, meta: ctx.meta.clone(), frame, tracker });
                }
                Pick::WaitUntil(t) => {
                    self.wake.wait_timeout(st, t.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0
                }
                Pick::Idle => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// The job of `id` is over: its tracker goes back, the track may be served again.
    /// False when the track was closed meanwhile.
    fn finish(&self, id: u64, tracker: Option<Tracker>) -> bool {
        let mut st = self.lock();
        st.queue.done(id);
        let open = match st.tracks.get_mut(&id) {
            Some(ctx) => {
                ctx.tracker = tracker;
                true
            }
            None => false,
        };
        drop(st);
        // A frame of this track may have arrived while it was busy.
        self.wake.notify_one();
        open
    }

    fn worker(
        &self,
        detector: &Detector,
        opts: &DetectOptions,
        min_score: f32,
        events: &broadcast::Sender<Arc<DetectionEvent>>,
    ) {
        while let Some(Job { id, slot, meta, frame, mut tracker }) = self.next_job() {
            let started = Instant::now();
            let result = detector.detect_i420(&frame.i420(), opts);
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    self.finish(id, tracker);
                    Counters::inc(&self.counters.detect_errors);
                    tracing::warn!(track = %meta.track, participant = %meta.participant, "detection failed: {e}");
                    continue;
                }
            };
            let detections = tracking::objects(tracker.as_mut(), result.detections, frame.rtp_ms(), min_score);
            self.metrics.observe(Stage::Inference, started.elapsed());
            // The publisher may have left while we were busy: its results go nowhere.
            if !self.finish(id, tracker) {
                continue;
            }
            Counters::inc(&self.counters.detected);
            self.metrics.frame(slot, Outcome::Detected);
            self.metrics.objects(slot, detections.len());
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
                ready: Instant::now(),
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
        let tracker = self.tracking.clone().map(Tracker::new);
        let slot = self.metrics.open_track();
        let mut st = self.lock();
        st.queue.open(id, Instant::now());
        st.tracks.insert(id, TrackCtx { meta, tracker, slot });
    }

    /// Hands the newest decoded frame of a track over; an undetected older one is dropped.
    fn submit(&self, id: u64, frame: Frame) {
        let verdict = frame.motion;
        let mut st = self.lock();
        let submitted = st.queue.submit(id, frame, verdict, Instant::now());
        let slot = st.tracks.get(&id).map(|t| t.slot);
        drop(st);
        match submitted {
            Submitted::Queued => self.wake.notify_one(),
            Submitted::Replaced | Submitted::Unknown => Counters::inc(&self.counters.dropped),
            Submitted::Gated => Counters::inc(&self.counters.gated),
        }
        let outcome = match submitted {
            Submitted::Replaced => Some(Outcome::Skipped),
            Submitted::Gated => Some(Outcome::Gated),
            Submitted::Queued | Submitted::Unknown => None,
        };
        if let (Some(slot), Some(outcome)) = (slot, outcome) {
            self.metrics.frame(slot, outcome);
        }
    }

    fn close(&self, id: u64) {
        let mut st = self.lock();
        if let Some(ctx) = st.tracks.remove(&id) {
            self.metrics.close_track(ctx.slot);
        }
        if st.queue.close(id) {
            Counters::inc(&self.counters.dropped);
        }
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

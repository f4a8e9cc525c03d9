//! [`MediaHub`]: what the server talks to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use callsight_signal::TrackDetections;
use callsight_vision::{DetectOptions, Detector};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::driver::{self, Command};
use crate::scheduler::Scheduler;
use crate::stats::Counters;
use crate::MediaError;

/// Limits and knobs of the media leg. Every limit has a name and a default.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// The one UDP port all sessions share (port 0 = any free port). With an unspecified
    /// IP (0.0.0.0) one socket per candidate IP is bound, all on the same port.
    pub udp_bind: SocketAddr,
    /// Host candidate IPs to announce; empty = the bind IP if it is specified, else
    /// 127.0.0.1 plus the address of the interface that holds the default route.
    pub candidate_ips: Vec<IpAddr>,
    /// Detections per second per track at most (0 = as fast as the workers go).
    pub max_detect_fps: f32,
    /// Detection worker threads shared by all tracks (0 = `Detector::recommended_workers`).
    /// Give the detector as many concurrent slots (`DetectorConfig::workers`).
    pub workers: usize,
    /// Frames larger than this are downscaled (aspect kept) before detection.
    pub max_pixels: usize,
    /// Frames wider or taller than this are refused (not decoded further into memory).
    pub max_dimension: usize,
    /// Publishing sessions at most; `publish` fails beyond it.
    pub max_sessions: usize,
    /// A session that received no datagram for this long is closed.
    pub idle_timeout: Duration,
    /// Encoded frames queued per track before the decoder (beyond: dropped + keyframe request).
    pub decode_queue: usize,
    /// Keyframe requests per track at most once per this interval.
    pub keyframe_interval: Duration,
    /// Largest SDP offer accepted, in bytes.
    pub max_offer_bytes: usize,
    /// Options handed to the detector for every frame.
    pub detect: DetectOptions,
    /// Nice value of the detection threads (Linux; 0 = unchanged). Under overload the
    /// transport and decoders then keep their real-time pace and only detection slows.
    pub detect_nice: i32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            candidate_ips: Vec::new(),
            max_detect_fps: 15.0,
            workers: 0,
            max_pixels: 1920 * 1080,
            max_dimension: 4096,
            max_sessions: 32,
            idle_timeout: Duration::from_secs(30),
            decode_queue: 32,
            keyframe_interval: Duration::from_millis(500),
            max_offer_bytes: 64 * 1024,
            detect: DetectOptions::default(),
            detect_nice: 5,
        }
    }
}

/// Who publishes: one participant of one room (one session each).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PublisherKey {
    pub room: String,
    pub participant: String,
}

/// Detections of one frame of one published track, addressed to its room.
#[derive(Clone, Debug)]
pub struct DetectionEvent {
    pub room: String,
    /// What the room's participants receive, as the wire carries it.
    pub result: TrackDetections,
}

/// Counters since start; latency = frame arrival (first packet) → event sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MediaStats {
    pub sessions: usize,
    pub decoders: usize,
    /// Decoded frames waiting for a worker (≤ one per track).
    pub pending_frames: usize,
    pub workers: usize,
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub frames_detected: u64,
    /// Received but never detected: replaced by a newer frame, skipped while waiting for a
    /// keyframe, refused (too large), or queue overflow.
    pub frames_dropped: u64,
    pub frames_downscaled: u64,
    pub frames_refused: u64,
    pub decode_errors: u64,
    pub detect_errors: u64,
    pub keyframe_requests: u64,
    /// Datagrams no session accepted, or that were not STUN/DTLS/RTP at all.
    pub garbage_packets: u64,
    pub latency_p50_ms: Option<f32>,
    pub latency_p95_ms: Option<f32>,
}

struct Inner {
    cmd: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Arc<DetectionEvent>>,
    counters: Arc<Counters>,
    scheduler: Arc<Scheduler>,
    lifecycle: watch::Receiver<u64>,
    local_addrs: Vec<SocketAddr>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The driver and the decoder threads hold each other's channels: say stop.
        let _ = self.cmd.send(Command::Shutdown);
        self.scheduler.shutdown();
    }
}

/// The media leg: sessions, decoders, detection workers. Cheap to clone.
#[derive(Clone)]
pub struct MediaHub {
    inner: Arc<Inner>,
}

impl MediaHub {
    /// Binds the UDP port, starts the driver task (on the current tokio runtime) and the
    /// detection workers (plain threads, so inference never blocks the runtime).
    pub async fn start(config: MediaConfig, detector: Arc<Detector>) -> Result<MediaHub, MediaError> {
        let counters = Arc::new(Counters::default());
        let (events, _) = broadcast::channel(256);
        // The detector knows how many inferences it can run at once without
        // oversubscribing the cores (onnxruntime: sessions × intra-op threads).
        let workers = if config.workers > 0 { config.workers } else { detector.recommended_workers() };
        let scheduler = Scheduler::start(
            workers,
            config.detect_nice,
            config.max_detect_fps,
            config.detect.clone(),
            detector,
            counters.clone(),
            events.clone(),
        )?;
        let (lifecycle_tx, lifecycle) = watch::channel(0u64);
        let (cmd, local_addrs) = driver::start(config, counters.clone(), scheduler.clone(), lifecycle_tx).await?;
        tracing::info!(?local_addrs, workers, "media hub started");
        Ok(MediaHub { inner: Arc::new(Inner { cmd, events, counters, scheduler, lifecycle, local_addrs }) })
    }

    /// Accepts a send-only H.264 video offer from `key` (replacing that key's previous
    /// session) and returns the SDP answer, with host candidates, no trickle.
    pub async fn publish(&self, key: PublisherKey, offer_sdp: &str) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Command::Publish { key, offer: offer_sdp.to_owned(), reply })
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Participant left: its session, decoders and pending frames are freed.
    pub fn unpublish(&self, key: &PublisherKey) {
        let _ = self.inner.cmd.send(Command::Unpublish { key: key.clone() });
    }

    /// Detection results of every track, in the order they were computed.
    pub fn events(&self) -> broadcast::Receiver<Arc<DetectionEvent>> {
        self.inner.events.subscribe()
    }

    pub fn stats(&self) -> MediaStats {
        let c = &self.inner.counters;
        let (p50, p95) = c.latency_percentiles();
        MediaStats {
            sessions: c.sessions.load(Relaxed),
            decoders: c.decoders.load(Relaxed),
            pending_frames: self.inner.scheduler.pending_frames(),
            workers: self.inner.scheduler.workers(),
            frames_received: c.received.load(Relaxed),
            frames_decoded: c.decoded.load(Relaxed),
            frames_detected: c.detected.load(Relaxed),
            frames_dropped: c.dropped.load(Relaxed),
            frames_downscaled: c.downscaled.load(Relaxed),
            frames_refused: c.refused.load(Relaxed),
            decode_errors: c.decode_errors.load(Relaxed),
            detect_errors: c.detect_errors.load(Relaxed),
            keyframe_requests: c.keyframe_requests.load(Relaxed),
            garbage_packets: c.garbage_packets.load(Relaxed),
            latency_p50_ms: p50,
            latency_p95_ms: p95,
        }
    }

    /// The UDP addresses the hub listens on (one port, one socket per candidate IP).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// Changes whenever a session or decoder is created or freed: wait on it instead of
    /// polling `stats()`.
    pub fn lifecycle(&self) -> watch::Receiver<u64> {
        self.inner.lifecycle.clone()
    }
}

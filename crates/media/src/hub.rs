//! [`MediaHub`]: what the server talks to, and the only module that wires the stages:
//! sockets + sessions (`driver`) → decoders (`decode`) → motion gate (`gate`) →
//! detection and tracking (`scheduler`) → events.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use callsight_vision::Detector;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::decode::{self, DecoderCtx};
use crate::driver::{self, Command, Role};
use crate::error::MediaError;
use crate::gate::MotionStage;
use crate::metrics::MediaMetrics;
use crate::scheduler::{DetectPlan, Scheduler};
use crate::stats::Counters;
use crate::types::{
    AccessUnit, DetectionEvent, FrameSink, MediaConfig, MediaStats, ParticipantKey, ServerOffer, TrackMeta, TrackStages,
};

/// Server offers waiting for the signalling side (beyond: dropped with a warning).
const OFFER_QUEUE: usize = 1024;
/// Ended sessions' keys a slow reader of [`MediaHub::closed_sessions`] may lag behind.
const CLOSED_QUEUE: usize = 1024;

struct Inner {
    cmd: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Arc<DetectionEvent>>,
    counters: Arc<Counters>,
    metrics: Arc<MediaMetrics>,
    scheduler: Arc<Scheduler>,
    lifecycle: watch::Receiver<u64>,
    local_addrs: Vec<SocketAddr>,
    offers: std::sync::Mutex<Option<mpsc::Receiver<ServerOffer>>>,
    closed: broadcast::Sender<ParticipantKey>,
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

/// Decoder thread + detection slot per published video track.
struct DecodeThenDetect {
    sink: Arc<Scheduler>,
    motion: Option<callsight_vision::MotionConfig>,
    counters: Arc<Counters>,
    metrics: Arc<MediaMetrics>,
    lifecycle: Arc<watch::Sender<u64>>,
    max_pixels: usize,
    max_dimension: usize,
    sps_limits: crate::sps::SpsLimits,
    queue: usize,
    next_track: u64,
}

impl TrackStages for DecodeThenDetect {
    fn open(&mut self, meta: TrackMeta, request_keyframe: Box<dyn Fn() + Send>) -> Option<SyncSender<AccessUnit>> {
        self.next_track += 1;
        let track_id = self.next_track;
        let (tx, rx) = sync_channel(self.queue.max(1));
        let sink: Arc<dyn FrameSink> = match &self.motion {
            Some(m) => Arc::new(MotionStage::new(m.clone(), self.sink.clone())),
            None => self.sink.clone(),
        };
        sink.open(track_id, meta);
        self.counters.decoders.fetch_add(1, Relaxed);
        let lifecycle = self.lifecycle.clone();
        let counters = self.counters.clone();
        let ctx = DecoderCtx {
            track_id,
            sink: sink.clone(),
            counters: self.counters.clone(),
            metrics: self.metrics.clone(),
            max_pixels: self.max_pixels,
            max_dimension: self.max_dimension,
            sps_limits: self.sps_limits.clone(),
            request_keyframe,
            on_exit: Box::new(move || {
                counters.decoders.fetch_sub(1, Relaxed);
                lifecycle.send_modify(|v| *v = v.wrapping_add(1));
            }),
        };
        if let Err(e) = decode::spawn(ctx, rx) {
            tracing::error!("cannot start decoder thread: {e}");
            sink.close(track_id);
            self.counters.decoders.fetch_sub(1, Relaxed);
            return None;
        }
        Some(tx)
    }
}

impl MediaHub {
    /// Binds the UDP port, starts the driver task (on the current tokio runtime) and the
    /// detection workers (plain threads, so inference never blocks the runtime).
    pub async fn start(mut config: MediaConfig, detector: Arc<Detector>) -> Result<MediaHub, MediaError> {
        if config.simulcast_detect_width == 0 {
            config.simulcast_detect_width = detector.info().input_size[0] as u32;
        }
        if let (Some(t), Some(m)) = (&config.tracking, &config.motion) {
            if t.max_coast_ms <= m.recheck_ms {
                return Err(MediaError::Config(format!(
                    "the tracker's coast limit ({} ms) must exceed the motion gate's re-check interval ({} ms), \
                     or tracks die in every still scene",
                    t.max_coast_ms, m.recheck_ms
                )));
            }
        }
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(MediaMetrics::new(counters.clone()));
        let (events, _) = broadcast::channel(256);
        // The detector knows how many inferences it can run at once without
        // oversubscribing the cores (onnxruntime: sessions × intra-op threads).
        let workers = if config.workers > 0 { config.workers } else { detector.recommended_workers() };
        let plan = DetectPlan {
            workers,
            nice: config.detect_nice,
            max_fps: config.max_detect_fps,
            max_wait: config.max_detect_wait,
            opts: config.detect.clone(),
            tracking: config.tracking.clone(),
        };
        let scheduler = Scheduler::start(plan, detector, counters.clone(), metrics.clone(), events.clone())?;
        let (lifecycle_tx, lifecycle) = watch::channel(0u64);
        let lifecycle_tx = Arc::new(lifecycle_tx);
        let stages = DecodeThenDetect {
            sink: scheduler.clone(),
            motion: config.motion.clone(),
            counters: counters.clone(),
            metrics: metrics.clone(),
            lifecycle: lifecycle_tx.clone(),
            max_pixels: config.max_pixels,
            max_dimension: config.max_dimension,
            sps_limits: config.sps_limits.clone(),
            queue: config.decode_queue,
            next_track: 0,
        };
        let (offers_tx, offers) = mpsc::channel(OFFER_QUEUE);
        let (closed, _) = broadcast::channel(CLOSED_QUEUE);
        let (cmd, local_addrs) =
            driver::start(config, counters.clone(), Box::new(stages), lifecycle_tx, offers_tx, closed.clone()).await?;
        tracing::info!(?local_addrs, workers, "media hub started");
        let offers = std::sync::Mutex::new(Some(offers));
        Ok(MediaHub {
            inner: Arc::new(Inner {
                cmd,
                events,
                counters,
                metrics,
                scheduler,
                lifecycle,
                local_addrs,
                offers,
                closed,
            }),
        })
    }

    /// Accepts a publish offer (H.264 video, Opus audio) from `key` (replacing that
    /// participant's previous session) and returns the SDP answer, with host candidates,
    /// no trickle. Its tracks are detected (video) and forwarded to the room's subscribers.
    pub async fn publish(&self, key: ParticipantKey, offer_sdp: &str) -> Result<String, MediaError> {
        self.publish_with(key, offer_sdp, Role::Participant { subscribe: false, analyse: true }).await
    }

    /// Like [`MediaHub::publish`], and the session also receives every other track of the
    /// room: the hub adds them by [`ServerOffer`]s (see [`MediaHub::offers`]).
    /// Without `analyse` its video is forwarded only, never decoded or detected.
    pub async fn publish_and_subscribe(
        &self,
        key: ParticipantKey,
        offer_sdp: &str,
        analyse: bool,
    ) -> Result<String, MediaError> {
        self.publish_with(key, offer_sdp, Role::Participant { subscribe: true, analyse }).await
    }

    /// A participant without the right to publish (its token's `canPublish` is false):
    /// its offer may only receive (`recvonly` or `inactive` m-lines; one that sends is
    /// refused with [`MediaError::Forbidden`], also in later renegotiations), and the
    /// session receives every other track of the room like [`MediaHub::publish_and_subscribe`].
    pub async fn subscribe_only(&self, key: ParticipantKey, offer_sdp: &str) -> Result<String, MediaError> {
        self.publish_with(key, offer_sdp, Role::ReceiveOnly).await
    }

    /// A WHEP viewer in `key.room` (`key.participant` names the viewer's session, never a
    /// participant id): answers its offer, whose receiving m-lines then carry the video
    /// and audio of participant `follows` (`None`: the room's earliest publisher present,
    /// the next one when it leaves), RTP timestamps unchanged, and whose data channel
    /// labelled `detections` carries what [`MediaHub::deliver_detections`] gives for
    /// that participant. Ends like any session: [`MediaHub::unpublish`], idle, ICE/DTLS.
    pub async fn view(
        &self,
        key: ParticipantKey,
        offer_sdp: &str,
        follows: Option<String>,
    ) -> Result<String, MediaError> {
        self.publish_with(key, offer_sdp, Role::Viewer { follows }).await
    }

    /// Hands a `detections` message (the JSON the WebSocket carries) of `participant`'s
    /// track in `room` to the viewers that show that participant.
    pub fn deliver_detections(&self, room: &str, participant: &str, text: Arc<str>) {
        let (room, participant) = (room.to_owned(), participant.to_owned());
        let _ = self.inner.cmd.send(Command::Detections { room, participant, text });
    }

    async fn publish_with(&self, key: ParticipantKey, offer_sdp: &str, role: Role) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .send(Command::Publish { key, offer: offer_sdp.to_owned(), role, reply })
            .map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// The participant's answer to its last [`ServerOffer`]. The command is queued when
    /// this is called (not when the future is first polled), so calls keep their order.
    pub fn answer(&self, key: ParticipantKey, sdp: &str) -> impl Future<Output = Result<(), MediaError>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.cmd.send(Command::Answer { key, sdp: sdp.to_owned(), reply });
        async move {
            sent.map_err(|_| MediaError::Stopped)?;
            rx.await.map_err(|_| MediaError::Stopped)?
        }
    }

    /// The tile the participant shows one of its received video tracks in (`mid` on its
    /// connection; device pixels; 0×0 = hidden): it picks the simulcast layer sent, and a
    /// hidden track is not sent. Unknown mids are ignored.
    pub fn track_settings(&self, key: ParticipantKey, mid: &str, width: u32, height: u32) {
        let _ = self.inner.cmd.send(Command::TrackSettings { key, mid: mid.to_owned(), width, height });
    }

    /// A renegotiation offer from the participant (it adds or stops its own tracks);
    /// resolves to the answer. An offer of the server's that crossed it is dropped and made
    /// again later (the server is the polite side of perfect negotiation). Queued when
    /// called, like [`MediaHub::answer`].
    pub fn renegotiate(
        &self,
        key: ParticipantKey,
        offer_sdp: &str,
    ) -> impl Future<Output = Result<String, MediaError>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.cmd.send(Command::Offer { key, sdp: offer_sdp.to_owned(), reply });
        async move {
            sent.map_err(|_| MediaError::Stopped)?;
            rx.await.map_err(|_| MediaError::Stopped)?
        }
    }

    /// Remote ICE candidates of `key`'s session trickled in after its offer (each line a
    /// `candidate:…` attribute value); resolves to how many were added (TCP ones are
    /// skipped). An ICE restart is an offer of its own ([`MediaHub::renegotiate`] with the
    /// new credentials). Queued when called, like [`MediaHub::answer`].
    pub fn add_remote_candidates(
        &self,
        key: ParticipantKey,
        lines: Vec<String>,
    ) -> impl Future<Output = Result<usize, MediaError>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.cmd.send(Command::Candidates { key, lines, reply });
        async move {
            sent.map_err(|_| MediaError::Stopped)?;
            rx.await.map_err(|_| MediaError::Stopped)?
        }
    }

    /// The renegotiation offers for subscribing participants, to deliver over signalling.
    /// One reader: the first call takes the receiver, later calls get `None`.
    pub fn offers(&self) -> Option<mpsc::Receiver<ServerOffer>> {
        self.inner.offers.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Participant left: its session, decoders and pending frames are freed.
    pub fn unpublish(&self, key: &ParticipantKey) {
        let _ = self.inner.cmd.send(Command::Unpublish { key: key.clone() });
    }

    /// The key of every media session that ends (unpublished, idle, ICE/DTLS failed,
    /// replaced, panicked), as it ends.
    pub fn closed_sessions(&self) -> broadcast::Receiver<ParticipantKey> {
        self.inner.closed.subscribe()
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
            frames_gated: c.gated.load(Relaxed),
            frames_dropped: c.dropped.load(Relaxed),
            frames_downscaled: c.downscaled.load(Relaxed),
            frames_refused: c.refused.load(Relaxed),
            frames_refused_sps: c.sps_refused.load(Relaxed),
            decode_errors: c.decode_errors.load(Relaxed),
            detect_errors: c.detect_errors.load(Relaxed),
            keyframe_requests: c.keyframe_requests.load(Relaxed),
            garbage_packets: c.garbage_packets.load(Relaxed),
            datagrams_dropped: c.datagrams_dropped.load(Relaxed),
            datagrams_send_dropped: c.datagrams_send_dropped.load(Relaxed),
            sessions_panicked: c.sessions_panicked.load(Relaxed),
            tracks_rejected: c.tracks_rejected.load(Relaxed),
            offers_repeated: c.offers_repeated.load(Relaxed),
            latency_p50_ms: p50,
            latency_p95_ms: p95,
        }
    }

    /// The Prometheus metrics (register them once with [`MediaMetrics::register`]).
    pub fn metrics(&self) -> Arc<MediaMetrics> {
        self.inner.metrics.clone()
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

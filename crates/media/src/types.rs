//! The media leg's value types: keys, configuration, events, statistics, and the units
//! that flow between stages (access units in, decoded frames out). A leaf: it imports
//! no other module of this crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use callsight_signal::SubscribedTrack;
use callsight_signal::TrackDetections;
use callsight_vision::{DetectOptions, I420Buffer, I420Frame, MotionConfig, MotionVerdict, TrackerConfig};
use serde::Serialize;

/// RTP header extension id for abs-capture-time (free in str0m's standard map).
pub const ABS_CAPTURE_TIME_ID: u8 = 9;

/// The DTLS handshake of the server's sessions (`crate::dtls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtlsStack {
    /// str0m's default (dimpl): clients with ECDSA certificates only (browsers, OBS, str0m).
    Dimpl,
    /// OpenSSL's DTLS 1.2: clients with RSA certificates too (GStreamer before 1.28).
    OpenSsl,
}

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
    /// What a stream's SPS may ask of a decoder (checked before the decoder sees it).
    pub sps_limits: crate::sps::SpsLimits,
    /// Publishing sessions at most; `publish` fails beyond it.
    pub max_sessions: usize,
    /// Video m-lines accepted per publish; further ones are rejected in the answer (port 0).
    pub max_tracks_per_publish: usize,
    /// A session that received no datagram for this long is closed.
    pub idle_timeout: Duration,
    /// Encoded frames queued per track before the decoder (beyond: dropped + keyframe request).
    pub decode_queue: usize,
    /// Datagrams of known sessions queued between the sockets and the sessions (beyond: dropped).
    pub media_queue: usize,
    /// Datagrams from unknown addresses that look like STUN (ICE checks of new sessions)
    /// queued beside the media queue (beyond: dropped). Anything else from an unknown
    /// address is dropped at once.
    pub stun_queue: usize,
    /// Kernel receive and send buffer of each media socket (SO_RCVBUF/SO_SNDBUF), bytes;
    /// capped by the kernel at `net.core.rmem_max`/`wmem_max` (a warning says so); 0 = the
    /// system default. A 16-person room sends ~18 000 datagrams/s from one socket, in
    /// bursts (a keyframe to 15 subscribers): the usual 208 KiB default overflows.
    pub udp_buffer_bytes: usize,
    /// Keyframe requests per track at most once per this interval.
    pub keyframe_interval: Duration,
    /// A renegotiation offer unanswered for this long is sent again (unchanged).
    pub offer_timeout: Duration,
    /// A subscribing session estimates its participant's downlink (str0m's TWCC-based
    /// BWE, starting from this many kbit/s); 0 = no estimate (then only REMB the
    /// participant sends limits its publishers).
    pub downlink_bwe_start_kbps: u64,
    /// The least a publisher is asked to send per video track (REMB), however small its
    /// subscribers' downlinks, in kbit/s.
    pub min_publish_kbps: u64,
    /// Largest SDP offer or answer accepted from a participant, in bytes.
    pub max_offer_bytes: usize,
    /// Whose DTLS handshake the sessions use (`crate::dtls`).
    pub dtls: DtlsStack,
    /// Options handed to the detector for every frame.
    pub detect: DetectOptions,
    /// Nice value of the detection threads (Linux; 0 = unchanged). Under overload the
    /// transport and decoders then keep their real-time pace and only detection slows.
    pub detect_nice: i32,
    /// The tracker run on each published track's results (stable `track_id`, velocity,
    /// coasting); `None` = results are the detector's boxes as they are. With tracking
    /// the detector runs at `low_score` and `detect.score_threshold` filters what is sent.
    pub tracking: Option<TrackerConfig>,
    /// The motion gate on each decoded frame: a still picture is not detected again
    /// (re-checked every `recheck_ms`); `None` = every frame is a candidate.
    pub motion: Option<MotionConfig>,
    /// A frame waiting longer than this is served before any other (no track starves
    /// behind tracks whose picture keeps changing).
    pub max_detect_wait: Duration,
    /// Of a simulcast track the detector decodes the smallest layer at least this wide
    /// (0 = the detector's input width: e.g. the 640×360 layer for a 416-wide network).
    pub simulcast_detect_width: u32,
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
            sps_limits: crate::sps::SpsLimits::default(),
            max_sessions: 32,
            max_tracks_per_publish: 3,
            idle_timeout: Duration::from_secs(30),
            decode_queue: 32,
            media_queue: 1024,
            stun_queue: 256,
            udp_buffer_bytes: 4 << 20,
            keyframe_interval: Duration::from_millis(500),
            offer_timeout: Duration::from_millis(3000),
            downlink_bwe_start_kbps: 2500,
            min_publish_kbps: 150,
            max_offer_bytes: 64 * 1024,
            dtls: DtlsStack::Dimpl,
            detect: DetectOptions::default(),
            detect_nice: 5,
            tracking: Some(TrackerConfig::default()),
            // The tracker's coast limit must exceed the gate's re-check interval, so tracks
            // survive a still scene (checked by `MediaHub::start`).
            motion: Some(MotionConfig::default()),
            max_detect_wait: Duration::from_millis(500),
            simulcast_detect_width: 0,
        }
    }
}

/// One participant of one room: it has one media session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParticipantKey {
    pub room: String,
    pub participant: String,
}

/// A renegotiation offer the server makes to a participant (tracks of others added or
/// stopped); the participant's answer goes back through `MediaHub::answer`.
#[derive(Clone, Debug)]
pub struct ServerOffer {
    pub key: ParticipantKey,
    pub sdp: String,
    /// Every track the participant receives once it has answered.
    pub tracks: Vec<SubscribedTrack>,
}

/// Detections of one frame of one published track, addressed to its room.
#[derive(Clone, Debug)]
pub struct DetectionEvent {
    pub room: String,
    /// What the room's participants receive, as the wire carries it.
    pub result: TrackDetections,
    /// When the result was ready: the send stage (`metrics::Stage::Send`) starts here.
    pub ready: Instant,
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
    /// Decoded frames the motion gate found unchanged and nobody detected (tracks coasted).
    pub frames_gated: u64,
    /// Received but never detected: replaced by a newer frame, skipped while waiting for a
    /// keyframe, refused (too large), or queue overflow.
    pub frames_dropped: u64,
    pub frames_downscaled: u64,
    pub frames_refused: u64,
    /// Access units dropped because their stream's SPS exceeds the decoder limits
    /// (`MediaConfig::sps_limits`: pixels, reference frames, picture buffer).
    pub frames_refused_sps: u64,
    pub decode_errors: u64,
    pub detect_errors: u64,
    pub keyframe_requests: u64,
    /// Datagrams no session accepted, or that were not STUN/DTLS/RTP at all.
    pub garbage_packets: u64,
    /// Datagrams of known sessions or STUN checks dropped because their queue was full.
    pub datagrams_dropped: u64,
    /// Datagrams not sent because the socket's send buffer was full (loss for the peer).
    pub datagrams_send_dropped: u64,
    /// Sessions dropped because str0m panicked inside them (the others keep running).
    pub sessions_panicked: u64,
    /// Video m-lines rejected in answers beyond `max_tracks_per_publish`.
    pub tracks_rejected: u64,
    /// Renegotiation offers sent again after `offer_timeout` without an answer.
    pub offers_repeated: u64,
    pub latency_p50_ms: Option<f32>,
    pub latency_p95_ms: Option<f32>,
}

/// Who a published track belongs to, copied into each event.
#[derive(Clone, Debug)]
pub(crate) struct TrackMeta {
    pub room: String,
    pub participant: String,
    /// The track's mid in its publishing session.
    pub track: String,
}

/// One encoded video frame (Annex-B access unit) as str0m depacketised it.
pub(crate) struct AccessUnit {
    pub data: Arc<[u8]>,
    pub rtp_timestamp: u32,
    /// The RTP timestamp unwrapped (str0m's extended 90 kHz time): the tracker's clock.
    pub rtp_time: u64,
    pub capture_time: Option<f64>,
    /// Arrival of the frame's first packet: the start of the latency we report.
    pub arrival: Instant,
    /// Frames were lost before this one.
    pub discontinuity: bool,
}

/// A decoded frame, compact (strides = widths), at most `max_pixels` large.
pub(crate) struct Frame {
    pub image: I420Buffer,
    pub orig_width: usize,
    pub orig_height: usize,
    pub rtp_timestamp: u32,
    pub rtp_time: u64,
    pub capture_time: Option<f64>,
    pub arrival: Instant,
    /// When decoding finished: the queue stage starts here.
    pub decoded: Instant,
    /// The motion gate's verdict (`Changed` when there is no gate).
    pub motion: MotionVerdict,
}

impl Frame {
    /// The frame as the detector and the motion gate read it.
    pub fn i420(&self) -> I420Frame<'_> {
        self.image.view()
    }

    /// Capture time on the RTP clock, in ms (unwrapped: monotone across the u32 wrap).
    pub fn rtp_ms(&self) -> f64 {
        self.rtp_time as f64 / 90.0
    }
}

/// Where a decoder hands its frames: the detection stage implements it.
pub(crate) trait FrameSink: Send + Sync {
    /// A track starts; its frames will come with `track`.
    fn open(&self, track: u64, meta: TrackMeta);
    /// The newest decoded frame of a track.
    fn submit(&self, track: u64, frame: Frame);
    /// The track ended: forget it and anything pending for it.
    fn close(&self, track: u64);
}

/// Starts the stages behind a published video track (decoding, detection). The driver
/// calls it on a track's first frame; the hub provides it.
pub(crate) trait TrackStages: Send {
    /// Returns where the track's access units go; `None` when the stages cannot start
    /// (the track's frames are then dropped). Dropping the sender ends the stages.
    fn open(
        &mut self,
        meta: TrackMeta,
        request_keyframe: Box<dyn Fn() + Send>,
    ) -> Option<std::sync::mpsc::SyncSender<AccessUnit>>;
}

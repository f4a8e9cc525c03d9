//! The server's media leg: browsers (or any WebRTC peer) publish H.264 video and Opus
//! audio to the server, which forwards every track to the room's other subscribers (an
//! SFU: publisher's RTP timestamps unchanged) and, where the participant allows it,
//! decodes the video and runs the detector on the newest frame of every track.
//!
//! Module map (arrows = imports; no module imports its importer):
//! - `types`: keys ([`ParticipantKey`]), [`MediaConfig`], [`DetectionEvent`],
//!   [`MediaStats`], the units between stages (access units, frames) and the stage
//!   interfaces (`FrameSink`, `TrackStages`). A leaf.
//! - `session`: `Session`, one participant's str0m `Rtc` and its behaviour, sans-IO
//!   (`handle_input` / `poll_output`): what it publishes, what it subscribes to (added
//!   and stopped by server offers, one at a time; the server is the polite side of
//!   perfect negotiation), frame-level forwarding, keyframe requests both ways.
//!   → types, capture, offer, contain, simulcast, sps.
//! - `simulcast`: a simulcast track's layers mapped onto one RTP timeline, the layer the
//!   detector decodes, and each subscriber's layer (by tile size and downlink; switches on
//!   keyframes). Sans-IO; a leaf.
//! - `udp`: sockets; routes each datagram on the socket task (known session / new-session
//!   STUN / junk) before anything is queued. → stats, error.
//! - `driver`: the task that feeds routed datagrams, timeouts and commands to sessions
//!   and carries their outputs out: datagrams to the sockets, published frames to the
//!   room's other sessions and (analysed video) to the track's stages, subscribers'
//!   keyframe requests to the publisher, offers to signalling. → session, udp, types, contain.
//! - `decode`: one openh264 decoder thread per track, frames out to a `FrameSink`.
//! - `gate`: the motion stage, a `FrameSink` per track in front of the scheduler
//!   (`callsight_vision::MotionGate` on each decoded frame). → types.
//! - `scheduler`: the detection worker pool, a `FrameSink`; runs `queue`'s policy
//!   (sans-IO: latest frame wins, changed pictures first, none starves, fps cap) and each
//!   track's tracker through `tracking` (detections → wire objects with `track_id`).
//!   → queue, tracking, types, stats.
//! - `metrics`: [`MediaMetrics`], the Prometheus metrics (`prometheus-client`): stage
//!   latency histograms, per-track frame outcomes (bounded labels), the counters.
//! - `hub`: [`MediaHub`], the public entry point and the only module that wires the
//!   stages together.
//! - leaves: `dtls` (the sessions' crypto: OpenSSL's DTLS, which accepts RSA client
//!   certificates), `capture` (sender capture time per frame), `offer` (SDP offer edits),
//!   `contain` (panic containment), `stats` (counters), `h264` (Annex-B helpers),
//!   `sps` (the decoder-bomb guard: each SPS parsed with `h264-reader` and checked),
//!   `error` ([`MediaError`]).
//! - with the `testing` feature: `client` (a str0m participant: publishes, answers server
//!   offers, records what it receives) and `synth` (synthetic H.264 from real photos),
//!   for tests and the `media-load` / `sfu-load` benches.

mod capture;
mod contain;
mod decode;
mod driver;
mod dtls;
pub mod error;
mod gate;
pub mod h264;
mod hub;
pub mod metrics;
mod offer;
mod queue;
mod scheduler;
mod session;
mod simulcast;
pub mod sps;
mod stats;
mod tracking;
mod types;
mod udp;

#[cfg(feature = "testing")]
pub mod client;
#[cfg(feature = "testing")]
pub mod synth;

pub use error::MediaError;
pub use hub::MediaHub;
pub use metrics::{MediaMetrics, Stage};
pub use types::{DetectionEvent, DtlsStack, MediaConfig, MediaStats, ParticipantKey, ServerOffer, ABS_CAPTURE_TIME_ID};

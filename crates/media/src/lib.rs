//! The server's media leg: browsers (or any WebRTC peer) publish H.264 video to the
//! server, which decodes it and runs the detector on the newest frame of every track.
//!
//! Module map:
//! - `hub`: [`MediaHub`], the public entry point (`start`, `publish`, `unpublish`,
//!   `events`, `stats`) and its configuration [`MediaConfig`].
//! - `driver`: one tokio task driving every str0m session over one shared UDP port
//!   (datagrams routed with `Rtc::accepts`), plus the host-candidate discovery.
//! - `decode`: one openh264 decoder thread per track; keyframe handling; downscaling.
//! - `capture`: sender capture time per frame (abs-capture-time + RTP clock).
//! - `scheduler`: the detection worker pool (latest frame wins, round-robin, fps cap).
//! - `stats`: counters and latency percentiles behind [`MediaStats`].
//! - `h264`: tiny Annex-B helpers (NAL types, keyframe test).
//! - `sps`: the decoder-bomb guard: each SPS parsed (`h264-reader`) and checked against [`sps::SpsLimits`].
//! - `client`: a str0m publishing client (tests and `media-load` use it as the peer).
//! - `synth`: synthetic H.264 from real photos (tests and `media-load`).
//! - `error`: [`MediaError`].

mod capture;
pub mod client;
mod decode;
mod driver;
pub mod error;
pub mod h264;
pub mod hub;
mod scheduler;
pub mod sps;
mod stats;
pub mod synth;

pub use error::MediaError;
pub use hub::{DetectionEvent, MediaConfig, MediaHub, MediaStats, PublisherKey};

//! Errors of the media leg.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot bind UDP socket {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid SDP offer: {0}")]
    BadOffer(String),
    #[error("offer rejected: {0}")]
    Rejected(String),
    /// The participant may not do what its SDP asks (e.g. send media without the right to publish).
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("too many media sessions (limit {0})")]
    TooManySessions(usize),
    #[error("invalid media configuration: {0}")]
    Config(String),
    #[error("media hub has stopped")]
    Stopped,
    #[error("WebRTC error: {0}")]
    Rtc(String),
    #[error("H.264 codec error: {0}")]
    Codec(String),
    #[error("test data missing: {0} (run scripts/fetch-test-data.sh)")]
    TestData(String),
    #[error("image error: {0}")]
    Image(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

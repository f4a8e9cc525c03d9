//! Callsight signaling, sans-IO: the wire protocol and the rules of rooms, with no
//! sockets inside, so every rule is tested deterministically.
//!
//! - [`protocol`]: the versioned JSON messages (`docs/protocol.md`) as serde enums.
//! - [`detections`]: the typed result of one detected frame (`detections` message).
//! - [`ids`]: room and peer identifiers — validation and generation.
//! - [`limits`]: named limits with defaults, and the per-connection rate limiter.
//! - [`names`]: display names cleaned of bidi overrides, zero-width and control characters.
//! - [`resume`]: resume tokens (keyed MAC) and the grace period in which they work.
//! - [`rooms`]: the [`rooms::RoomStore`] trait (who is in which room) and its in-memory backend.
//! - [`hub`]: the state machine the server drives: connection events in, messages out.

pub mod detections;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod names;
pub mod protocol;
pub mod resume;
pub mod rooms;

pub use detections::{DetectedObject, TrackDetections};
pub use hub::{ConnId, Hub, Output};
pub use ids::{PeerId, RoomId};
pub use limits::Limits;
pub use protocol::{ClientMessage, ErrorCode, PeerInfo, ServerMessage, PROTOCOL_VERSION};
pub use resume::ResumeKey;
pub use rooms::{MemoryRoomStore, RoomStore};

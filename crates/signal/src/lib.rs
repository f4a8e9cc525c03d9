//! Callsight signaling, sans-IO: the wire protocol and the rules of rooms, with no
//! sockets inside, so every rule is tested deterministically.
//!
//! - [`protocol`]: the versioned JSON messages (`docs/protocol.md`) as serde enums.
//! - [`admission`]: who may join a room and with which rights (the [`admission::Admission`] trait).
//! - [`detections`]: the typed result of one detected frame (`detections` message).
//! - [`ids`]: room and peer identifiers — validation and generation.
//! - [`limits`]: named limits with defaults, and the per-connection rate limiter.
//! - [`names`]: display names cleaned of bidi overrides, zero-width and control characters.
//! - [`resume`]: resume tokens (keyed MAC) and the grace period in which they work.
//! - [`redact`]: short keyed hashes that stand in for room ids in logs.
//! - [`rooms`]: the [`rooms::RoomStore`] trait (who is in which room) and its in-memory backend.
//! - [`hub`]: the state machine the server drives: connection events in, messages out.

pub mod admission;
pub mod detections;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod names;
pub mod protocol;
pub mod redact;
pub mod resume;
pub mod rooms;

pub use admission::{Admission, Grant, Refusal};
pub use detections::{DetectedObject, TrackDetections};
pub use hub::{ConnId, Hub, Output, Seat, SeatRefusal};
pub use ids::{PeerId, RoomId};
pub use limits::Limits;
pub use protocol::{ClientMessage, ErrorCode, IceServer, PeerInfo, ServerMessage, SubscribedTrack, PROTOCOL_VERSION};
pub use resume::ResumeKey;
pub use rooms::{MemoryRoomStore, RoomStore};

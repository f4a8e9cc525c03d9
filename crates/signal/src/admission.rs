//! Who may join a room, and with which rights. The hub asks an [`Admission`] on every
//! `join`; the server's implementation checks room access tokens (`--require-token`),
//! reading its own clock, so the hub stays free of clocks and secrets.

use crate::ids::RoomId;
use crate::protocol::ErrorCode;

/// What a participant may do in the room it joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The display name the token names; it replaces the one the client asked for.
    pub name: Option<String>,
    /// May offer media to the server's media leg (`publish`).
    pub can_publish: bool,
    /// Receives what the server derives from others' media (`detections`).
    pub can_subscribe: bool,
}

impl Grant {
    /// Everything, as in an open room.
    pub fn open() -> Grant {
        Grant { name: None, can_publish: true, can_subscribe: true }
    }
}

/// Why a join was refused; sent back as an `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

pub trait Admission: Send {
    /// Decides on a `join` to `room` that carried `token`.
    fn admit(&self, room: &RoomId, token: Option<&str>) -> Result<Grant, Refusal>;
}

/// Rooms open to whoever has the link (the default).
pub struct Open;

impl Admission for Open {
    fn admit(&self, _room: &RoomId, _token: Option<&str>) -> Result<Grant, Refusal> {
        Ok(Grant::open())
    }
}

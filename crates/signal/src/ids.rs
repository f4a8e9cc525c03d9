//! Room and peer identifiers.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Shortest and longest room id accepted from a client.
pub const ROOM_ID_MIN_LEN: usize = 8;
pub const ROOM_ID_MAX_LEN: usize = 64;
/// Random bytes in a generated room id: 128 bits, 22 base64url characters.
pub const ROOM_ID_RANDOM_BYTES: usize = 16;
/// Random bytes in a peer id: 96 bits, 16 base64url characters.
pub const PEER_ID_RANDOM_BYTES: usize = 12;

fn is_url_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A fresh id for one server process among the nodes sharing rooms (72 random bits).
pub fn random_node_id() -> String {
    random_token(9)
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A room's name: what the URL `/r/<room>` carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// Checks charset (`A-Z a-z 0-9 _ -`) and length.
    pub fn parse(s: &str) -> Option<RoomId> {
        let ok = (ROOM_ID_MIN_LEN..=ROOM_ID_MAX_LEN).contains(&s.len()) && s.chars().all(is_url_safe);
        ok.then(|| RoomId(s.to_owned()))
    }

    /// A fresh unguessable room id.
    pub fn random() -> RoomId {
        RoomId(random_token(ROOM_ID_RANDOM_BYTES))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What logs print for this room: a short keyed hash, never the id (the room's secret).
    pub fn tag(&self) -> crate::redact::Tag {
        crate::redact::room_tag(&self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A participant's id, chosen by the server, unique within its room.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    pub fn random() -> PeerId {
        PeerId(random_token(PEER_ID_RANDOM_BYTES))
    }

    /// Accepts only the shape the server itself makes, so a `resume` hint can't smuggle
    /// arbitrary text into other clients' pages.
    pub fn parse(s: &str) -> Option<PeerId> {
        let len = PEER_ID_RANDOM_BYTES.div_ceil(3) * 4;
        (s.len() == len && s.chars().all(is_url_safe)).then(|| PeerId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_checked() {
        assert!(RoomId::parse("abcdEFGH-_12").is_some());
        assert!(RoomId::parse("short").is_none());
        assert!(RoomId::parse(&"a".repeat(ROOM_ID_MAX_LEN + 1)).is_none());
        assert!(RoomId::parse("has space in it").is_none());
        assert!(RoomId::parse("../../etc/passwd").is_none());
        assert!(RoomId::parse("ünïcödé-room").is_none());
    }

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = RoomId::random();
        let b = RoomId::random();
        assert_eq!(a.as_str().len(), 22, "128 bits in base64url");
        assert!(RoomId::parse(a.as_str()).is_some());
        assert_ne!(a, b);
        let p = PeerId::random();
        assert_eq!(p.as_str().len(), 16);
        assert_eq!(PeerId::parse(p.as_str()), Some(p));
        assert!(PeerId::parse("<script>alert(1)").is_none());
    }
}

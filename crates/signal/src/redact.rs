//! Short keyed hashes that stand in for secrets in logs.
//!
//! A room id is the room's only secret, so logs name a room by [`room_tag`]: the first
//! 32 bits of HMAC-SHA256 under a key drawn at random when the process starts. Lines of
//! one run about one room share a tag; the tag cannot be turned back into the room id,
//! nor computed for a guessed room id by anyone without the key (which never leaves
//! memory), and tags differ from one run to the next.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::sync::OnceLock;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

fn key() -> &'static [u8; 32] {
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    })
}

/// What logs print instead of a room id: 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag([u8; 4]);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The log tag of a room (any string: a room id as the client sent it, valid or not).
pub fn room_tag(room: &str) -> Tag {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key()).expect("HMAC accepts any key length");
    mac.update(room.as_bytes());
    let digest = mac.finalize().into_bytes();
    Tag([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_stable_short_and_hides_the_room() {
        let t = room_tag("room-secret-0001");
        assert_eq!(t, room_tag("room-secret-0001"));
        assert_ne!(t, room_tag("room-secret-0002"));
        let shown = t.to_string();
        assert_eq!(shown.len(), 8);
        assert!(shown.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{t:?}"), shown);
    }
}

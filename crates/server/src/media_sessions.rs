//! The server's ledger of media sessions: caps per room and per client address, and the
//! order of publish and unpublish per participant.
//!
//! A publish is answered by the media leg later (an SDP negotiation), while leaving
//! unpublishes at once. So a `publish` followed by `leave` in one TCP write would create
//! the session after its unpublish, for a participant who is gone. The ledger remembers
//! publishes in flight; when one completes for a participant who left meanwhile, the
//! caller unpublishes it again. A media session never outlives its participant.

use callsight_media::ParticipantKey;
use std::collections::HashMap;
use std::net::IpAddr;

/// Caps (0 = no cap).
#[derive(Clone, Copy, Debug)]
pub struct SessionCaps {
    pub per_room: usize,
    pub per_address: usize,
}

#[derive(Default)]
struct InFlight {
    publishes: u32,
    /// The participant left after (one of) these publishes was handed over.
    gone: bool,
}

pub struct MediaSessions {
    caps: SessionCaps,
    /// Sessions published or being published, with the publisher's client address.
    sessions: HashMap<ParticipantKey, IpAddr>,
    in_flight: HashMap<ParticipantKey, InFlight>,
}

/// What to do when a publish completes.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// Answer the participant.
    Answer,
    /// The participant left meanwhile: unpublish the session just made.
    Unpublish,
}

impl MediaSessions {
    pub fn new(caps: SessionCaps) -> Self {
        MediaSessions { caps, sessions: HashMap::new(), in_flight: HashMap::new() }
    }

    /// A publish is about to be handed to the media leg; refused (with the reason) when
    /// a cap is reached. Publishing again replaces the participant's session, so its own
    /// session never counts against it.
    pub fn publishing(&mut self, key: &ParticipantKey, client: IpAddr) -> Result<(), String> {
        let others = || self.sessions.iter().filter(|(k, _)| *k != key);
        let in_room = others().filter(|(k, _)| k.room == key.room).count();
        if self.caps.per_room > 0 && in_room >= self.caps.per_room {
            return Err(format!("this room has its maximum of {} media sessions", self.caps.per_room));
        }
        let from_address = others().filter(|(_, a)| **a == client).count();
        if self.caps.per_address > 0 && from_address >= self.caps.per_address {
            return Err(format!("your address has its maximum of {} media sessions", self.caps.per_address));
        }
        self.sessions.insert(key.clone(), client);
        let f = self.in_flight.entry(key.clone()).or_default();
        f.publishes += 1;
        f.gone = false;
        Ok(())
    }

    /// The participant is gone (left or disconnected); the caller unpublishes now.
    pub fn unpublished(&mut self, key: &ParticipantKey) {
        self.sessions.remove(key);
        if let Some(f) = self.in_flight.get_mut(key) {
            f.gone = true;
        }
    }

    /// The media leg answered a publish (`ok`: a session was made).
    pub fn published(&mut self, key: &ParticipantKey, ok: bool) -> Completion {
        let Some(f) = self.in_flight.get_mut(key) else { return Completion::Answer };
        f.publishes = f.publishes.saturating_sub(1);
        let gone = f.gone;
        if f.publishes == 0 {
            self.in_flight.remove(key);
            if !ok && !gone {
                // Nothing was made and nothing else is coming.
                self.sessions.remove(key);
            }
        }
        if gone {
            Completion::Unpublish
        } else {
            Completion::Answer
        }
    }

    /// Sessions counted (published or in flight).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(room: &str, p: &str) -> ParticipantKey {
        ParticipantKey { room: room.into(), participant: p.into() }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn publish_then_leave_before_the_answer_is_unpublished_again() {
        let mut m = MediaSessions::new(SessionCaps { per_room: 0, per_address: 0 });
        let k = key("room", "a");
        m.publishing(&k, ip("10.0.0.1")).unwrap();
        m.unpublished(&k);
        assert_eq!(m.published(&k, true), Completion::Unpublish);
        assert!(m.is_empty());
        // An ordinary publish is answered and counted until unpublished.
        m.publishing(&k, ip("10.0.0.1")).unwrap();
        assert_eq!(m.published(&k, true), Completion::Answer);
        assert_eq!(m.len(), 1);
        m.unpublished(&k);
        assert!(m.is_empty());
        // Leave, rejoin with the same id and publish again while the first is in flight.
        m.publishing(&k, ip("10.0.0.1")).unwrap();
        m.unpublished(&k);
        m.publishing(&k, ip("10.0.0.1")).unwrap();
        assert_eq!(m.published(&k, true), Completion::Answer);
        assert_eq!(m.published(&k, true), Completion::Answer);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn caps_per_room_and_per_address() {
        let mut m = MediaSessions::new(SessionCaps { per_room: 2, per_address: 3 });
        m.publishing(&key("r1", "a"), ip("10.0.0.1")).unwrap();
        m.publishing(&key("r1", "b"), ip("10.0.0.2")).unwrap();
        assert!(m.publishing(&key("r1", "c"), ip("10.0.0.3")).unwrap_err().contains("room"));
        m.publishing(&key("r1", "a"), ip("10.0.0.1")).expect("republishing replaces its own session");
        m.publishing(&key("r2", "a"), ip("10.0.0.1")).unwrap();
        m.publishing(&key("r3", "a"), ip("10.0.0.1")).unwrap();
        assert!(m.publishing(&key("r4", "a"), ip("10.0.0.1")).unwrap_err().contains("address"));
        // A refused publish (media leg full) frees its place.
        m.unpublished(&key("r3", "a"));
        m.publishing(&key("r4", "a"), ip("10.0.0.1")).unwrap();
        assert_eq!(m.published(&key("r4", "a"), false), Completion::Answer);
        m.publishing(&key("r5", "a"), ip("10.0.0.1")).unwrap();
    }
}

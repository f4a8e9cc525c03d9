//! Resume tokens: the secret that lets a participant take its id back after its
//! WebSocket dropped (`docs/security.md`, "Identity").
//!
//! A token is HMAC-SHA256 over the room and the participant id with the server's
//! resume key, so the server stores nothing per token and a key that persists across
//! restarts keeps tokens valid after a restart. It is sent only in the participant's own
//! `joined`; it is accepted only for an id nobody holds, within the grace period after
//! that id's connection dropped (or after the hub started, for ids issued by an earlier
//! run), and never after a deliberate `leave`.

use crate::ids::{PeerId, RoomId};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Bytes of a resume key (HMAC-SHA256 key, 256 bits).
pub const RESUME_KEY_BYTES: usize = 32;
/// Domain separation: a token is useless as any other MAC of the same key.
const CONTEXT: &[u8] = b"callsight resume token v1";

/// The server's secret for resume tokens.
#[derive(Clone)]
pub struct ResumeKey([u8; RESUME_KEY_BYTES]);

impl std::fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKey(..)")
    }
}

impl ResumeKey {
    /// A fresh random key (tokens then die with the process).
    pub fn random() -> Self {
        let mut key = [0u8; RESUME_KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        ResumeKey(key)
    }

    /// A key read from storage; `None` unless exactly [`RESUME_KEY_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ResumeKey)
    }

    pub fn as_bytes(&self) -> &[u8; RESUME_KEY_BYTES] {
        &self.0
    }

    fn mac(&self, room: &RoomId, peer: &PeerId) -> Hmac<Sha256> {
        // HMAC takes keys of any length; ours is fixed, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        // Length-prefixed fields: no two (room, peer) pairs feed the same bytes.
        for part in [CONTEXT, room.as_str().as_bytes(), peer.as_str().as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The token of `peer` in `room`: 256 bits, base64url (43 characters).
    pub fn token(&self, room: &RoomId, peer: &PeerId) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(room, peer).finalize().into_bytes())
    }

    /// A short public name of the key (a MAC of a fixed text, not the key): nodes that
    /// must share the key compare it.
    pub fn fingerprint(&self) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(b"callsight resume key fingerprint v1");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..12])
    }

    /// Whether `token` is `peer`'s token in `room`, compared in constant time.
    pub fn verify(&self, room: &RoomId, peer: &PeerId, token: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.as_bytes()) else { return false };
        self.mac(room, peer).verify_slice(&tag).is_ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Departure {
    /// The connection dropped at this time: resumable until it plus the grace.
    Dropped(Instant),
    /// The participant said `leave`: its token is dead.
    Left,
}

/// Which ids may be resumed now: sans-IO, time comes in.
#[derive(Debug)]
pub struct Departures {
    grace: Duration,
    /// When the hub started: ids it never saw (issued by an earlier run) are
    /// resumable until this plus the grace. `None`: no earlier run.
    boot: Option<Instant>,
    gone: HashMap<(RoomId, PeerId), Departure>,
    /// Expiry order for pruning (roughly sorted; an entry is pruned at most one grace late).
    expiries: VecDeque<(Instant, (RoomId, PeerId), Departure)>,
}

impl Departures {
    pub fn new(grace: Duration, boot: Option<Instant>) -> Self {
        Departures { grace, boot, gone: HashMap::new(), expiries: VecDeque::new() }
    }

    /// `peer`'s connection dropped without `leave`.
    pub fn dropped(&mut self, room: RoomId, peer: PeerId, now: Instant) {
        self.record(room, peer, Departure::Dropped(now), now + self.grace, now);
    }

    /// `peer` left on purpose: its token no longer resumes it.
    pub fn left(&mut self, room: RoomId, peer: PeerId, now: Instant) {
        // Only needed while ids from an earlier run are still resumable.
        let until = self.boot.map(|b| b + self.grace).filter(|&until| until > now);
        match until {
            Some(until) => self.record(room, peer, Departure::Left, until, now),
            None => {
                self.gone.remove(&(room, peer));
            }
        }
    }

    /// The id was taken again (resumed): forget its departure.
    pub fn rejoined(&mut self, room: &RoomId, peer: &PeerId) {
        self.gone.remove(&(room.clone(), peer.clone()));
    }

    /// Whether an id that nobody holds may be resumed now (the token is checked apart).
    pub fn may_resume(&self, room: &RoomId, peer: &PeerId, now: Instant) -> bool {
        match self.gone.get(&(room.clone(), peer.clone())) {
            Some(Departure::Dropped(at)) => now.saturating_duration_since(*at) <= self.grace,
            Some(Departure::Left) => false,
            None => self.boot.is_some_and(|b| now.saturating_duration_since(b) <= self.grace),
        }
    }

    /// Departures remembered (for tests and stats).
    pub fn len(&self) -> usize {
        self.gone.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gone.is_empty()
    }

    fn record(&mut self, room: RoomId, peer: PeerId, d: Departure, expiry: Instant, now: Instant) {
        self.prune(now);
        self.gone.insert((room.clone(), peer.clone()), d);
        self.expiries.push_back((expiry, (room, peer), d));
    }

    fn prune(&mut self, now: Instant) {
        while self.expiries.front().is_some_and(|(expiry, _, _)| *expiry < now) {
            let Some((_, key, d)) = self.expiries.pop_front() else { break };
            // Only if it was not replaced by a later departure of the same id.
            if self.gone.get(&key) == Some(&d) {
                self.gone.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (RoomId, PeerId) {
        (RoomId::random(), PeerId::random())
    }

    #[test]
    fn tokens_verify_only_for_their_room_id_and_key() {
        let key = ResumeKey::random();
        let (room, peer) = ids();
        let t = key.token(&room, &peer);
        assert!(t.len() >= 22, "at least 128 bits");
        assert!(key.verify(&room, &peer, &t));
        assert!(!key.verify(&room, &PeerId::random(), &t));
        assert!(!key.verify(&RoomId::random(), &peer, &t));
        assert!(!ResumeKey::random().verify(&room, &peer, &t));
        let mut forged = t.clone().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        assert!(!key.verify(&room, &peer, std::str::from_utf8(&forged).unwrap()));
        for junk in ["", "x", "!!!!", &t[..20]] {
            assert!(!key.verify(&room, &peer, junk), "{junk:?}");
        }
        let same = ResumeKey::from_bytes(key.as_bytes()).unwrap();
        assert_eq!(same.token(&room, &peer), t, "a stored key makes the same tokens");
        assert!(ResumeKey::from_bytes(&[0; 31]).is_none());
    }

    #[test]
    fn grace_after_drop_and_after_boot_never_after_leave() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(60);
        let mut d = Departures::new(grace, None);
        let (room, peer) = ids();
        assert!(!d.may_resume(&room, &peer, t0), "unknown id, no earlier run");
        d.dropped(room.clone(), peer.clone(), t0);
        assert!(d.may_resume(&room, &peer, t0 + grace));
        assert!(!d.may_resume(&room, &peer, t0 + grace + Duration::from_millis(1)));
        d.left(room.clone(), peer.clone(), t0);
        assert!(!d.may_resume(&room, &peer, t0));

        let mut after_restart = Departures::new(grace, Some(t0));
        assert!(after_restart.may_resume(&room, &peer, t0 + grace), "issued by the previous run");
        assert!(!after_restart.may_resume(&room, &peer, t0 + grace * 2));
        after_restart.left(room.clone(), peer.clone(), t0);
        assert!(!after_restart.may_resume(&room, &peer, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn old_departures_are_pruned() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        let mut d = Departures::new(grace, None);
        for i in 0..1000 {
            let (room, peer) = ids();
            d.dropped(room, peer, t0 + Duration::from_millis(i * 10));
        }
        assert!(d.len() <= 101 + 1, "only the last grace's worth is kept: {}", d.len());
    }
}

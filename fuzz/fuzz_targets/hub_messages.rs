//! Any byte string as WebSocket text frames through `callsight_signal::Hub`, from several
//! connections, with the hub's invariants checked after every event.
//!
//! Input: segments separated by 0xFF (a byte no UTF-8 text holds). A segment's first byte
//! picks the connection slot (low 3 bits) and the event (high 5 bits): 28 = disconnect the
//! slot's connection (a fresh one takes the slot), 29 = advance the clock by the next two
//! bytes in milliseconds, anything else = the rest of the segment as one text frame.
//!
//! Invariants (the server relies on each):
//! 1. Every output names a live connection: nothing is sent to, closed, or published for a
//!    connection that is gone.
//! 2. Every member of every room maps to a live connection, and that connection's
//!    membership (from its own `joined`) is this room under this id.
//! 3. No room ever holds more than its capacity.
//! 4. No connection is a participant twice (one room, one id): `joined` only reaches a
//!    connection that is in no room.
//! 5. `publish` is handed to the media leg only for the member's own room and id; a
//!    participant that leaves (or disconnects) is unpublished under the same room and id.
//! 6. The hub's connection and room counts agree with what it said.
#![no_main]

use callsight_signal::{
    ConnId, Hub, Limits, MemoryRoomStore, Output, PeerId, PeerInfo, RoomId, RoomStore, ServerMessage,
};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SLOTS: usize = 8;
const CAPACITY: usize = 3;

/// Why the hub produced a batch of outputs.
#[derive(Debug, PartialEq)]
enum Cause {
    /// A text frame from this connection.
    Message(ConnId),
    /// A disconnect; the connection's membership at that moment.
    Disconnect(Option<(RoomId, PeerId)>),
}

/// The hub's store, shared so the harness can look inside it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemoryRoomStore>>);

impl RoomStore for Shared {
    fn join(
        &mut self,
        room: &RoomId,
        peer: PeerInfo,
        capacity: usize,
    ) -> Result<Vec<PeerInfo>, callsight_signal::rooms::JoinError> {
        self.0.lock().unwrap().join(room, peer, capacity)
    }
    fn leave(&mut self, room: &RoomId, peer: &PeerId) -> bool {
        self.0.lock().unwrap().leave(room, peer)
    }
    fn members(&self, room: &RoomId) -> Vec<PeerInfo> {
        self.0.lock().unwrap().members(room)
    }
    fn contains(&self, room: &RoomId, peer: &PeerId) -> bool {
        self.0.lock().unwrap().contains(room, peer)
    }
    fn room_count(&self) -> usize {
        self.0.lock().unwrap().room_count()
    }
}

struct Harness {
    hub: Hub,
    store: Shared,
    slots: [ConnId; SLOTS],
    live: HashSet<ConnId>,
    /// What each connection was told by its own `joined`.
    membership: HashMap<ConnId, (RoomId, PeerId)>,
    rooms_seen: HashSet<RoomId>,
    now: Instant,
}

impl Harness {
    fn new(now: Instant) -> Self {
        let store = Shared::default();
        let limits = Limits { room_capacity: CAPACITY, ..Limits::default() };
        let mut hub = Hub::new(limits, Box::new(store.clone()));
        let slots = std::array::from_fn(|_| hub.connect(now));
        let live = slots.iter().copied().collect();
        Harness { hub, store, slots, live, membership: HashMap::new(), rooms_seen: HashSet::new(), now }
    }

    fn disconnect(&mut self, conn: ConnId) {
        let out = self.hub.disconnect(conn, self.now);
        let was = self.membership.remove(&conn);
        self.live.remove(&conn);
        if let Some((room, peer)) = &was {
            let unpublished =
                out.iter().any(|o| matches!(o, Output::Unpublish { room: r, peer: p } if r == room && p == peer));
            assert!(unpublished, "{conn:?} disconnected from {room} without an unpublish");
        }
        self.apply(&out, Cause::Disconnect(was));
    }

    /// Checks one batch of outputs (invariants 1, 4, 5) and follows it as the server would.
    fn apply(&mut self, out: &[Output], cause: Cause) {
        let mut closes = Vec::new();
        for o in out {
            match o {
                Output::Send { to, msg } => {
                    assert!(self.live.contains(to), "send to a dead connection {to:?}: {msg:?}");
                    if let ServerMessage::Joined { room, id, .. } = msg {
                        assert_eq!(cause, Cause::Message(*to), "joined sent to {to:?}, not the sender");
                        assert!(!self.membership.contains_key(to), "{to:?} joined while in a room");
                        let room = RoomId::parse(room).expect("joined names a valid room");
                        self.rooms_seen.insert(room.clone());
                        self.membership.insert(*to, (room, id.clone()));
                    }
                }
                Output::Close { conn, .. } => {
                    assert!(self.live.contains(conn), "close of a dead connection {conn:?}");
                    closes.push(*conn);
                }
                Output::Publish { conn, room, peer, .. } | Output::Renegotiate { conn, room, peer, .. } => {
                    assert_eq!(cause, Cause::Message(*conn), "publish for {conn:?}, not the sender");
                    let held = (room.clone(), peer.clone());
                    assert_eq!(self.membership.get(conn), Some(&held), "publish under a foreign identity");
                }
                Output::TrackSettings { room, peer, .. } => {
                    let Cause::Message(from) = cause else { panic!("track settings without a message: {o:?}") };
                    let held = (room.clone(), peer.clone());
                    assert_eq!(self.membership.get(&from), Some(&held), "track settings under a foreign identity");
                }
                Output::Unpublish { room, peer } => {
                    let held = (room.clone(), peer.clone());
                    match &cause {
                        Cause::Disconnect(was) => {
                            assert_eq!(was.as_ref(), Some(&held), "unpublish of someone else on disconnect")
                        }
                        Cause::Message(from) => {
                            assert_eq!(self.membership.remove(from), Some(held), "unpublish of someone else on leave")
                        }
                    }
                }
                // Shared rooms (Redis) only: this hub has no node id, so it never asks.
                Output::Reserve { .. } | Output::Release { .. } | Output::Relay { .. } => {
                    panic!("a hub without a node id produced a cluster output: {o:?}")
                }
            }
        }
        for c in closes {
            if self.live.contains(&c) {
                self.disconnect(c);
                self.replace(c);
            }
        }
    }

    fn replace(&mut self, old: ConnId) {
        if let Some(i) = self.slots.iter().position(|c| *c == old) {
            let fresh = self.hub.connect(self.now);
            self.live.insert(fresh);
            self.slots[i] = fresh;
        }
    }

    /// Invariants 2, 3, 6.
    fn check(&self) {
        assert_eq!(self.hub.connection_count(), self.live.len(), "connection count");
        let mut seen = HashSet::new();
        let mut rooms = 0;
        for room in &self.rooms_seen {
            // The store's lock is held only inside each call (the hub takes it too).
            let members = self.store.members(room);
            if members.is_empty() {
                continue;
            }
            rooms += 1;
            assert!(members.len() <= CAPACITY, "room {room} holds {} > {CAPACITY}", members.len());
            let conns = self.hub.room_connections(room);
            assert_eq!(conns.len(), members.len(), "room {room}: a member without a connection");
            for (peer, conn) in conns {
                assert!(self.live.contains(&conn), "member {peer} on a dead connection");
                assert!(seen.insert(conn), "{conn:?} is a participant twice");
                assert_eq!(self.membership.get(&conn), Some(&(room.clone(), peer.clone())), "membership of {conn:?}");
            }
        }
        assert_eq!(self.hub.room_count(), rooms, "room count");
        assert_eq!(seen.len(), self.membership.len(), "a connection believes it is in a room it is not in");
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut h = Harness::new(t0);
    for seg in data.split(|&b| b == 0xFF).take(256) {
        let Some((&op, rest)) = seg.split_first() else { continue };
        let slot = usize::from(op & 7);
        let conn = h.slots[slot];
        match op >> 3 {
            28 => {
                h.disconnect(conn);
                h.replace(conn);
            }
            29 => {
                let ms = rest.iter().take(2).fold(0u64, |a, &b| (a << 8) | u64::from(b));
                h.now += Duration::from_millis(ms);
            }
            _ => {
                let text = String::from_utf8_lossy(rest);
                let out = h.hub.on_message(conn, &text, h.now);
                h.apply(&out, Cause::Message(conn));
            }
        }
        h.check();
    }
    for c in h.slots {
        h.disconnect(c);
    }
    h.check();
    assert_eq!((h.hub.connection_count(), h.hub.room_count()), (0, 0), "everything freed");
});

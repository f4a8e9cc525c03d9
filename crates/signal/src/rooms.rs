//! Who is in which room, behind a small trait so a shared backend (e.g. Redis, for
//! several server nodes) can replace the in-memory one without touching the hub.

use crate::ids::{PeerId, RoomId};
use crate::protocol::PeerInfo;
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum JoinError {
    #[error("room is full ({capacity} participants)")]
    Full { capacity: usize },
    #[error("peer id is already in the room")]
    IdTaken,
}

pub trait RoomStore: Send {
    /// Adds `peer` to `room` unless the room holds `capacity` peers already or the id is
    /// taken. Returns the peers that were present before, in joining order.
    fn join(&mut self, room: &RoomId, peer: PeerInfo, capacity: usize) -> Result<Vec<PeerInfo>, JoinError>;
    /// Removes `peer`; returns whether it was there. An emptied room is forgotten.
    fn leave(&mut self, room: &RoomId, peer: &PeerId) -> bool;
    /// The peers in `room`, in joining order.
    fn members(&self, room: &RoomId) -> Vec<PeerInfo>;
    fn contains(&self, room: &RoomId, peer: &PeerId) -> bool;
    fn room_count(&self) -> usize;
}

/// Rooms in this process's memory.
#[derive(Default)]
pub struct MemoryRoomStore {
    // Value: joining sequence number → peer, so members come out in joining order.
    rooms: HashMap<RoomId, BTreeMap<u64, PeerInfo>>,
    next_seq: u64,
}

impl RoomStore for MemoryRoomStore {
    fn join(&mut self, room: &RoomId, peer: PeerInfo, capacity: usize) -> Result<Vec<PeerInfo>, JoinError> {
        let members = self.rooms.entry(room.clone()).or_default();
        let before: Vec<PeerInfo> = members.values().cloned().collect();
        if before.iter().any(|p| p.id == peer.id) {
            return Err(JoinError::IdTaken);
        }
        if before.len() >= capacity {
            if before.is_empty() {
                self.rooms.remove(room);
            }
            return Err(JoinError::Full { capacity });
        }
        self.next_seq += 1;
        members.insert(self.next_seq, peer);
        Ok(before)
    }

    fn leave(&mut self, room: &RoomId, peer: &PeerId) -> bool {
        let Some(members) = self.rooms.get_mut(room) else { return false };
        let before = members.len();
        members.retain(|_, p| &p.id != peer);
        let removed = members.len() != before;
        if members.is_empty() {
            self.rooms.remove(room);
        }
        removed
    }

    fn members(&self, room: &RoomId) -> Vec<PeerInfo> {
        self.rooms.get(room).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    fn contains(&self, room: &RoomId, peer: &PeerId) -> bool {
        self.rooms.get(room).is_some_and(|m| m.values().any(|p| &p.id == peer))
    }

    fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerInfo {
        PeerInfo { id: PeerId::random(), name: None }
    }

    #[test]
    fn capacity_order_and_cleanup() {
        let mut store = MemoryRoomStore::default();
        let room = RoomId::random();
        let (a, b) = (peer(), peer());
        assert_eq!(store.join(&room, a.clone(), 2), Ok(vec![]));
        assert_eq!(store.join(&room, b.clone(), 2), Ok(vec![a.clone()]));
        assert_eq!(store.join(&room, peer(), 2), Err(JoinError::Full { capacity: 2 }));
        assert_eq!(store.join(&room, a.clone(), 3), Err(JoinError::IdTaken));
        assert_eq!(store.members(&room), vec![a.clone(), b.clone()]);
        assert!(store.leave(&room, &a.id));
        assert!(!store.leave(&room, &a.id));
        assert!(store.contains(&room, &b.id) && !store.contains(&room, &a.id));
        assert!(store.leave(&room, &b.id));
        assert_eq!(store.room_count(), 0, "empty rooms are forgotten");
    }

    #[test]
    fn zero_capacity_leaves_no_empty_room_behind() {
        let mut store = MemoryRoomStore::default();
        assert!(store.join(&RoomId::random(), peer(), 0).is_err());
        assert_eq!(store.room_count(), 0);
    }
}

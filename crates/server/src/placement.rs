//! Shared rooms (`--redis`): which node runs whose media. Sans-IO bookkeeping; the
//! cluster worker asks Redis (`place.lua`, `lease.lua`) and feeds the answers in.
//!
//! A room's media (its SFU sessions and detectors) runs on one node, the holder of the
//! room's lease. Each node keeps two tables:
//! - **routes**: participants whose WebSocket is here → the node running their media
//!   (this one or another); their `offer`/`answer`/unpublish follow the route.
//! - **sessions**: participants whose media runs here → the node of their WebSocket
//!   (this one, or another: a *guest*, to whose node replies, server offers and
//!   detections are relayed). Only that node may end the session: a stale connection's
//!   departure, elsewhere, after the participant resumed and published again, does not.
//!
//! Each heartbeat, a node renews the lease of every room whose media it runs and reads
//! the holder of every room its participants' media runs elsewhere. A holder that is not
//! the expected node means the media moved (its node died and the lease lapsed, or the
//! lease went to another node): [`Placement::lease_seen`] says whom to tell, so their
//! pages publish again and are placed on the live holder.

use callsight_media::ParticipantKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// What a participant asks of the media leg, carried to the node running its room's
/// media (relayed through Redis when that is another node).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum MediaRequest {
    /// `publish` (`client`: the participant's address, for the per-address cap).
    Publish { sdp: String, subscribe: bool, analyse: bool, receive_only: bool, client: IpAddr },
    /// `offer` (`offer: true`) or `answer` on the published connection.
    Renegotiate { sdp: String, offer: bool },
    /// `track-settings`: the tile a received video track is shown in.
    TrackSettings { mid: String, width: u32, height: u32 },
    /// The participant left.
    Unpublish,
}

pub struct Placement {
    node: String,
    routes: HashMap<ParticipantKey, String>,
    sessions: HashMap<ParticipantKey, String>,
}

/// Whom to tell that their media moved, after a lease was read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Participants whose WebSocket is here.
    pub here: Vec<ParticipantKey>,
    /// Guests whose media ran here: their sessions end; their nodes tell them.
    pub guests: Vec<(ParticipantKey, String)>,
}

impl Placement {
    pub fn new(node: String) -> Self {
        Placement { node, routes: HashMap::new(), sessions: HashMap::new() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// A publish of `key` (WebSocket here) goes to `media_node`.
    pub fn route(&mut self, key: &ParticipantKey, media_node: &str) {
        self.routes.insert(key.clone(), media_node.to_owned());
    }

    /// Where `key`'s media runs (`None`: not published through placement).
    pub fn route_of(&self, key: &ParticipantKey) -> Option<&str> {
        self.routes.get(key).map(String::as_str)
    }

    /// `key` unpublished (left): its route is forgotten and returned.
    pub fn unroute(&mut self, key: &ParticipantKey) -> Option<String> {
        self.routes.remove(key)
    }

    /// `key` published here from node `from` (this one or another): its session is
    /// that node's connection's.
    pub fn host(&mut self, key: &ParticipantKey, from: &str) {
        self.sessions.insert(key.clone(), from.to_owned());
    }

    /// Whether node `from` may end `key`'s session here (it published it, or no node
    /// is known to have); if so, the session is forgotten.
    pub fn unhost(&mut self, key: &ParticipantKey, from: &str) -> bool {
        match self.sessions.get(key) {
            Some(owner) if owner != from => false,
            _ => {
                self.sessions.remove(key);
                true
            }
        }
    }

    /// The node of guest `key` (its WebSocket is elsewhere), if its media runs here.
    pub fn guest_node(&self, key: &ParticipantKey) -> Option<&str> {
        self.sessions.get(key).map(String::as_str).filter(|n| *n != self.node)
    }

    /// The nodes of `room`'s guests (detections are relayed to each once).
    pub fn guest_nodes(&self, room: &str) -> BTreeSet<String> {
        self.sessions.iter().filter(|(k, n)| k.room == room && **n != self.node).map(|(_, n)| n.clone()).collect()
    }

    /// The other nodes whose participants' media runs here.
    pub fn guest_nodes_all(&self) -> BTreeSet<String> {
        self.sessions.values().filter(|n| **n != self.node).cloned().collect()
    }

    /// Node `node` died: its participants' sessions here are forgotten and returned, to be
    /// ended (their pages publish again wherever they reconnect).
    pub fn drop_guests_of(&mut self, node: &str) -> Vec<ParticipantKey> {
        let mut gone = Vec::new();
        self.sessions.retain(|k, n| {
            let keep = n != node;
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        gone.sort();
        gone
    }

    /// Rooms whose media runs here (leases to renew), and rooms whose media this node's
    /// participants use elsewhere, with the node expected to hold each lease.
    pub fn leases(&self) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
        let mut mine: BTreeSet<String> = self.sessions.keys().map(|k| k.room.clone()).collect();
        let mut elsewhere: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, n) in &self.routes {
            if *n == self.node {
                mine.insert(k.room.clone());
            } else {
                elsewhere.entry(k.room.clone()).or_default().insert(n.clone());
            }
        }
        (mine, elsewhere)
    }

    /// `room`'s lease is held by `holder` (`""`: nobody). Everyone whose media ran on
    /// another node is forgotten and returned, to be told; when this node lost a room it
    /// ran, that includes its guests there.
    pub fn lease_seen(&mut self, room: &str, holder: &str) -> Moved {
        let mut moved = Moved::default();
        self.routes.retain(|k, n| {
            let keep = k.room != room || n == holder;
            if !keep {
                moved.here.push(k.clone());
            }
            keep
        });
        if holder != self.node {
            let node = &self.node;
            self.sessions.retain(|k, n| {
                let keep = k.room != room;
                // Participants here are among `moved.here` already (their routes).
                if !keep && n != node {
                    moved.guests.push((k.clone(), n.clone()));
                }
                keep
            });
        }
        moved.here.sort_by(|a, b| a.participant.cmp(&b.participant));
        moved.guests.sort();
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(room: &str, p: &str) -> ParticipantKey {
        ParticipantKey { room: room.into(), participant: p.into() }
    }

    #[test]
    fn routes_guests_and_leases() {
        let mut a = Placement::new("a".into());
        a.route(&key("r1", "p1"), "a");
        a.route(&key("r2", "p2"), "m");
        a.route(&key("r2", "p3"), "m");
        a.host(&key("r1", "p1"), "a");
        a.host(&key("r3", "g1"), "b");
        a.host(&key("r3", "g2"), "c");
        a.host(&key("r3", "g3"), "b");
        let (mine, elsewhere) = a.leases();
        assert_eq!(mine.into_iter().collect::<Vec<_>>(), vec!["r1", "r3"]);
        assert_eq!(elsewhere.keys().collect::<Vec<_>>(), vec!["r2"]);
        assert_eq!(a.guest_nodes("r3").into_iter().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(a.guest_node(&key("r3", "g2")), Some("c"));
        assert_eq!(a.guest_node(&key("r1", "p1")), None, "its WebSocket is here");
        assert!(a.guest_nodes("r1").is_empty());
        assert_eq!(a.route_of(&key("r2", "p2")), Some("m"));

        // The expected holders: nothing moves.
        assert_eq!(a.lease_seen("r1", "a"), Moved::default());
        assert_eq!(a.lease_seen("r2", "m"), Moved::default());
        assert_eq!(a.lease_seen("r3", "a"), Moved::default());
        // r2's media node died (no holder): both participants here are told.
        let moved = a.lease_seen("r2", "");
        assert_eq!(moved.here, vec![key("r2", "p2"), key("r2", "p3")]);
        assert!(moved.guests.is_empty());
        assert_eq!(a.route_of(&key("r2", "p2")), None);
        // r3 went to node b (this node's lease lapsed): its guests are given back.
        let moved = a.lease_seen("r3", "b");
        assert!(moved.here.is_empty());
        assert_eq!(moved.guests.len(), 3);
        assert_eq!(a.guest_node(&key("r3", "g1")), None);
        // r1 runs here but its lease is another node's now: the participant here moves.
        assert_eq!(a.lease_seen("r1", "m"), Moved { here: vec![key("r1", "p1")], guests: vec![] });
        assert_eq!(a.leases(), (BTreeSet::new(), BTreeMap::new()));
    }

    #[test]
    fn unpublish_forgets_the_route() {
        let mut a = Placement::new("a".into());
        a.route(&key("r", "p"), "m");
        assert_eq!(a.unroute(&key("r", "p")).as_deref(), Some("m"));
        assert_eq!(a.unroute(&key("r", "p")), None);
        a.host(&key("r", "g"), "b");
        // It resumed on this node and published here: node b's stale departure is ignored.
        a.host(&key("r", "g"), "a");
        assert!(!a.unhost(&key("r", "g"), "b"));
        assert!(a.guest_nodes("r").is_empty());
        assert!(a.unhost(&key("r", "g"), "a"));
        // Unknown sessions may be ended by anyone (a no-op on the media leg).
        assert!(a.unhost(&key("r", "x"), "b"));
        // Node b dies: its guests' sessions end; the others' stay.
        a.host(&key("r", "g1"), "b");
        a.host(&key("s", "g2"), "b");
        a.host(&key("r", "g3"), "c");
        a.host(&key("r", "p"), "a");
        assert_eq!(a.guest_nodes_all().into_iter().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(a.drop_guests_of("b"), vec![key("r", "g1"), key("s", "g2")]);
        assert_eq!(a.guest_nodes_all().into_iter().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(a.guest_node(&key("r", "g3")), Some("c"));
    }
}

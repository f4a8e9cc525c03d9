//! The signaling state machine. The server feeds it connection events (connect,
//! message text, disconnect) with the current time and carries out the [`Output`]s it
//! returns; no sockets or clocks live here.

use crate::ids::{PeerId, RoomId};
use crate::limits::{Limits, RateLimiter};
use crate::protocol::{parse_client, ClientMessage, ErrorCode, PeerInfo, ServerMessage, PROTOCOL_VERSION};
use crate::rooms::{JoinError, RoomStore};
use std::collections::HashMap;
use std::time::Instant;

/// One WebSocket connection, numbered by the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the server must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: ConnId,
        msg: ServerMessage,
    },
    /// Close the connection (after sending what precedes this output).
    Close {
        conn: ConnId,
        reason: String,
    },
    /// Hand an SDP offer to the media leg; answer the connection with `publish-answer`.
    Publish {
        conn: ConnId,
        room: RoomId,
        peer: PeerId,
        sdp: String,
    },
    /// The participant is gone: free its media sessions.
    Unpublish {
        room: RoomId,
        peer: PeerId,
    },
}

struct Conn {
    membership: Option<(RoomId, PeerId)>,
    limiter: RateLimiter,
    refusals: u32,
}

pub struct Hub {
    limits: Limits,
    store: Box<dyn RoomStore>,
    conns: HashMap<ConnId, Conn>,
    by_peer: HashMap<(RoomId, PeerId), ConnId>,
    next_conn: u64,
}

impl Hub {
    pub fn new(limits: Limits, store: Box<dyn RoomStore>) -> Self {
        Hub { limits, store, conns: HashMap::new(), by_peer: HashMap::new(), next_conn: 0 }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn connect(&mut self, now: Instant) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let limiter = RateLimiter::new(self.limits.rate_per_sec, self.limits.rate_burst, now);
        self.conns.insert(id, Conn { membership: None, limiter, refusals: 0 });
        id
    }

    /// The connection is gone (closed, errored or missed its heartbeat).
    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Output> {
        let mut out = Vec::new();
        self.leave_room(conn, &mut out);
        self.conns.remove(&conn);
        out
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn room_count(&self) -> usize {
        self.store.room_count()
    }

    /// Connections of the members of `room`, each with its peer id.
    pub fn room_connections(&self, room: &RoomId) -> Vec<(PeerId, ConnId)> {
        self.store
            .members(room)
            .into_iter()
            .filter_map(|p| self.by_peer.get(&(room.clone(), p.id.clone())).map(|c| (p.id, *c)))
            .collect()
    }

    /// One text frame from `conn`.
    pub fn on_message(&mut self, conn: ConnId, text: &str, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let max_refusals = self.limits.max_refusals;
        let Some(state) = self.conns.get_mut(&conn) else { return out };
        if !state.limiter.allow(now) {
            state.refusals += 1;
            let wait = state.limiter.wait_time();
            out.push(reply(
                conn,
                ErrorCode::RateLimited,
                format!("too many messages; retry in {} ms", wait.as_millis()),
            ));
            if state.refusals >= max_refusals {
                out.push(Output::Close { conn, reason: "rate limit exceeded repeatedly".into() });
            }
            return out;
        }
        state.refusals = 0;
        if text.len() > self.limits.max_message_bytes {
            out.push(reply(
                conn,
                ErrorCode::TooLarge,
                format!("message of {} bytes exceeds the limit of {}", text.len(), self.limits.max_message_bytes),
            ));
            out.push(Output::Close { conn, reason: "message too large".into() });
            return out;
        }
        match parse_client(text) {
            Err(msg) => out.push(Output::Send { to: conn, msg }),
            Ok(ClientMessage::Join { room, name, version, resume }) => {
                self.join(conn, &room, name, version, resume, &mut out)
            }
            Ok(ClientMessage::Signal { to, data }) => self.signal(conn, &to, data, &mut out),
            Ok(ClientMessage::Leave) => {
                if !self.leave_room(conn, &mut out) {
                    out.push(reply(conn, ErrorCode::NotJoined, "not in a room"));
                }
            }
            Ok(ClientMessage::Publish { sdp }) => match self.membership(conn) {
                Some((room, peer)) => out.push(Output::Publish { conn, room, peer, sdp }),
                None => out.push(reply(conn, ErrorCode::NotJoined, "join a room before publishing")),
            },
        }
        out
    }

    fn membership(&self, conn: ConnId) -> Option<(RoomId, PeerId)> {
        self.conns.get(&conn).and_then(|c| c.membership.clone())
    }

    fn join(
        &mut self,
        conn: ConnId,
        room: &str,
        name: Option<String>,
        version: Option<u32>,
        resume: Option<String>,
        out: &mut Vec<Output>,
    ) {
        if self.membership(conn).is_some() {
            return out.push(reply(
                conn,
                ErrorCode::AlreadyJoined,
                "this connection is in a room already; leave first",
            ));
        }
        let version = version.unwrap_or(PROTOCOL_VERSION);
        if version != PROTOCOL_VERSION {
            return out.push(reply(
                conn,
                ErrorCode::UnsupportedVersion,
                format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"),
            ));
        }
        let Some(room) = RoomId::parse(room) else {
            return out.push(reply(conn, ErrorCode::BadRoom, "a room id is 8-64 characters of A-Z a-z 0-9 _ -"));
        };
        let name = match clean_name(name, self.limits.max_name_chars) {
            Ok(name) => name,
            Err(message) => return out.push(reply(conn, ErrorCode::BadName, message)),
        };
        let id = resume
            .as_deref()
            .and_then(PeerId::parse)
            .filter(|id| !self.store.contains(&room, id))
            .unwrap_or_else(PeerId::random);
        let me = PeerInfo { id: id.clone(), name };
        let capacity = self.limits.room_capacity;
        let peers = match self.store.join(&room, me.clone(), capacity) {
            Ok(peers) => peers,
            Err(JoinError::Full { capacity }) => {
                return out.push(reply(conn, ErrorCode::RoomFull, format!("room is full ({capacity} participants)")))
            }
            // Only reachable with a colliding random id.
            Err(JoinError::IdTaken) => return out.push(reply(conn, ErrorCode::Internal, "peer id collision; retry")),
        };
        for p in &peers {
            if let Some(&c) = self.by_peer.get(&(room.clone(), p.id.clone())) {
                out.push(Output::Send { to: c, msg: ServerMessage::PeerJoined { peer: me.clone() } });
            }
        }
        self.by_peer.insert((room.clone(), id.clone()), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.membership = Some((room.clone(), id.clone()));
        }
        let joined = ServerMessage::Joined { room: room.to_string(), id, peers, capacity, protocol: PROTOCOL_VERSION };
        out.push(Output::Send { to: conn, msg: joined });
    }

    fn signal(&mut self, conn: ConnId, to: &str, data: serde_json::Value, out: &mut Vec<Output>) {
        let Some((room, from)) = self.membership(conn) else {
            return out.push(reply(conn, ErrorCode::NotJoined, "join a room before signaling"));
        };
        let target = PeerId::parse(to).and_then(|to| self.by_peer.get(&(room, to)).copied());
        match target {
            Some(target) if target != conn => {
                out.push(Output::Send { to: target, msg: ServerMessage::Signal { from, data } })
            }
            _ => out.push(reply(conn, ErrorCode::UnknownPeer, format!("no peer {to:?} in your room"))),
        }
    }

    /// Returns whether the connection was in a room.
    fn leave_room(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        let Some((room, id)) = self.conns.get_mut(&conn).and_then(|c| c.membership.take()) else { return false };
        self.store.leave(&room, &id);
        self.by_peer.remove(&(room.clone(), id.clone()));
        for (_, c) in self.room_connections(&room) {
            out.push(Output::Send { to: c, msg: ServerMessage::PeerLeft { id: id.clone() } });
        }
        out.push(Output::Unpublish { room, peer: id });
        true
    }
}

fn reply(conn: ConnId, code: ErrorCode, message: impl Into<String>) -> Output {
    Output::Send { to: conn, msg: ServerMessage::error(code, message) }
}

fn clean_name(name: Option<String>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim();
    if name.chars().count() > max_chars {
        return Err(format!("a display name has at most {max_chars} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("a display name cannot hold control characters".into());
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::MemoryRoomStore;
    use serde_json::json;
    use std::time::Duration;

    fn hub(limits: Limits) -> Hub {
        Hub::new(limits, Box::<MemoryRoomStore>::default())
    }

    fn sends_to(out: &[Output], conn: ConnId) -> Vec<ServerMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, msg } if *to == conn => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    fn error_code(out: &[Output], conn: ConnId) -> Option<ErrorCode> {
        sends_to(out, conn).into_iter().find_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
    }

    fn join(h: &mut Hub, conn: ConnId, room: &str, now: Instant) -> (PeerId, Vec<PeerInfo>, Vec<Output>) {
        let out = h.on_message(conn, &json!({"type":"join","room":room}).to_string(), now);
        let Some(ServerMessage::Joined { id, peers, .. }) =
            sends_to(&out, conn).into_iter().find(|m| matches!(m, ServerMessage::Joined { .. }))
        else {
            panic!("no joined in {out:?}")
        };
        (id, peers, out)
    }

    #[test]
    fn classic_flow_join_announce_relay_leave() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let (a, b) = (h.connect(now), h.connect(now));
        let (a_id, peers, _) = join(&mut h, a, "room-0001", now);
        assert!(peers.is_empty());
        let (b_id, peers, out) = join(&mut h, b, "room-0001", now);
        assert_eq!(peers.iter().map(|p| &p.id).collect::<Vec<_>>(), vec![&a_id]);
        assert_eq!(
            sends_to(&out, a),
            vec![ServerMessage::PeerJoined { peer: PeerInfo { id: b_id.clone(), name: None } }]
        );

        let offer = json!({"description":{"type":"offer","sdp":"v=0..."}});
        let out = h.on_message(b, &json!({"type":"signal","to":a_id,"data":offer}).to_string(), now);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::Signal { from: b_id.clone(), data: offer }]);

        let out = h.disconnect(b);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerLeft { id: b_id.clone() }]);
        assert!(out.contains(&Output::Unpublish { room: RoomId::parse("room-0001").unwrap(), peer: b_id }));
        assert_eq!(h.room_count(), 1);
        h.disconnect(a);
        assert_eq!((h.room_count(), h.connection_count()), (0, 0));
    }

    #[test]
    fn third_peer_is_refused_and_capacity_is_configurable() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let conns: Vec<_> = (0..3).map(|_| h.connect(now)).collect();
        join(&mut h, conns[0], "room-0002", now);
        join(&mut h, conns[1], "room-0002", now);
        let out = h.on_message(conns[2], r#"{"type":"join","room":"room-0002"}"#, now);
        assert_eq!(error_code(&out, conns[2]), Some(ErrorCode::RoomFull));
        // The refused connection may join elsewhere.
        join(&mut h, conns[2], "room-0003", now);

        let mut h = hub(Limits { room_capacity: 4, ..Limits::default() });
        for _ in 0..4 {
            let c = h.connect(now);
            join(&mut h, c, "mesh-room", now);
        }
        let c = h.connect(now);
        assert_eq!(
            error_code(&h.on_message(c, r#"{"type":"join","room":"mesh-room"}"#, now), c),
            Some(ErrorCode::RoomFull)
        );
    }

    #[test]
    fn signal_only_reaches_peers_in_the_same_room() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let (a, b) = (h.connect(now), h.connect(now));
        let (a_id, _, _) = join(&mut h, a, "room-aaaa", now);
        join(&mut h, b, "room-bbbb", now);
        let out = h.on_message(b, &json!({"type":"signal","to":a_id,"data":{}}).to_string(), now);
        assert_eq!(error_code(&out, b), Some(ErrorCode::UnknownPeer));
        assert!(sends_to(&out, a).is_empty(), "nothing crosses rooms");
        // To oneself and to garbage: refused as well.
        let (b_id, _, _) = (PeerId::random(), (), ());
        let out = h.on_message(b, &json!({"type":"signal","to":b_id,"data":{}}).to_string(), now);
        assert_eq!(error_code(&out, b), Some(ErrorCode::UnknownPeer));
    }

    #[test]
    fn bad_input_gets_an_error_and_the_connection_stays() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let c = h.connect(now);
        let cases = [
            ("not json", ErrorCode::BadMessage),
            (r#"{"type":"dance"}"#, ErrorCode::BadMessage),
            (r#"{"type":"join","room":"x"}"#, ErrorCode::BadRoom),
            (r#"{"type":"join","room":"room with spaces"}"#, ErrorCode::BadRoom),
            (r#"{"type":"join","room":"room-0004","version":2}"#, ErrorCode::UnsupportedVersion),
            (r#"{"type":"join","room":"room-0004","name":"a\u0007b"}"#, ErrorCode::BadName),
            (r#"{"type":"signal","to":"AAAAAAAAAAAAAAAA","data":{}}"#, ErrorCode::NotJoined),
            (r#"{"type":"leave"}"#, ErrorCode::NotJoined),
            (r#"{"type":"publish","sdp":"v=0"}"#, ErrorCode::NotJoined),
        ];
        for (text, code) in cases {
            let out = h.on_message(c, text, now);
            assert_eq!(error_code(&out, c), Some(code), "{text}");
            assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })), "{text} must not close");
        }
        let long_name = json!({"type":"join","room":"room-0004","name":"n".repeat(65)}).to_string();
        assert_eq!(error_code(&h.on_message(c, &long_name, now), c), Some(ErrorCode::BadName));
        join(&mut h, c, "room-0004", now);
        assert_eq!(
            error_code(&h.on_message(c, r#"{"type":"join","room":"room-0005"}"#, now), c),
            Some(ErrorCode::AlreadyJoined)
        );
    }

    #[test]
    fn oversized_message_is_refused_and_closed() {
        let now = Instant::now();
        let mut h = hub(Limits { max_message_bytes: 100, ..Limits::default() });
        let c = h.connect(now);
        let text = json!({"type":"leave","pad":"x".repeat(200)}).to_string();
        let out = h.on_message(c, &text, now);
        assert_eq!(error_code(&out, c), Some(ErrorCode::TooLarge));
        assert!(matches!(out.last(), Some(Output::Close { .. })));
    }

    #[test]
    fn rate_limit_refuses_then_recovers_then_closes_repeat_offenders() {
        let t0 = Instant::now();
        let limits = Limits { rate_per_sec: 10.0, rate_burst: 5.0, max_refusals: 3, ..Limits::default() };
        let mut h = hub(limits);
        let c = h.connect(t0);
        for _ in 0..5 {
            assert_eq!(error_code(&h.on_message(c, r#"{"type":"leave"}"#, t0), c), Some(ErrorCode::NotJoined));
        }
        assert_eq!(error_code(&h.on_message(c, r#"{"type":"leave"}"#, t0), c), Some(ErrorCode::RateLimited));
        let t1 = t0 + Duration::from_millis(150);
        assert_eq!(error_code(&h.on_message(c, r#"{"type":"leave"}"#, t1), c), Some(ErrorCode::NotJoined), "refilled");
        let out: Vec<_> = (0..3).flat_map(|_| h.on_message(c, r#"{"type":"leave"}"#, t1)).collect();
        assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
    }

    #[test]
    fn resume_keeps_an_id_only_when_free() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let (a, b) = (h.connect(now), h.connect(now));
        let (a_id, _, _) = join(&mut h, a, "room-0006", now);
        // b asks for a's id while a holds it: gets a fresh one.
        let out = h.on_message(b, &json!({"type":"join","room":"room-0006","resume":a_id}).to_string(), now);
        let got = sends_to(&out, b).into_iter().find_map(|m| match m {
            ServerMessage::Joined { id, .. } => Some(id),
            _ => None,
        });
        assert_ne!(got.as_ref(), Some(&a_id));
        h.disconnect(a);
        let a2 = h.connect(now);
        let out = h.on_message(a2, &json!({"type":"join","room":"room-0006","resume":a_id}).to_string(), now);
        assert!(sends_to(&out, a2).iter().any(|m| matches!(m, ServerMessage::Joined { id, .. } if *id == a_id)));
    }

    #[test]
    fn publish_is_handed_to_the_media_leg() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let c = h.connect(now);
        let (id, _, _) = join(&mut h, c, "room-0007", now);
        let out = h.on_message(c, r#"{"type":"publish","sdp":"v=0"}"#, now);
        assert_eq!(
            out,
            vec![Output::Publish { conn: c, room: RoomId::parse("room-0007").unwrap(), peer: id, sdp: "v=0".into() }]
        );
    }
}

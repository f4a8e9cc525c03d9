//! The signaling state machine. The server feeds it connection events (connect,
//! message text, disconnect) with the current time and carries out the [`Output`]s it
//! returns; no sockets or clocks live here.

use crate::admission::{Admission, Grant, Open};
use crate::ids::{PeerId, RoomId};
use crate::limits::{Limits, RateLimiter};
use crate::names::clean_name;
use crate::protocol::{parse_client, ClientMessage, ErrorCode, Join, PeerInfo, ServerMessage, PROTOCOL_VERSION};
use crate::resume::{Departures, ResumeKey};
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
        /// Also receive the room's other tracks on this connection.
        subscribe: bool,
        /// Detect objects in the published video.
        analyse: bool,
    },
    /// A renegotiation of the participant's media session: its `offer` (answer it with
    /// `answer`) or its answer to the server's offer.
    Renegotiate {
        conn: ConnId,
        room: RoomId,
        peer: PeerId,
        sdp: String,
        /// True: `sdp` is the participant's offer; false: its answer.
        offer: bool,
    },
    /// The participant is gone: free its media sessions.
    Unpublish {
        room: RoomId,
        peer: PeerId,
    },
}

struct Conn {
    membership: Option<(RoomId, PeerId)>,
    /// Rights in the room it joined (all rights while not joined: they are not used).
    grant: Grant,
    limiter: RateLimiter,
    refusals: u32,
    /// Since when the connection is in no room (`None` while it is in one).
    unjoined_since: Option<Instant>,
}

/// How a participant left its room.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// `leave`: its resume token dies.
    OnPurpose,
    /// The connection dropped: resumable for the grace period.
    Dropped,
}

pub struct Hub {
    limits: Limits,
    store: Box<dyn RoomStore>,
    admission: Box<dyn Admission>,
    conns: HashMap<ConnId, Conn>,
    by_peer: HashMap<(RoomId, PeerId), ConnId>,
    next_conn: u64,
    resume_key: ResumeKey,
    departures: Departures,
}

impl Hub {
    /// A hub with a random resume key: tokens work within this hub's life only.
    pub fn new(limits: Limits, store: Box<dyn RoomStore>) -> Self {
        let departures = Departures::new(limits.resume_grace, None);
        Hub {
            limits,
            store,
            admission: Box::new(Open),
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_conn: 0,
            resume_key: ResumeKey::random(),
            departures,
        }
    }

    /// Uses a key kept across restarts, started at `boot`: tokens issued by an earlier run
    /// with the same key resume their ids until `boot` plus the grace period.
    pub fn with_resume_key(mut self, key: ResumeKey, boot: Instant) -> Self {
        self.resume_key = key;
        self.departures = Departures::new(self.limits.resume_grace, Some(boot));
        self
    }

    /// Decides joins with `admission` instead of letting everyone in.
    pub fn with_admission(mut self, admission: Box<dyn Admission>) -> Self {
        self.admission = admission;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn connect(&mut self, now: Instant) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let limiter = RateLimiter::new(self.limits.rate_per_sec, self.limits.rate_burst, now);
        self.conns.insert(
            id,
            Conn { membership: None, grant: Grant::open(), limiter, refusals: 0, unjoined_since: Some(now) },
        );
        id
    }

    /// The connection is gone (closed, errored or missed its heartbeat).
    pub fn disconnect(&mut self, conn: ConnId, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        self.leave_room(conn, Leaving::Dropped, now, &mut out);
        self.conns.remove(&conn);
        out
    }

    /// Whether `conn` has been in no room for longer than the join timeout (the server
    /// then closes it): a socket that never joins must not live forever.
    pub fn join_deadline_passed(&self, conn: ConnId, now: Instant) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.unjoined_since)
            .is_some_and(|since| now.saturating_duration_since(since) > self.limits.join_timeout)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn room_count(&self) -> usize {
        self.store.room_count()
    }

    /// Connections of the members of `room` that may receive what the server derives
    /// from others' media (`detections`).
    pub fn room_subscribers(&self, room: &RoomId) -> Vec<ConnId> {
        let subscribes = |c: &ConnId| self.conns.get(c).is_some_and(|c| c.grant.can_subscribe);
        self.room_connections(room).into_iter().map(|(_, c)| c).filter(subscribes).collect()
    }

    /// The connection of participant `peer` in `room`.
    pub fn connection_of(&self, room: &RoomId, peer: &PeerId) -> Option<ConnId> {
        self.by_peer.get(&(room.clone(), peer.clone())).copied()
    }

    /// Connections of the members of `room`, each with its peer id.
    pub fn room_connections(&self, room: &RoomId) -> Vec<(PeerId, ConnId)> {
        self.store
            .members(room)
            .into_iter()
            .filter_map(|p| self.by_peer.get(&(room.clone(), p.id.clone())).map(|c| (p.id, *c)))
            .collect()
    }

    /// One text frame from `conn`: [`Hub::admit`], [`parse_client`], [`Hub::handle`].
    pub fn on_message(&mut self, conn: ConnId, text: &str, now: Instant) -> Vec<Output> {
        if let Err(out) = self.admit(conn, text.len(), now) {
            return out;
        }
        self.handle(conn, parse_client(text), now)
    }

    /// The cheap checks before a frame of `len` bytes is parsed: the rate limit and the
    /// size limit. `Err` holds the replies (and maybe a close). A server may parse the
    /// admitted frame outside any lock it holds around the hub, then call [`Hub::handle`].
    pub fn admit(&mut self, conn: ConnId, len: usize, now: Instant) -> Result<(), Vec<Output>> {
        let max_refusals = self.limits.max_refusals;
        let Some(state) = self.conns.get_mut(&conn) else { return Err(Vec::new()) };
        if !state.limiter.allow(now) {
            state.refusals += 1;
            let wait = state.limiter.wait_time();
            let mut out = vec![reply(
                conn,
                ErrorCode::RateLimited,
                format!("too many messages; retry in {} ms", wait.as_millis()),
            )];
            if state.refusals >= max_refusals {
                out.push(Output::Close { conn, reason: "rate limit exceeded repeatedly".into() });
            }
            return Err(out);
        }
        state.refusals = 0;
        if len > self.limits.max_message_bytes {
            return Err(vec![
                reply(
                    conn,
                    ErrorCode::TooLarge,
                    format!("message of {len} bytes exceeds the limit of {}", self.limits.max_message_bytes),
                ),
                Output::Close { conn, reason: "message too large".into() },
            ]);
        }
        Ok(())
    }

    /// An admitted frame, parsed ([`parse_client`]'s result).
    pub fn handle(&mut self, conn: ConnId, parsed: Result<ClientMessage, ServerMessage>, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.conns.contains_key(&conn) {
            return out;
        }
        match parsed {
            Err(msg) => out.push(Output::Send { to: conn, msg }),
            Ok(ClientMessage::Join(request)) => self.join(conn, request, now, &mut out),
            Ok(ClientMessage::Signal { to, data }) => self.signal(conn, &to, data, &mut out),
            Ok(ClientMessage::Leave) => {
                if !self.leave_room(conn, Leaving::OnPurpose, now, &mut out) {
                    out.push(reply(conn, ErrorCode::NotJoined, "not in a room"));
                }
            }
            Ok(ClientMessage::Publish { sdp, subscribe, analyse }) => match self.membership(conn) {
                Some(_) if !self.conns.get(&conn).is_some_and(|c| c.grant.can_publish) => {
                    out.push(reply(conn, ErrorCode::Forbidden, "your token does not grant publishing"))
                }
                Some(_) if subscribe && !self.conns.get(&conn).is_some_and(|c| c.grant.can_subscribe) => {
                    out.push(reply(conn, ErrorCode::Forbidden, "your token does not grant subscribing"))
                }
                Some((room, peer)) => out.push(Output::Publish { conn, room, peer, sdp, subscribe, analyse }),
                None => out.push(reply(conn, ErrorCode::NotJoined, "join a room before publishing")),
            },
            Ok(ClientMessage::Offer { sdp }) => self.renegotiate(conn, sdp, true, &mut out),
            Ok(ClientMessage::Answer { sdp }) => self.renegotiate(conn, sdp, false, &mut out),
        }
        out
    }

    fn renegotiate(&self, conn: ConnId, sdp: String, offer: bool, out: &mut Vec<Output>) {
        match self.membership(conn) {
            Some((room, peer)) => out.push(Output::Renegotiate { conn, room, peer, sdp, offer }),
            None => out.push(reply(conn, ErrorCode::NotJoined, "join a room and publish first")),
        }
    }

    fn membership(&self, conn: ConnId) -> Option<(RoomId, PeerId)> {
        self.conns.get(&conn).and_then(|c| c.membership.clone())
    }

    fn join(&mut self, conn: ConnId, request: Join, now: Instant, out: &mut Vec<Output>) {
        let Join { room, name, version, resume, resume_token, token } = request;
        // `resume`: the id asked for and its token.
        let resume = resume.zip(resume_token);
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
        let Some(room) = RoomId::parse(&room) else {
            return out.push(reply(conn, ErrorCode::BadRoom, "a room id is 8-64 characters of A-Z a-z 0-9 _ -"));
        };
        let grant = match self.admission.admit(&room, token.as_deref()) {
            Ok(grant) => grant,
            Err(refusal) => return out.push(reply(conn, refusal.code, refusal.message)),
        };
        let name = match clean_name(grant.name.clone().or(name), self.limits.max_name_chars) {
            Ok(name) => name,
            Err(message) => return out.push(reply(conn, ErrorCode::BadName, message)),
        };
        // An id comes back only to whoever holds its token, while nobody holds the id,
        // within the grace period; anyone else gets a fresh id.
        let resumed = resume.and_then(|(id, token)| {
            let id = PeerId::parse(&id)?;
            let ok = !self.store.contains(&room, &id)
                && self.departures.may_resume(&room, &id, now)
                && self.resume_key.verify(&room, &id, &token);
            ok.then_some(id)
        });
        let id = resumed.clone().unwrap_or_else(PeerId::random);
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
        if resumed.is_some() {
            self.departures.rejoined(&room, &id);
        }
        self.by_peer.insert((room.clone(), id.clone()), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.membership = Some((room.clone(), id.clone()));
            c.unjoined_since = None;
            c.grant = grant;
        }
        let resume_token = self.resume_key.token(&room, &id);
        let joined = ServerMessage::Joined {
            room: room.to_string(),
            id,
            peers,
            capacity,
            protocol: PROTOCOL_VERSION,
            resume_token,
            // TURN credentials need a clock and a secret: the server fills these in.
            ice_servers: Vec::new(),
            ingest_key: None,
        };
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
    fn leave_room(&mut self, conn: ConnId, how: Leaving, now: Instant, out: &mut Vec<Output>) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let Some((room, id)) = c.membership.take() else { return false };
        c.unjoined_since = Some(now);
        self.store.leave(&room, &id);
        match how {
            Leaving::OnPurpose => self.departures.left(room.clone(), id.clone(), now),
            Leaving::Dropped => self.departures.dropped(room.clone(), id.clone(), now),
        }
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

        let out = h.disconnect(b, now);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerLeft { id: b_id.clone() }]);
        assert!(out.contains(&Output::Unpublish { room: RoomId::parse("room-0001").unwrap(), peer: b_id }));
        assert_eq!(h.room_count(), 1);
        h.disconnect(a, now);
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

    fn joined_of(out: &[Output], conn: ConnId) -> (PeerId, String) {
        sends_to(out, conn)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::Joined { id, resume_token, .. } => Some((id, resume_token)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no joined in {out:?}"))
    }

    fn resume(h: &mut Hub, conn: ConnId, room: &str, id: &PeerId, token: Option<&str>, now: Instant) -> PeerId {
        let msg = json!({"type":"join","room":room,"resume":id,"resume_token":token});
        joined_of(&h.on_message(conn, &msg.to_string(), now), conn).0
    }

    #[test]
    fn resume_needs_the_token_the_id_being_free_and_the_grace() {
        let t0 = Instant::now();
        let mut h = hub(Limits { resume_grace: Duration::from_secs(60), ..Limits::default() });
        let (a, b) = (h.connect(t0), h.connect(t0));
        let out = h.on_message(a, r#"{"type":"join","room":"room-0006"}"#, t0);
        let (a_id, a_token) = joined_of(&out, a);
        assert!(a_token.len() >= 22, "≥ 128 bits");
        // The token goes to a alone.
        let (b_id, b_token) = joined_of(&h.on_message(b, r#"{"type":"join","room":"room-0006"}"#, t0), b);
        assert!(!format!("{:?}", sends_to(&h.on_message(b, r#"{"type":"leave"}"#, t0), a)).contains(&a_token));
        let _ = (b_id, b_token);
        // b asks for a's id while a holds it, even with the right token: a fresh id.
        assert_ne!(resume(&mut h, b, "room-0006", &a_id, Some(&a_token), t0), a_id);
        h.disconnect(b, t0);

        h.disconnect(a, t0);
        // Without a token, or with another's, or a forged one: a fresh id.
        for token in [None, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some("")] {
            let c = h.connect(t0);
            assert_ne!(resume(&mut h, c, "room-0006", &a_id, token, t0), a_id, "{token:?}");
            h.on_message(c, r#"{"type":"leave"}"#, t0);
        }
        // The right token in another room does not work either.
        let c = h.connect(t0);
        assert_ne!(resume(&mut h, c, "room-0007", &a_id, Some(&a_token), t0), a_id);
        h.disconnect(c, t0);
        // With its token, within the grace: a is back.
        let a2 = h.connect(t0);
        let t1 = t0 + Duration::from_secs(59);
        assert_eq!(resume(&mut h, a2, "room-0006", &a_id, Some(&a_token), t1), a_id);
        // After the grace the token is worthless.
        h.disconnect(a2, t1);
        let a3 = h.connect(t1);
        assert_ne!(resume(&mut h, a3, "room-0006", &a_id, Some(&a_token), t1 + Duration::from_secs(61)), a_id);
    }

    #[test]
    fn leave_kills_the_token_and_a_kept_key_resumes_after_a_restart() {
        let t0 = Instant::now();
        let key = ResumeKey::random();
        let mut h = hub(Limits::default()).with_resume_key(key.clone(), t0);
        let a = h.connect(t0);
        let (a_id, a_token) = joined_of(&h.on_message(a, r#"{"type":"join","room":"room-0008"}"#, t0), a);
        h.on_message(a, r#"{"type":"leave"}"#, t0);
        assert_ne!(resume(&mut h, a, "room-0008", &a_id, Some(&a_token), t0), a_id, "left on purpose");
        h.disconnect(a, t0);

        // A restart: a new hub with the same key knows nothing of a, but its token works
        // for the grace period after boot.
        let boot = t0 + Duration::from_secs(300);
        let mut h2 = hub(Limits::default()).with_resume_key(key.clone(), boot);
        let b = h2.connect(boot);
        let (b_id, b_token) = joined_of(&h2.on_message(b, r#"{"type":"join","room":"room-0008"}"#, boot), b);
        h2.disconnect(b, boot);
        let mut h3 = hub(Limits::default()).with_resume_key(key.clone(), boot);
        let b2 = h3.connect(boot);
        assert_eq!(resume(&mut h3, b2, "room-0008", &b_id, Some(&b_token), boot + Duration::from_secs(5)), b_id);
        // A hub with another key refuses it.
        let mut h4 = hub(Limits::default()).with_resume_key(ResumeKey::random(), boot);
        let b3 = h4.connect(boot);
        assert_ne!(resume(&mut h4, b3, "room-0008", &b_id, Some(&b_token), boot), b_id);
        // And after the boot grace, the restarted hub refuses it too.
        let mut h5 = hub(Limits::default()).with_resume_key(key, boot);
        let b4 = h5.connect(boot);
        assert_ne!(resume(&mut h5, b4, "room-0008", &b_id, Some(&b_token), boot + Duration::from_secs(61)), b_id);
    }

    #[test]
    fn join_deadline_counts_time_outside_rooms() {
        let t0 = Instant::now();
        let mut h = hub(Limits { join_timeout: Duration::from_secs(10), ..Limits::default() });
        let c = h.connect(t0);
        assert!(!h.join_deadline_passed(c, t0 + Duration::from_secs(10)));
        assert!(h.join_deadline_passed(c, t0 + Duration::from_secs(11)));
        let t1 = t0 + Duration::from_secs(5);
        let _ = h.on_message(c, r#"{"type":"join","room":"room-0009"}"#, t1);
        assert!(!h.join_deadline_passed(c, t1 + Duration::from_secs(3600)), "joined");
        let t2 = t1 + Duration::from_secs(100);
        h.on_message(c, r#"{"type":"leave"}"#, t2);
        assert!(!h.join_deadline_passed(c, t2 + Duration::from_secs(10)));
        assert!(h.join_deadline_passed(c, t2 + Duration::from_secs(11)), "left and idle");
    }

    #[test]
    fn display_names_lose_bidi_and_zero_width_characters() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let (a, b) = (h.connect(now), h.connect(now));
        h.on_message(a, r#"{"type":"join","room":"room-0010"}"#, now);
        let msg = json!({"type":"join","room":"room-0010","name":"Bo\u{202E}b\u{200B}"});
        let out = h.on_message(b, &msg.to_string(), now);
        let seen = sends_to(&out, a);
        assert!(
            matches!(&seen[..], [ServerMessage::PeerJoined { peer }] if peer.name.as_deref() == Some("Bob")),
            "{seen:?}"
        );
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
            vec![Output::Publish {
                conn: c,
                room: RoomId::parse("room-0007").unwrap(),
                peer: id,
                sdp: "v=0".into(),
                subscribe: false,
                analyse: true
            }]
        );
    }

    /// Admits only the token "good", naming the participant and withholding publish.
    struct OneToken;

    impl Admission for OneToken {
        fn admit(&self, _room: &RoomId, token: Option<&str>) -> Result<Grant, crate::Refusal> {
            match token {
                Some("good") => Ok(Grant { name: Some("From Token".into()), can_publish: false, can_subscribe: false }),
                None => Err(crate::Refusal { code: ErrorCode::TokenRequired, message: "no token".into() }),
                Some(_) => Err(crate::Refusal { code: ErrorCode::TokenInvalid, message: "bad token".into() }),
            }
        }
    }

    #[test]
    fn admission_decides_joins_and_its_grant_names_and_limits() {
        let now = Instant::now();
        let mut h = hub(Limits::default()).with_admission(Box::new(OneToken));
        let (a, b) = (h.connect(now), h.connect(now));
        let out = h.on_message(a, r#"{"type":"join","room":"room-0008"}"#, now);
        assert_eq!(error_code(&out, a), Some(ErrorCode::TokenRequired));
        let out = h.on_message(a, r#"{"type":"join","room":"room-0008","token":"forged"}"#, now);
        assert_eq!(error_code(&out, a), Some(ErrorCode::TokenInvalid));
        assert_eq!(h.room_count(), 0, "refused joins leave no trace");
        let out = h.on_message(a, r#"{"type":"join","room":"room-0008","token":"good","name":"Mallory"}"#, now);
        let joined = sends_to(&out, a);
        assert!(matches!(&joined[0], ServerMessage::Joined { .. }), "{joined:?}");
        let out = h.on_message(b, r#"{"type":"join","room":"room-0008","token":"good"}"#, now);
        let peers = sends_to(&out, b).into_iter().find_map(|m| match m {
            ServerMessage::Joined { peers, .. } => Some(peers),
            _ => None,
        });
        assert_eq!(peers.unwrap()[0].name.as_deref(), Some("From Token"), "the token's name, not the client's");
        let out = h.on_message(a, r#"{"type":"publish","sdp":"v=0"}"#, now);
        assert_eq!(error_code(&out, a), Some(ErrorCode::Forbidden));
        assert!(h.room_subscribers(&RoomId::parse("room-0008").unwrap()).is_empty());
    }
}

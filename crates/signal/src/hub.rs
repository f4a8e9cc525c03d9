//! The signaling state machine. The server feeds it connection events (connect,
//! message text, disconnect) with the current time and carries out the [`Output`]s it
//! returns; no sockets or clocks live here.

use crate::admission::{Admission, Grant, Open};
use crate::ids::{PeerId, RoomId};
use crate::limits::{Limits, RateLimiter};
use crate::names::clean_name;
use crate::protocol::{
    parse_client, ClientMessage, ErrorCode, Join, PeerInfo, ServerMessage, MAX_MID_CHARS, MAX_TILE_PIXELS,
    PROTOCOL_VERSION,
};
use crate::resume::{Departures, ResumeKey};
use crate::rooms::{JoinError, RoomStore};
use std::collections::{BTreeSet, HashMap};
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
        /// The participant's grant does not allow publishing (it may subscribe): its offer
        /// may only receive, and the media leg refuses one that sends.
        receive_only: bool,
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
    /// The tile one of the participant's received video tracks is shown in (checked:
    /// `mid` at most [`MAX_MID_CHARS`], sizes at most [`MAX_TILE_PIXELS`]).
    TrackSettings {
        room: RoomId,
        peer: PeerId,
        mid: String,
        width: u32,
        height: u32,
    },
    /// The participant is gone: free its media sessions.
    Unpublish {
        room: RoomId,
        peer: PeerId,
    },
    /// Shared rooms ([`Hub::with_node`]): ask the shared store for a seat for `peer` in
    /// `room` (at most `capacity` participants over all nodes); answer with [`Hub::reserved`].
    /// `resume`: an id whose resume token checked out; the store gives it instead of
    /// `peer.id` if its holder's connection dropped within the resume grace (on any node)
    /// or its seat is still held by another node (whose connection is stale or dead).
    Reserve {
        conn: ConnId,
        room: RoomId,
        peer: PeerInfo,
        capacity: usize,
        resume: Option<PeerId>,
    },
    /// Shared rooms: `peer` left; free its seat in the shared store (if this node still
    /// holds it). `resumable`: the connection dropped, so its resume token works on any
    /// node for the resume grace; false: it left on purpose.
    Release {
        room: RoomId,
        peer: PeerId,
        resumable: bool,
    },
    /// Shared rooms: carry `msg` to node `node`, which hands it to [`Hub::on_relay`]
    /// (for participant `to`, or for the room's participants there).
    Relay {
        node: String,
        room: RoomId,
        to: Option<PeerId>,
        msg: ServerMessage,
    },
}

/// Why the shared store gave no seat ([`Hub::reserved`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeatRefusal {
    Full {
        capacity: usize,
    },
    IdTaken,
    /// The shared store could not be reached; the text says why.
    Unavailable(String),
}

/// Shared rooms: the shared store gave a seat ([`Hub::reserved`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    /// The participant's id: the resumed one, or the fresh one of the request.
    pub id: PeerId,
    /// A resume took the seat over from this node (whose connection is stale or dead).
    pub moved_from: Option<String>,
    /// The room's other participants, in joining order, each with its node.
    pub members: Vec<(PeerInfo, String)>,
}

/// A participant connected to another node, as this node knows it.
struct RemotePeer {
    node: String,
    /// When this node learned of it.
    since: Instant,
}

/// A join waiting for its seat in the shared store.
struct PendingJoin {
    room: RoomId,
    me: PeerInfo,
    grant: Grant,
    resumed: bool,
}

struct Conn {
    membership: Option<(RoomId, PeerId)>,
    /// Rights in the room it joined (all rights while not joined: they are not used).
    grant: Grant,
    limiter: RateLimiter,
    refusals: u32,
    /// Since when the connection is in no room (`None` while it is in one).
    unjoined_since: Option<Instant>,
    /// Shared rooms: the join waiting for its seat.
    pending: Option<PendingJoin>,
}

/// How a participant left its room.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// `leave`: its resume token dies.
    OnPurpose,
    /// The connection dropped: resumable for the grace period.
    Dropped,
    /// Shared rooms: the participant resumed on another node, which holds its seat now.
    Moved,
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
    /// Shared rooms: this node's id (`None`: rooms live in this hub alone).
    node: Option<String>,
    /// Shared rooms: participants on other nodes, by room. The store holds them too
    /// (so capacity, membership and order see them); they have no connection here.
    remote: HashMap<RoomId, HashMap<PeerId, RemotePeer>>,
    /// Shared rooms: when remote participants were last seen leaving (so an older
    /// snapshot of the shared store does not bring them back).
    gone: HashMap<(RoomId, PeerId), Instant>,
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
            node: None,
            remote: HashMap::new(),
            gone: HashMap::new(),
        }
    }

    /// Shares rooms with other nodes as node `node`: a join asks for its seat with
    /// [`Output::Reserve`], departures free it with [`Output::Release`], and messages for
    /// participants on other nodes leave as [`Output::Relay`].
    pub fn with_node(mut self, node: String) -> Self {
        self.node = Some(node);
        self
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
            Conn {
                membership: None,
                grant: Grant::open(),
                limiter,
                refusals: 0,
                unjoined_since: Some(now),
                pending: None,
            },
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

    /// What this hub's admission grants a `token` for `room` (a viewer outside the room,
    /// e.g. WHEP, is authorised as a join would be, without joining).
    pub fn grant_for(&self, room: &RoomId, token: Option<&str>) -> Result<Grant, crate::Refusal> {
        self.admission.admit(room, token)
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
                Some(_) if subscribe && !self.conns.get(&conn).is_some_and(|c| c.grant.can_subscribe) => {
                    out.push(reply(conn, ErrorCode::Forbidden, "your token does not grant subscribing"))
                }
                // Without the right to publish, a connection that only receives (subscribe).
                Some(_) if !subscribe && !self.conns.get(&conn).is_some_and(|c| c.grant.can_publish) => {
                    out.push(reply(
                        conn,
                        ErrorCode::Forbidden,
                        "your token does not grant publishing (receiving needs subscribe)",
                    ))
                }
                Some((room, peer)) => {
                    let receive_only = !self.conns.get(&conn).is_some_and(|c| c.grant.can_publish);
                    out.push(Output::Publish { conn, room, peer, sdp, subscribe, analyse, receive_only })
                }
                None => out.push(reply(conn, ErrorCode::NotJoined, "join a room before publishing")),
            },
            Ok(ClientMessage::Offer { sdp }) => self.renegotiate(conn, sdp, true, &mut out),
            Ok(ClientMessage::Answer { sdp }) => self.renegotiate(conn, sdp, false, &mut out),
            Ok(ClientMessage::TrackSettings { mid, width, height }) => match self.membership(conn) {
                _ if mid.is_empty() || mid.chars().count() > MAX_MID_CHARS => {
                    out.push(reply(conn, ErrorCode::BadMessage, format!("mid: 1 to {MAX_MID_CHARS} characters")))
                }
                _ if width > MAX_TILE_PIXELS || height > MAX_TILE_PIXELS => out.push(reply(
                    conn,
                    ErrorCode::BadMessage,
                    format!("width and height: at most {MAX_TILE_PIXELS} pixels"),
                )),
                Some((room, peer)) => out.push(Output::TrackSettings { room, peer, mid, width, height }),
                None => out.push(reply(conn, ErrorCode::NotJoined, "join a room and publish first")),
            },
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
        if self.membership(conn).is_some() || self.conns.get(&conn).is_some_and(|c| c.pending.is_some()) {
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
        let capacity = self.limits.room_capacity;
        if self.node.is_some() {
            // Shared rooms: the shared store knows departures on every node and decides
            // whether the id comes back; here only the token and this node's own holders.
            let resume = resume.and_then(|(id, token)| {
                let id = PeerId::parse(&id)?;
                let ok = !self.by_peer.contains_key(&(room.clone(), id.clone()))
                    && self.resume_key.verify(&room, &id, &token);
                ok.then_some(id)
            });
            let me = PeerInfo { id: PeerId::random(), name };
            // The join completes in `reserved`.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending = Some(PendingJoin { room: room.clone(), me: me.clone(), grant, resumed: false });
            }
            return out.push(Output::Reserve { conn, room, peer: me, capacity, resume });
        }
        let resumed = resume.and_then(|(id, token)| {
            let id = PeerId::parse(&id)?;
            let ok = !self.store.contains(&room, &id)
                && self.departures.may_resume(&room, &id, now)
                && self.resume_key.verify(&room, &id, &token);
            ok.then_some(id)
        });
        let id = resumed.clone().unwrap_or_else(PeerId::random);
        let me = PeerInfo { id: id.clone(), name };
        let resumed = resumed.is_some();
        let peers = match self.store.join(&room, me.clone(), capacity) {
            Ok(peers) => peers,
            Err(JoinError::Full { capacity }) => return out.push(room_full(conn, capacity)),
            // Only reachable with a colliding random id.
            Err(JoinError::IdTaken) => return out.push(id_collision(conn)),
        };
        self.seat(conn, PendingJoin { room, me, grant, resumed }, peers, None, out);
    }

    /// The join of `conn` took its seat; `peers` were in the room before.
    /// `moved_from`: the node that held the seat before this resume (it hears of it).
    fn seat(
        &mut self,
        conn: ConnId,
        join: PendingJoin,
        peers: Vec<PeerInfo>,
        moved_from: Option<String>,
        out: &mut Vec<Output>,
    ) {
        let PendingJoin { room, me, grant, resumed } = join;
        let id = me.id.clone();
        for p in &peers {
            if let Some(&c) = self.by_peer.get(&(room.clone(), p.id.clone())) {
                out.push(Output::Send { to: c, msg: ServerMessage::PeerJoined { peer: me.clone() } });
            }
        }
        let mut nodes = self.remote_nodes(&room);
        nodes.extend(moved_from);
        for node in nodes {
            let msg = ServerMessage::PeerJoined { peer: me.clone() };
            out.push(Output::Relay { node, room: room.clone(), to: None, msg });
        }
        if resumed {
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
            capacity: self.limits.room_capacity,
            protocol: PROTOCOL_VERSION,
            resume_token,
            // TURN credentials need a clock and a secret: the server fills these in.
            ice_servers: Vec::new(),
            ingest_key: None,
            view_key: None,
        };
        out.push(Output::Send { to: conn, msg: joined });
    }

    /// Shared rooms: the shared store's answer to [`Output::Reserve`] for `peer` (the
    /// request's fresh id).
    pub fn reserved(
        &mut self,
        conn: ConnId,
        room: &RoomId,
        peer: &PeerId,
        result: Result<Seat, SeatRefusal>,
        now: Instant,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let matches = |p: &PendingJoin| &p.room == room && &p.me.id == peer;
        let pending = self.conns.get_mut(&conn).and_then(|c| c.pending.take_if(|p| matches(p)));
        let Some(mut join) = pending else {
            // The connection went away meanwhile: give the seat back (a resumed id stays
            // resumable: its participant never heard it was granted).
            if let Ok(seat) = result {
                let resumable = &seat.id != peer;
                out.push(Output::Release { room: room.clone(), peer: seat.id, resumable });
            }
            return out;
        };
        let Seat { id, moved_from, members } = match result {
            Ok(seat) => seat,
            Err(SeatRefusal::Full { capacity }) => {
                out.push(room_full(conn, capacity));
                return out;
            }
            Err(SeatRefusal::IdTaken) => {
                out.push(id_collision(conn));
                return out;
            }
            Err(SeatRefusal::Unavailable(why)) => {
                out.push(reply(conn, ErrorCode::Unavailable, format!("rooms are unavailable: {why}")));
                return out;
            }
        };
        if &id != peer {
            // A resumed id: known here as a participant of another node until now.
            join.me.id = id.clone();
            join.resumed = true;
            if let Some(members) = self.remote.get_mut(room) {
                if members.remove(&id).is_some() {
                    self.store.leave(room, &id);
                }
            }
        }
        let own = self.node.clone().unwrap_or_default();
        for (p, node) in &members {
            if node != &own && p.id != id {
                self.add_remote(room, p.clone(), node, now, &mut Vec::new());
            }
        }
        // Capacity was the shared store's to enforce.
        if self.store.join(room, join.me.clone(), usize::MAX).is_err() {
            out.push(Output::Release { room: room.clone(), peer: id, resumable: false });
            out.push(id_collision(conn));
            return out;
        }
        let peers = members.into_iter().filter(|(p, _)| p.id != id).map(|(p, _)| p).collect();
        let moved_from = moved_from.filter(|n| n != &own);
        self.seat(conn, join, peers, moved_from, &mut out);
        out
    }

    /// Shared rooms: a message relayed by node `from` for participant `to` of `room`
    /// (or for all of the room's participants here).
    pub fn on_relay(
        &mut self,
        from: &str,
        room: &RoomId,
        to: Option<&PeerId>,
        msg: ServerMessage,
        now: Instant,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        match msg {
            ServerMessage::PeerJoined { peer } => {
                if let Some(conn) = self.connection_of(room, &peer.id) {
                    // It resumed on node `from`: this connection of it is stale.
                    self.leave_room(conn, Leaving::Moved, now, &mut out);
                    out.push(Output::Close { conn, reason: "resumed on another node".into() });
                    // The others here keep it, now on node `from`, with a new session.
                    if self.is_here(room) {
                        self.add_remote(room, peer, from, now, &mut out);
                    }
                } else if let Some(known) = self.remote.get_mut(room).and_then(|m| m.get_mut(&peer.id)) {
                    // It resumed on node `from`, coming from another node: a new session.
                    known.node = from.to_owned();
                    known.since = now;
                    for (_, c) in self.room_connections(room) {
                        out.push(Output::Send { to: c, msg: ServerMessage::PeerJoined { peer: peer.clone() } });
                    }
                } else if self.is_here(room) {
                    self.add_remote(room, peer, from, now, &mut out)
                }
            }
            ServerMessage::PeerLeft { id } => self.remove_remote(room, &id, now, &mut out),
            ServerMessage::Detections(_) => {
                for conn in self.room_subscribers(room) {
                    out.push(Output::Send { to: conn, msg: msg.clone() });
                }
            }
            // Signals, and the replies of the node running this participant's media
            // (`--redis` media placement), go to the one participant named.
            ServerMessage::Signal { .. }
            | ServerMessage::PublishAnswer { .. }
            | ServerMessage::Offer { .. }
            | ServerMessage::Answer { .. }
            | ServerMessage::Error { .. }
            | ServerMessage::MediaMoved {} => {
                if let Some(conn) = to.and_then(|to| self.connection_of(room, to)) {
                    out.push(Output::Send { to: conn, msg });
                }
            }
            // Nothing else crosses nodes.
            _ => {}
        }
        out
    }

    /// Shared rooms: the shared store's list of `room`'s participants (with their
    /// nodes), read from it at `asked_at`. Remote participants this node missed join,
    /// and, with `drop_missing`, those missing from the list leave (a store that just
    /// came back may not list everyone yet); news heard after `asked_at` wins over the list.
    pub fn sync_room(
        &mut self,
        room: &RoomId,
        members: Vec<(PeerInfo, String)>,
        asked_at: Instant,
        drop_missing: bool,
        now: Instant,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        self.gone.retain(|(r, _), at| r != room || *at >= asked_at);
        if !self.is_here(room) {
            for id in self.remote.remove(room).unwrap_or_default().into_keys() {
                self.store.leave(room, &id);
            }
            return out;
        }
        let own = self.node.clone().unwrap_or_default();
        let listed: BTreeSet<&PeerId> = members.iter().map(|(p, _)| &p.id).collect();
        let stale: Vec<PeerId> = self
            .remote
            .get(room)
            .into_iter()
            .flatten()
            .filter(|(id, r)| drop_missing && r.since < asked_at && !listed.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove_remote(room, &id, now, &mut out);
        }
        for (p, node) in members {
            let known = self.store.contains(room, &p.id);
            if node != own && !known && !self.gone.contains_key(&(room.clone(), p.id.clone())) {
                self.add_remote(room, p, &node, now, &mut out);
            }
        }
        out
    }

    /// Shared rooms: the rooms this node takes part in, each with its participants
    /// connected here (the shared store is told of them again, in case it forgot).
    pub fn local_rooms(&self) -> Vec<(RoomId, Vec<PeerInfo>)> {
        let mut rooms: HashMap<RoomId, Vec<PeerInfo>> = HashMap::new();
        for room in self.remote.keys() {
            rooms.entry(room.clone()).or_default();
        }
        for (room, _) in self.by_peer.keys() {
            rooms.entry(room.clone()).or_default();
        }
        for c in self.conns.values() {
            if let Some(p) = &c.pending {
                rooms.entry(p.room.clone()).or_default();
            }
        }
        for (room, members) in rooms.iter_mut() {
            *members = self
                .store
                .members(room)
                .into_iter()
                .filter(|p| self.by_peer.contains_key(&(room.clone(), p.id.clone())))
                .collect();
        }
        rooms.into_iter().collect()
    }

    /// Shared rooms: the other nodes holding participants of `room`.
    pub fn remote_nodes(&self, room: &RoomId) -> BTreeSet<String> {
        self.remote.get(room).into_iter().flat_map(|m| m.values().map(|r| r.node.clone())).collect()
    }

    /// Whether this node has participants in `room`, or a join waiting for a seat there.
    fn is_here(&self, room: &RoomId) -> bool {
        self.by_peer.keys().any(|(r, _)| r == room)
            || self.conns.values().any(|c| c.pending.as_ref().is_some_and(|p| &p.room == room))
    }

    fn add_remote(&mut self, room: &RoomId, peer: PeerInfo, node: &str, now: Instant, out: &mut Vec<Output>) {
        if self.store.contains(room, &peer.id) {
            return;
        }
        self.gone.remove(&(room.clone(), peer.id.clone()));
        if self.store.join(room, peer.clone(), usize::MAX).is_err() {
            return;
        }
        let remote = RemotePeer { node: node.to_owned(), since: now };
        self.remote.entry(room.clone()).or_default().insert(peer.id.clone(), remote);
        for (_, c) in self.room_connections(room) {
            out.push(Output::Send { to: c, msg: ServerMessage::PeerJoined { peer: peer.clone() } });
        }
    }

    fn remove_remote(&mut self, room: &RoomId, id: &PeerId, now: Instant, out: &mut Vec<Output>) {
        let Some(members) = self.remote.get_mut(room) else { return };
        if members.remove(id).is_none() {
            return;
        }
        if members.is_empty() {
            self.remote.remove(room);
        }
        self.gone.insert((room.clone(), id.clone()), now);
        self.store.leave(room, id);
        for (_, c) in self.room_connections(room) {
            out.push(Output::Send { to: c, msg: ServerMessage::PeerLeft { id: id.clone() } });
        }
    }

    fn signal(&mut self, conn: ConnId, to: &str, data: serde_json::Value, out: &mut Vec<Output>) {
        let Some((room, from)) = self.membership(conn) else {
            return out.push(reply(conn, ErrorCode::NotJoined, "join a room before signaling"));
        };
        let Some(target) = PeerId::parse(to) else {
            return out.push(reply(conn, ErrorCode::UnknownPeer, format!("no peer {to:?} in your room")));
        };
        let msg = ServerMessage::Signal { from, data };
        match self.by_peer.get(&(room.clone(), target.clone())).copied() {
            Some(c) if c != conn => return out.push(Output::Send { to: c, msg }),
            Some(_) => {}
            None => {
                if let Some(node) = self.remote.get(&room).and_then(|m| m.get(&target)).map(|r| r.node.clone()) {
                    return out.push(Output::Relay { node, room, to: Some(target), msg });
                }
            }
        }
        out.push(reply(conn, ErrorCode::UnknownPeer, format!("no peer {to:?} in your room")))
    }

    /// Returns whether the connection was in a room.
    fn leave_room(&mut self, conn: ConnId, how: Leaving, now: Instant, out: &mut Vec<Output>) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        // A join waiting for its seat is dropped; `reserved` gives the seat back.
        c.pending = None;
        let Some((room, id)) = c.membership.take() else { return false };
        c.unjoined_since = Some(now);
        self.store.leave(&room, &id);
        match how {
            Leaving::OnPurpose => self.departures.left(room.clone(), id.clone(), now),
            Leaving::Dropped => self.departures.dropped(room.clone(), id.clone(), now),
            Leaving::Moved => {}
        }
        self.by_peer.remove(&(room.clone(), id.clone()));
        if how != Leaving::Moved {
            for (_, c) in self.room_connections(&room) {
                out.push(Output::Send { to: c, msg: ServerMessage::PeerLeft { id: id.clone() } });
            }
        }
        if self.node.is_some() {
            if how != Leaving::Moved {
                // The seat is free before anyone elsewhere hears of the departure.
                let resumable = how == Leaving::Dropped;
                out.push(Output::Release { room: room.clone(), peer: id.clone(), resumable });
                for node in self.remote_nodes(&room) {
                    let msg = ServerMessage::PeerLeft { id: id.clone() };
                    out.push(Output::Relay { node, room: room.clone(), to: None, msg });
                }
            }
            if !self.is_here(&room) {
                // Nobody here is in the room any more: forget who is elsewhere.
                for other in self.remote.remove(&room).unwrap_or_default().into_keys() {
                    self.store.leave(&room, &other);
                }
            }
        }
        out.push(Output::Unpublish { room, peer: id });
        true
    }
}

fn room_full(conn: ConnId, capacity: usize) -> Output {
    reply(conn, ErrorCode::RoomFull, format!("room is full ({capacity} participants)"))
}

fn id_collision(conn: ConnId) -> Output {
    reply(conn, ErrorCode::Internal, "peer id collision; retry")
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
                analyse: true,
                receive_only: false
            }]
        );
    }

    #[test]
    fn track_settings_reach_the_media_leg_and_bad_ones_are_refused() {
        let now = Instant::now();
        let mut h = hub(Limits::default());
        let c = h.connect(now);
        let code = |out: &[Output]| match out {
            [Output::Send { msg: ServerMessage::Error { code, .. }, .. }] => Some(*code),
            _ => None,
        };
        let out = h.on_message(c, r#"{"type":"track-settings","mid":"1","width":640,"height":360}"#, now);
        assert_eq!(code(&out), Some(ErrorCode::NotJoined), "{out:?}");
        let (id, _, _) = join(&mut h, c, "room-0008", now);
        let out = h.on_message(c, r#"{"type":"track-settings","mid":"1","width":640,"height":360}"#, now);
        let room = RoomId::parse("room-0008").unwrap();
        assert_eq!(out, vec![Output::TrackSettings { room, peer: id, mid: "1".into(), width: 640, height: 360 }]);
        for bad in [
            r#"{"type":"track-settings","mid":"","width":1,"height":1}"#,
            r#"{"type":"track-settings","mid":"12345678901234567","width":1,"height":1}"#,
            r#"{"type":"track-settings","mid":"1","width":16385,"height":1}"#,
            r#"{"type":"track-settings","mid":"1","width":-1,"height":1}"#,
            r#"{"type":"track-settings","mid":"1","width":1}"#,
        ] {
            let out = h.on_message(c, bad, now);
            assert_eq!(code(&out), Some(ErrorCode::BadMessage), "{bad}: {out:?}");
        }
    }

    /// Admits only the token "good", naming the participant and withholding publish.
    struct OneToken;

    impl Admission for OneToken {
        fn admit(&self, _room: &RoomId, token: Option<&str>) -> Result<Grant, crate::Refusal> {
            match token {
                Some("good") => Ok(Grant { name: Some("From Token".into()), can_publish: false, can_subscribe: false }),
                Some("watch") => Ok(Grant { name: None, can_publish: false, can_subscribe: true }),
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
        let out = h.on_message(a, r#"{"type":"publish","sdp":"v=0","subscribe":true}"#, now);
        assert_eq!(error_code(&out, a), Some(ErrorCode::Forbidden), "nor subscribing");
        assert!(h.room_subscribers(&RoomId::parse("room-0008").unwrap()).is_empty());

        // May subscribe, not publish: only a receiving connection goes to the media leg.
        let c = h.connect(now);
        let out = h.on_message(c, r#"{"type":"join","room":"room-0108","token":"watch"}"#, now);
        assert!(matches!(&sends_to(&out, c)[..], [ServerMessage::Joined { .. }]), "{out:?}");
        let out = h.on_message(c, r#"{"type":"publish","sdp":"v=0"}"#, now);
        assert_eq!(error_code(&out, c), Some(ErrorCode::Forbidden));
        let out = h.on_message(c, r#"{"type":"publish","sdp":"v=0","subscribe":true}"#, now);
        assert!(
            matches!(&out[..], [Output::Publish { conn, subscribe: true, receive_only: true, .. }] if *conn == c),
            "{out:?}"
        );
    }

    /// Shared rooms: the one `Reserve` in `out`.
    fn reserve_of(out: &[Output]) -> (ConnId, RoomId, PeerInfo, usize) {
        out.iter()
            .find_map(|o| match o {
                Output::Reserve { conn, room, peer, capacity, .. } => {
                    Some((*conn, room.clone(), peer.clone(), *capacity))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reserve in {out:?}"))
    }

    /// The shared store's grant of the requested fresh id.
    fn seat(me: &PeerInfo, members: Vec<(PeerInfo, String)>) -> Seat {
        Seat { id: me.id.clone(), moved_from: None, members }
    }

    fn relays(out: &[Output]) -> Vec<(String, Option<PeerId>, ServerMessage)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Relay { node, to, msg, .. } => Some((node.clone(), to.clone(), msg.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn shared_rooms_seat_relay_and_leave_across_two_nodes() {
        let now = Instant::now();
        let mut na = hub(Limits::default()).with_node("node-a".into());
        let mut nb = hub(Limits::default()).with_node("node-b".into());
        let room = RoomId::parse("room-shared").unwrap();
        // What the shared store holds: (participant, node) in joining order.
        let mut seats: Vec<(PeerInfo, String)> = Vec::new();

        let a = na.connect(now);
        let out = na.on_message(a, r#"{"type":"join","room":"room-shared"}"#, now);
        assert!(sends_to(&out, a).is_empty(), "no joined before the seat: {out:?}");
        let (_, _, a_info, capacity) = reserve_of(&out);
        assert_eq!(capacity, 2);
        assert_eq!(
            error_code(&na.on_message(a, r#"{"type":"join","room":"room-shared"}"#, now), a),
            Some(ErrorCode::AlreadyJoined),
            "a join waiting for its seat counts"
        );
        let out = na.reserved(a, &room, &a_info.id, Ok(seat(&a_info, seats.clone())), now);
        seats.push((a_info.clone(), "node-a".into()));
        assert!(relays(&out).is_empty(), "nobody elsewhere yet");
        assert!(matches!(&sends_to(&out, a)[..], [ServerMessage::Joined { peers, .. }] if peers.is_empty()));

        let b = nb.connect(now);
        let (_, _, b_info, _) = reserve_of(&nb.on_message(b, r#"{"type":"join","room":"room-shared"}"#, now));
        let out = nb.reserved(b, &room, &b_info.id, Ok(seat(&b_info, seats.clone())), now);
        let joined = sends_to(&out, b);
        assert!(
            matches!(&joined[..], [ServerMessage::Joined { peers, .. }] if peers == &vec![a_info.clone()]),
            "{joined:?}"
        );
        let announce = relays(&out);
        assert_eq!(announce, vec![("node-a".into(), None, ServerMessage::PeerJoined { peer: b_info.clone() })]);
        let (_, _, msg) = announce.into_iter().next().unwrap();
        let out = na.on_relay("node-b", &room, None, msg, now);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerJoined { peer: b_info.clone() }]);

        // a signals b: it leaves for node b, addressed to b, and node b hands it over.
        let out = na.on_message(a, &json!({"type":"signal","to":b_info.id,"data":{"x":1}}).to_string(), now);
        let relayed = relays(&out);
        assert_eq!(relayed.len(), 1, "{out:?}");
        let (node, to, msg) = relayed.into_iter().next().unwrap();
        assert_eq!((node.as_str(), to.as_ref()), ("node-b", Some(&b_info.id)));
        let out = nb.on_relay("node-a", &room, to.as_ref(), msg, now);
        assert_eq!(sends_to(&out, b), vec![ServerMessage::Signal { from: a_info.id.clone(), data: json!({"x":1}) }]);
        // A relay for someone not here goes nowhere.
        let stray = ServerMessage::Signal { from: a_info.id.clone(), data: json!({}) };
        assert!(nb.on_relay("node-a", &room, Some(&PeerId::random()), stray, now).is_empty());
        // The media node's replies reach the participant named, and only it; a relayed
        // reply without a participant goes nowhere.
        for reply in [
            ServerMessage::PublishAnswer { sdp: "v=0".into() },
            ServerMessage::Answer { sdp: "v=0".into() },
            ServerMessage::Offer { sdp: "v=0".into(), tracks: vec![] },
            ServerMessage::error(ErrorCode::MediaUnavailable, "no"),
            ServerMessage::MediaMoved {},
        ] {
            let out = nb.on_relay("node-a", &room, Some(&b_info.id), reply.clone(), now);
            assert_eq!(out, vec![Output::Send { to: b, msg: reply.clone() }]);
            assert!(nb.on_relay("node-a", &room, None, reply, now).is_empty());
        }

        // b leaves: its seat is released and node a hears of it.
        let out = nb.disconnect(b, now);
        assert!(out.contains(&Output::Release { room: room.clone(), peer: b_info.id.clone(), resumable: true }));
        let (node, _, msg) = relays(&out).into_iter().next().expect("peer-left relayed");
        assert_eq!(node, "node-a");
        let out = na.on_relay("node-b", &room, None, msg, now);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerLeft { id: b_info.id.clone() }]);
        let out = na.on_message(a, &json!({"type":"signal","to":b_info.id,"data":{}}).to_string(), now);
        assert_eq!(error_code(&out, a), Some(ErrorCode::UnknownPeer));
        assert_eq!(nb.room_count(), 0, "node b forgot the room");
    }

    #[test]
    fn shared_rooms_refusals_and_a_join_abandoned_while_waiting() {
        let now = Instant::now();
        let mut n = hub(Limits::default()).with_node("node-a".into());
        let room = RoomId::parse("room-refuse").unwrap();
        for (refusal, code) in [
            (SeatRefusal::Full { capacity: 2 }, ErrorCode::RoomFull),
            (SeatRefusal::Unavailable("Redis is unreachable".into()), ErrorCode::Unavailable),
        ] {
            let c = n.connect(now);
            let (_, _, me, _) = reserve_of(&n.on_message(c, r#"{"type":"join","room":"room-refuse"}"#, now));
            let out = n.reserved(c, &room, &me.id, Err(refusal), now);
            assert_eq!(error_code(&out, c), Some(code));
            // The connection may try again.
            reserve_of(&n.on_message(c, r#"{"type":"join","room":"room-refuse"}"#, now));
        }
        assert_eq!(n.room_count(), 0);
        // A seat granted to a connection that went away meanwhile is given back.
        let c = n.connect(now);
        let (_, _, me, _) = reserve_of(&n.on_message(c, r#"{"type":"join","room":"room-refuse"}"#, now));
        n.disconnect(c, now);
        let out = n.reserved(c, &room, &me.id, Ok(seat(&me, Vec::new())), now);
        assert_eq!(out, vec![Output::Release { room: room.clone(), peer: me.id, resumable: false }]);
    }

    #[test]
    fn shared_rooms_sync_drops_dead_nodes_peers_and_adds_missed_ones() {
        let t0 = Instant::now();
        let mut n = hub(Limits { room_capacity: 8, ..Limits::default() }).with_node("node-a".into());
        let room = RoomId::parse("room-syncs").unwrap();
        let a = n.connect(t0);
        let (_, _, a_info, _) = reserve_of(&n.on_message(a, r#"{"type":"join","room":"room-syncs"}"#, t0));
        let b_info = PeerInfo { id: PeerId::random(), name: Some("Bea".into()) };
        let out = n.reserved(a, &room, &a_info.id, Ok(seat(&a_info, vec![(b_info.clone(), "node-b".into())])), t0);
        assert!(
            matches!(&sends_to(&out, a)[..], [ServerMessage::Joined { peers, .. }] if peers == &vec![b_info.clone()])
        );
        let mine = (a_info.clone(), "node-a".to_owned());
        assert_eq!(n.local_rooms(), vec![(room.clone(), vec![a_info.clone()])]);

        // c joined on node c; the announcement was lost, the sync brings it.
        let c_info = PeerInfo { id: PeerId::random(), name: None };
        let t1 = t0 + Duration::from_secs(1);
        let listed = vec![(b_info.clone(), "node-b".into()), mine.clone(), (c_info.clone(), "node-c".into())];
        let out = n.sync_room(&room, listed, t1, true, t1);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerJoined { peer: c_info.clone() }]);
        // d's announcement arrives after a sync was asked for that does not list it yet:
        // d stays. Node b died: b goes.
        let d_info = PeerInfo { id: PeerId::random(), name: None };
        let t2 = t1 + Duration::from_secs(1);
        let t3 = t2 + Duration::from_millis(10);
        n.on_relay("node-d", &room, None, ServerMessage::PeerJoined { peer: d_info.clone() }, t3);
        let listed = vec![mine.clone(), (c_info.clone(), "node-c".into())];
        assert!(n.sync_room(&room, listed.clone(), t2, false, t3).is_empty(), "not yet sure b is gone");
        let out = n.sync_room(&room, listed, t2, true, t3);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerLeft { id: b_info.id.clone() }]);
        // c left (heard at t3); a sync asked before that still lists c: c stays gone.
        let out = n.on_relay("node-c", &room, None, ServerMessage::PeerLeft { id: c_info.id.clone() }, t3);
        assert_eq!(sends_to(&out, a), vec![ServerMessage::PeerLeft { id: c_info.id.clone() }]);
        let listed = vec![mine, (c_info.clone(), "node-c".into()), (d_info.clone(), "node-d".into())];
        assert!(n.sync_room(&room, listed, t2, true, t3).is_empty());
        assert_eq!(n.remote_nodes(&room).into_iter().collect::<Vec<_>>(), vec!["node-d".to_owned()]);
        // Once nobody here is in the room, its remote participants are forgotten.
        n.disconnect(a, t3);
        n.sync_room(&room, vec![(d_info, "node-d".into())], t3, true, t3);
        assert_eq!(n.room_count(), 0);
    }
    #[test]
    fn shared_rooms_resume_on_another_node_and_take_over_a_stale_seat() {
        let now = Instant::now();
        let key = ResumeKey::random();
        let mut na = hub(Limits::default()).with_resume_key(key.clone(), now).with_node("node-a".into());
        let mut nb = hub(Limits::default()).with_resume_key(key.clone(), now).with_node("node-b".into());
        let room = RoomId::parse("room-resume").unwrap();
        let a = na.connect(now);
        let (_, _, a_info, _) = reserve_of(&na.on_message(a, r#"{"type":"join","room":"room-resume"}"#, now));
        let out = na.reserved(a, &room, &a_info.id, Ok(seat(&a_info, Vec::new())), now);
        let (a_id, token) = joined_of(&out, a);
        // The socket drops: the seat is released as resumable (the store remembers it).
        let out = na.disconnect(a, now);
        assert!(out.contains(&Output::Release { room: room.clone(), peer: a_id.clone(), resumable: true }));

        // On node b the token is checked here and the id offered to the store; a wrong
        // token asks for no id.
        let b = nb.connect(now);
        let bad = json!({"type":"join","room":"room-resume","resume":a_id,"resume_token":"AAAA"});
        let out = nb.on_message(b, &bad.to_string(), now);
        assert!(matches!(&out[..], [Output::Reserve { resume: None, .. }]), "{out:?}");
        let (_, _, fresh, _) = reserve_of(&out);
        nb.disconnect(b, now);
        let b = nb.connect(now);
        let msg = json!({"type":"join","room":"room-resume","resume":a_id,"resume_token":token});
        let out = nb.on_message(b, &msg.to_string(), now);
        assert!(matches!(&out[..], [Output::Reserve { resume: Some(id), .. }] if id == &a_id), "{out:?}");
        let (_, _, fresh2, _) = reserve_of(&out);
        assert_ne!(fresh.id, fresh2.id);
        // The store grants the old id: it is this participant's again, with a new token.
        let granted = Seat { id: a_id.clone(), moved_from: None, members: Vec::new() };
        let out = nb.reserved(b, &room, &fresh2.id, Ok(granted), now);
        assert_eq!(joined_of(&out, b).0, a_id);

        // A stale connection of the same participant on node a (its drop not yet seen),
        // and a second participant there: the resume on node b took the seat over.
        let mut na = hub(Limits::default()).with_resume_key(key, now).with_node("node-a".into());
        let (x, y) = (na.connect(now), na.connect(now));
        let (_, _, x_info, _) = reserve_of(&na.on_message(x, r#"{"type":"join","room":"room-resume"}"#, now));
        na.reserved(x, &room, &x_info.id, Ok(seat(&x_info, Vec::new())), now);
        let (_, _, y_info, _) = reserve_of(&na.on_message(y, r#"{"type":"join","room":"room-resume"}"#, now));
        na.reserved(y, &room, &y_info.id, Ok(seat(&y_info, vec![(x_info.clone(), "node-a".into())])), now);
        let out = na.on_relay("node-b", &room, None, ServerMessage::PeerJoined { peer: x_info.clone() }, now);
        assert!(out.contains(&Output::Close { conn: x, reason: "resumed on another node".into() }), "{out:?}");
        assert!(out.contains(&Output::Unpublish { room: room.clone(), peer: x_info.id.clone() }));
        assert_eq!(sends_to(&out, y), vec![ServerMessage::PeerJoined { peer: x_info.clone() }], "no peer-left");
        assert!(!out.iter().any(|o| matches!(o, Output::Release { .. } | Output::Relay { .. })), "{out:?}");
        // y's signals to x now go to node b.
        let out = na.on_message(y, &json!({"type":"signal","to":x_info.id,"data":{}}).to_string(), now);
        assert_eq!(relays(&out).into_iter().map(|(n, _, _)| n).collect::<Vec<_>>(), vec!["node-b".to_owned()]);
    }
}

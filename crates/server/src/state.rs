//! What the HTTP and WebSocket handlers share.

use crate::cluster::{Cluster, Command};
use crate::config::ServeArgs;
use crate::connections::ConnectionGate;
use crate::ice::IceServers;
use crate::media_sessions::{Completion, MediaSessions};
use crate::outbox::{Outbound, OutboxSender};
use crate::placement::{MediaRequest, Moved};
use callsight_media::{DetectionEvent, MediaHub, ParticipantKey, ServerOffer};
use callsight_signal::protocol::parse_client;
use callsight_signal::{
    redact, ConnId, ErrorCode, Hub, MemoryRoomStore, Output, PeerId, PeerInfo, ResumeKey, RoomId, Seat, SeatRefusal,
    ServerMessage,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub struct AppState {
    signaling: Mutex<Signaling>,
    pub connections: Arc<ConnectionGate>,
    /// Origins allowed to open `/ws` besides the server's own (lower case, no trailing `/`).
    pub allowed_origins: Vec<String>,
    pub max_outbox_bytes: usize,
    /// Signaling bytes per second per connection (sustained, burst); beyond, reading pauses.
    pub read_budget: (f64, f64),
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub max_message_bytes: usize,
    /// Shows `/healthz`'s details to remote callers that present it.
    pub health_key: Option<Vec<u8>>,
    /// Send `Strict-Transport-Security` (https with a real certificate).
    pub hsts: bool,
    /// STUN and TURN for the browsers (TURN credentials only in `joined`).
    pub ice: IceServers,
    /// The media leg and its detector; `None` with `--no-media`.
    pub media: Option<Media>,
    /// The STUN server's counters, when it runs.
    pub stun: Option<Arc<crate::stun::StunCounters>>,
    /// What `/metrics` shows.
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    /// WHIP ingest sessions (participants without a WebSocket).
    pub whip: crate::whip::Whip,
    /// WHEP viewing sessions (players outside the room).
    pub whep: crate::whep::Whep,
    /// Rooms shared with other nodes through Redis (`--redis`).
    pub cluster: Option<Arc<Cluster>>,
}

/// Who gets what: ICE servers (with TURN credentials), `/healthz` details, rooms.
pub struct Access {
    pub ice: IceServers,
    pub health_key: Option<Vec<u8>>,
    /// Who may join which room (`--require-token`), with which rights.
    pub rooms: Box<dyn callsight_signal::Admission>,
}

pub struct Media {
    pub hub: MediaHub,
    pub detector: Arc<callsight_vision::Detector>,
}

struct Signaling {
    hub: Hub,
    outboxes: HashMap<ConnId, OutboxSender>,
    /// Each connection's client address.
    clients: HashMap<ConnId, IpAddr>,
    media_sessions: MediaSessions,
    /// Connections dropped for a full outbox, still to be taken out of the hub.
    overflowed: Vec<ConnId>,
    /// The host name each connection's browser used to reach us (its STUN URL names it).
    hosts: HashMap<ConnId, String>,
}

/// Who asked for media work: a connection here (none for a departure), or a participant
/// on another node (relayed through Redis).
enum Asker {
    Here(Option<ConnId>),
    Node(String),
}

impl AppState {
    /// `resume_key`: the key of resume tokens (`state_dir`), kept across restarts.
    pub fn new(
        args: &ServeArgs,
        access: Access,
        media: Option<Media>,
        resume_key: ResumeKey,
        stun: Option<Arc<crate::stun::StunCounters>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let Access { ice, health_key, rooms } = access;
        let mut hub = Hub::new(args.limits(), Box::<MemoryRoomStore>::default())
            .with_resume_key(resume_key.clone(), Instant::now())
            .with_admission(rooms);
        if let Some(cluster) = &cluster {
            hub = hub.with_node(cluster.node.clone());
        }
        AppState {
            signaling: Mutex::new(Signaling {
                hub,
                outboxes: HashMap::new(),
                clients: HashMap::new(),
                media_sessions: MediaSessions::new(args.media_session_caps()),
                overflowed: Vec::new(),
                hosts: HashMap::new(),
            }),
            connections: ConnectionGate::new(args.connection_limits()),
            allowed_origins: args.allowed_origins.iter().map(|o| crate::http::normalise_origin(o)).collect(),
            max_outbox_bytes: args.max_outbox_bytes,
            read_budget: (args.max_bytes_per_sec as f64, args.max_bytes_burst as f64),
            heartbeat_interval: Duration::from_secs_f64(args.heartbeat_secs.max(0.05)),
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout_secs.max(0.1)),
            max_message_bytes: args.max_message_bytes,
            health_key,
            hsts: args.tls_cert.is_some(),
            ice,
            metrics: Arc::new(crate::metrics::ServerMetrics::new(media.as_ref().map(|m| &m.hub), cluster.as_deref())),
            media,
            whip: crate::whip::Whip::new(&args.whip, args.require_token, &resume_key),
            whep: crate::whep::Whep::new(&args.whep),
            stun,
            cluster,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Signaling> {
        // A panic while holding the lock would be a bug in the hub; keep serving the
        // other rooms rather than poisoning every later request.
        self.signaling.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn room_capacity(&self) -> usize {
        self.lock().hub.limits().room_capacity
    }

    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.hub.connection_count(), s.hub.room_count())
    }

    /// What a room token grants in `room` (WHEP viewers: authorised like a join, not joined).
    pub fn grant_for(&self, room: &RoomId, token: &str) -> Result<callsight_signal::Grant, callsight_signal::Refusal> {
        self.lock().hub.grant_for(room, Some(token))
    }

    /// Whether `room` has members on this node (or, with `--redis`, guests whose media
    /// runs here); with `peer`, whether that one is among them.
    pub fn has_member(&self, room: &RoomId, peer: Option<&PeerId>) -> bool {
        let here = {
            let s = self.lock();
            match peer {
                Some(p) => s.hub.connection_of(room, p).is_some(),
                None => !s.hub.room_connections(room).is_empty(),
            }
        };
        here || self.cluster.as_ref().is_some_and(|c| match peer {
            Some(p) => c.guest_node(&ParticipantKey { room: room.to_string(), participant: p.to_string() }).is_some(),
            None => !c.guest_nodes(room.as_str()).is_empty(),
        })
    }

    /// Whether `conn` stayed outside any room past the join timeout.
    pub fn join_deadline_passed(&self, conn: ConnId) -> bool {
        self.lock().hub.join_deadline_passed(conn, Instant::now())
    }

    /// A new WebSocket from `client`; `host` is the host name its browser used to reach us.
    pub fn connect(&self, outbox: OutboxSender, client: IpAddr, host: Option<String>) -> ConnId {
        let mut s = self.lock();
        let id = s.hub.connect(Instant::now());
        s.outboxes.insert(id, outbox);
        s.clients.insert(id, client);
        if let Some(host) = host {
            s.hosts.insert(id, host);
        }
        id
    }

    /// One frame from `conn`. The JSON parse, the costly part, runs outside the lock so
    /// one room's flood of large messages doesn't hold up the others.
    pub fn on_message(self: &Arc<Self>, conn: ConnId, text: &str) {
        {
            let mut s = self.lock();
            if let Err(out) = s.hub.admit(conn, text.len(), Instant::now()) {
                return self.apply(&mut s, out);
            }
        }
        let parsed = parse_client(text);
        let mut s = self.lock();
        let out = s.hub.handle(conn, parsed, Instant::now());
        self.apply(&mut s, out);
    }

    /// A message of a participant without a WebSocket (WHIP), already parsed.
    pub fn handle_client(self: &Arc<Self>, conn: ConnId, msg: callsight_signal::ClientMessage) {
        let mut s = self.lock();
        let out = s.hub.handle(conn, Ok(msg), Instant::now());
        self.apply(&mut s, out);
    }

    pub fn disconnect(self: &Arc<Self>, conn: ConnId) {
        let mut s = self.lock();
        let out = s.hub.disconnect(conn, Instant::now());
        self.apply(&mut s, out);
        s.outboxes.remove(&conn);
        s.clients.remove(&conn);
        s.hosts.remove(&conn);
    }

    /// Carries out the hub's outputs. Media work is ordered per participant under the
    /// lock: publishes are recorded before they are handed over, unpublishes are sent at
    /// once, and a publish that completes for a participant who left is undone
    /// ([`MediaSessions`]). A `joined` gets the ICE servers (with TURN credentials) of the
    /// participant it admits.
    fn apply(self: &Arc<Self>, s: &mut Signaling, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { to, mut msg } => {
                    if let ServerMessage::Joined { room, id, ice_servers, ingest_key, view_key, .. } = &mut msg {
                        tracing::info!(room = %redact::room_tag(room), participant = %id, "joined");
                        let host = s.hosts.get(&to).map(String::as_str);
                        *ice_servers = self.ice.for_participant(id.as_str(), host, SystemTime::now());
                        *ingest_key = self.whip.ingest_key(room);
                        *view_key = self.whip.view_key(room);
                    }
                    s.send(to, Outbound::Text(msg.to_json()))
                }
                Output::Close { conn, reason } => s.send(conn, Outbound::Close(reason)),
                Output::Publish { conn, room, peer, sdp, subscribe, analyse, receive_only } => {
                    let client = s.clients.get(&conn).copied().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                    let request = MediaRequest::Publish { sdp, subscribe, analyse, receive_only, client };
                    self.media_request(s, Some(conn), room, peer, request);
                }
                Output::Renegotiate { conn, room, peer, sdp, offer } => {
                    self.media_request(s, Some(conn), room, peer, MediaRequest::Renegotiate { sdp, offer });
                }
                Output::TrackSettings { room, peer, mid, width, height } => {
                    self.media_request(s, None, room, peer, MediaRequest::TrackSettings { mid, width, height });
                }
                output @ (Output::Reserve { .. } | Output::Release { .. }) => {
                    let refused = match &self.cluster {
                        Some(cluster) => cluster.submit(Command::Seat(output)),
                        None => Some(Command::Seat(output)),
                    };
                    // A full queue: a join is refused at once; a seat left behind is
                    // freed by the next sync.
                    if let Some(Command::Seat(Output::Reserve { conn, room, peer, .. })) = refused {
                        let why = SeatRefusal::Unavailable("too many joins waiting for Redis".into());
                        let out = s.hub.reserved(conn, &room, &peer.id, Err(why), Instant::now());
                        self.apply(s, out);
                    }
                }
                Output::Relay { node, room, to, msg } => {
                    if let Some(cluster) = &self.cluster {
                        cluster.relay(node, &room, to.as_ref(), msg);
                    }
                }
                Output::Unpublish { room, peer } => {
                    tracing::info!(room = %room.tag(), participant = %peer, "left");
                    self.media_request(s, None, room, peer, MediaRequest::Unpublish);
                }
            }
        }
        self.drop_overflowed(s);
    }

    /// Routes a participant's media request (`conn`: its connection here; none for an
    /// unpublish). With `--redis`, through the cluster worker, which places the room's
    /// media on one node (this one or another, `placement`); without, to this node's
    /// media leg. (A WHIP encoder is admitted only on the node that runs its room's
    /// media, `whip::elsewhere`, so its publish stays here and its `PATCH`/`DELETE` find it.)
    fn media_request(
        self: &Arc<Self>,
        s: &mut Signaling,
        conn: Option<ConnId>,
        room: RoomId,
        peer: PeerId,
        request: MediaRequest,
    ) {
        if let Some(cluster) = &self.cluster {
            let Some(Command::Media { conn, room, peer, request }) =
                cluster.submit(Command::Media { conn, room, peer, request })
            else {
                return;
            };
            // The queue is full. A publish or renegotiation is refused; a departure is
            // carried out here (its session elsewhere ends with its ICE timeout); a tile
            // size is a hint, dropped (the page sends it again when the tile changes).
            if matches!(request, MediaRequest::TrackSettings { .. }) {
                return;
            }
            if !matches!(request, MediaRequest::Unpublish) {
                let msg = ServerMessage::error(ErrorCode::MediaUnavailable, "too many requests waiting for Redis");
                return Self::reply(s, &Asker::Here(conn), &room, &peer, msg, None);
            }
            return self.run_media(s, Asker::Here(conn), room, peer, request);
        }
        self.run_media(s, Asker::Here(conn), room, peer, request);
    }

    /// Carries out a media request on this node's media leg. Media work is ordered per
    /// participant under the lock: publishes are recorded before they are handed over,
    /// unpublishes are sent at once, and a publish that completes for a participant who
    /// left is undone ([`MediaSessions`]).
    fn run_media(self: &Arc<Self>, s: &mut Signaling, asker: Asker, room: RoomId, peer: PeerId, request: MediaRequest) {
        let key = ParticipantKey { room: room.to_string(), participant: peer.to_string() };
        let cluster = self.cluster.as_deref();
        let Some(media) = &self.media else {
            if !matches!(request, MediaRequest::Unpublish) {
                let msg = ServerMessage::error(ErrorCode::MediaUnavailable, "this server runs without the media leg");
                Self::reply(s, &asker, &room, &peer, msg, cluster);
            }
            return;
        };
        match request {
            MediaRequest::Publish { sdp, subscribe, analyse, receive_only, client } => {
                if let Err(why) = s.media_sessions.publishing(&key, client) {
                    let msg = ServerMessage::error(ErrorCode::MediaUnavailable, format!("publish refused: {why}"));
                    return Self::reply(s, &asker, &room, &peer, msg, cluster);
                }
                let (hub, state) = (media.hub.clone(), self.clone());
                tokio::spawn(async move {
                    let result = if receive_only {
                        hub.subscribe_only(key.clone(), &sdp).await
                    } else if subscribe {
                        hub.publish_and_subscribe(key.clone(), &sdp, analyse).await
                    } else {
                        hub.publish(key.clone(), &sdp).await
                    };
                    let mut s = state.lock();
                    let reply = match (s.media_sessions.published(&key, result.is_ok()), result) {
                        (Completion::Unpublish, _) => {
                            hub.unpublish(&key);
                            ServerMessage::error(ErrorCode::NotJoined, "left the room before the publish completed")
                        }
                        (Completion::Answer, Ok(sdp)) => ServerMessage::PublishAnswer { sdp },
                        (Completion::Answer, Err(e)) => {
                            tracing::warn!(participant = %peer, "publish refused: {e}");
                            ServerMessage::error(media_error_code(&e), format!("publish refused: {e}"))
                        }
                    };
                    Self::reply(&mut s, &asker, &room, &peer, reply, state.cluster.as_deref());
                    state.drop_overflowed(&mut s);
                });
            }
            MediaRequest::Renegotiate { sdp, offer } => {
                let (hub, state) = (&media.hub, self.clone());
                // Answers and offers of one participant keep their order: the media
                // leg takes commands in the order they were sent.
                let done: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = if offer {
                    let offered = hub.renegotiate(key, &sdp);
                    Box::pin(async move { offered.await.map(|sdp| Some(ServerMessage::Answer { sdp })) })
                } else {
                    let answered = hub.answer(key, &sdp);
                    Box::pin(async move { answered.await.map(|()| None) })
                };
                tokio::spawn(async move {
                    let reply = match done.await {
                        Ok(Some(msg)) => msg,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::debug!(participant = %peer, "renegotiation refused: {e}");
                            ServerMessage::error(media_error_code(&e), format!("renegotiation refused: {e}"))
                        }
                    };
                    let mut s = state.lock();
                    Self::reply(&mut s, &asker, &room, &peer, reply, state.cluster.as_deref());
                    state.drop_overflowed(&mut s);
                });
            }
            MediaRequest::Unpublish => {
                s.media_sessions.unpublished(&key);
                media.hub.unpublish(&key);
            }
            MediaRequest::TrackSettings { mid, width, height } => media.hub.track_settings(key, &mid, width, height),
        }
    }

    /// Sends `msg` to whoever asked: a connection here, or participant `peer` of `room`
    /// on another node (relayed).
    fn reply(
        s: &mut Signaling,
        asker: &Asker,
        room: &RoomId,
        peer: &PeerId,
        msg: ServerMessage,
        cluster: Option<&Cluster>,
    ) {
        match (asker, cluster) {
            (Asker::Here(Some(conn)), _) => s.send(*conn, Outbound::Text(msg.to_json())),
            (Asker::Node(node), Some(cluster)) => cluster.relay(node.clone(), room, Some(peer), msg),
            _ => {}
        }
    }

    /// Shared rooms: a media request of participant `peer` (on node `from`) for this
    /// node's media leg, which runs the room's media.
    pub fn media_from(self: &Arc<Self>, from: &str, room: RoomId, peer: PeerId, request: MediaRequest) {
        let Some(cluster) = &self.cluster else { return };
        let key = ParticipantKey { room: room.to_string(), participant: peer.to_string() };
        if !Self::own_session(cluster, &key, from, &request) {
            return tracing::debug!(participant = %peer, node = from, "a stale unpublish ignored");
        }
        let mut s = self.lock();
        self.run_media(&mut s, Asker::Node(from.to_owned()), room, peer, request);
        self.drop_overflowed(&mut s);
    }

    /// Records who published `key` here (node `from`); says whether `request` may go on:
    /// an unpublish only from the node that published the session — a stale connection's
    /// departure elsewhere, after the participant resumed and published again, is not.
    fn own_session(cluster: &Cluster, key: &ParticipantKey, from: &str, request: &MediaRequest) -> bool {
        match request {
            MediaRequest::Publish { .. } => {
                cluster.host(key, from);
                true
            }
            MediaRequest::Unpublish => cluster.unhost(key, from),
            MediaRequest::Renegotiate { .. } | MediaRequest::TrackSettings { .. } => true,
        }
    }

    /// Shared rooms: a media request the cluster worker placed on this node.
    pub fn media_here(self: &Arc<Self>, conn: Option<ConnId>, room: RoomId, peer: PeerId, request: MediaRequest) {
        if let Some(cluster) = &self.cluster {
            let key = ParticipantKey { room: room.to_string(), participant: peer.to_string() };
            if !Self::own_session(cluster, &key, &cluster.node, &request) {
                return tracing::debug!(participant = %peer, "a stale unpublish ignored");
            }
        }
        let mut s = self.lock();
        self.run_media(&mut s, Asker::Here(conn), room, peer, request);
        self.drop_overflowed(&mut s);
    }

    /// Shared rooms: the media of `moved` no longer runs where it did (its node died, or
    /// this node lost the room's lease). Any session of theirs here ends; participants
    /// here are told `media-moved` (their pages publish again and are placed anew), and
    /// guests' nodes are told to tell theirs.
    pub fn media_moved(self: &Arc<Self>, moved: Moved) {
        let keys: Vec<ParticipantKey> = moved.here.iter().chain(moved.guests.iter().map(|(k, _)| k)).cloned().collect();
        self.end_sessions(&keys);
        let mut s = self.lock();
        for key in &moved.here {
            let (Some(room), Some(peer)) = (RoomId::parse(&key.room), PeerId::parse(&key.participant)) else {
                continue;
            };
            tracing::info!(room = %room.tag(), participant = %peer, "media moved: publish again");
            if let Some(conn) = s.hub.connection_of(&room, &peer) {
                s.send(conn, Outbound::Text(ServerMessage::MediaMoved {}.to_json()));
            }
        }
        if let Some(cluster) = &self.cluster {
            for (key, node) in moved.guests {
                let (Some(room), Some(peer)) = (RoomId::parse(&key.room), PeerId::parse(&key.participant)) else {
                    continue;
                };
                cluster.relay(node, &room, Some(&peer), ServerMessage::MediaMoved {});
            }
        }
        self.drop_overflowed(&mut s);
    }

    /// Shared rooms: ends these sessions of this node's media leg (their participants'
    /// node died).
    pub fn end_sessions(&self, keys: &[ParticipantKey]) {
        let mut s = self.lock();
        for key in keys {
            s.media_sessions.unpublished(key);
            if let Some(media) = &self.media {
                media.hub.unpublish(key);
            }
        }
    }

    /// Media sessions this node runs (its load figure for placement).
    pub fn media_load(&self) -> Option<usize> {
        self.media.as_ref().map(|_| self.lock().media_sessions.len())
    }

    /// Connections whose outbox overflowed leave the hub now (their peers hear
    /// `peer-left` at once); their tasks end when their stalled write gives up.
    fn drop_overflowed(self: &Arc<Self>, s: &mut Signaling) {
        while let Some(conn) = s.overflowed.pop() {
            let out = s.hub.disconnect(conn, Instant::now());
            s.clients.remove(&conn);
            s.hosts.remove(&conn);
            self.apply(s, out);
        }
    }

    /// Delivers the media leg's renegotiation offers to their participants (`offer`),
    /// until the media leg stops.
    pub async fn forward_offers(self: Arc<Self>) {
        let Some(mut offers) = self.media.as_ref().and_then(|m| m.hub.offers()) else { return };
        while let Some(offer) = offers.recv().await {
            self.deliver_offer(offer);
        }
    }

    fn deliver_offer(self: &Arc<Self>, offer: ServerOffer) {
        let (Some(room), Some(peer)) = (RoomId::parse(&offer.key.room), PeerId::parse(&offer.key.participant)) else {
            return;
        };
        let msg = ServerMessage::Offer { sdp: offer.sdp, tracks: offer.tracks };
        let mut s = self.lock();
        if let Some(conn) = s.hub.connection_of(&room, &peer) {
            s.send(conn, Outbound::Text(msg.to_json()));
        } else if let Some(cluster) = &self.cluster {
            // A guest: its WebSocket is on another node.
            if let Some(node) = cluster.guest_node(&offer.key) {
                cluster.relay(node, &room, Some(&peer), msg);
            }
        }
        self.drop_overflowed(&mut s);
    }

    /// Sends every detection event to the participants of its room, until the media leg stops.
    pub async fn forward_detections(self: Arc<Self>) {
        let Some(media) = &self.media else { return };
        let mut events = media.hub.events();
        loop {
            match events.recv().await {
                Ok(event) => self.deliver(&event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("detection forwarding fell behind; skipped {n} events")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn deliver(self: &Arc<Self>, event: &DetectionEvent) {
        let Some(room) = RoomId::parse(&event.room) else { return };
        // Serialised once, sent to everyone in the room.
        let text = ServerMessage::Detections(event.result.clone()).to_json();
        let mut s = self.lock();
        for conn in s.hub.room_subscribers(&room) {
            s.send(conn, Outbound::Text(text.clone()));
        }
        if let Some(cluster) = &self.cluster {
            // Other nodes with participants in the room, and those of its guests.
            let mut nodes = s.hub.remote_nodes(&room);
            nodes.extend(cluster.guest_nodes(&event.room));
            for node in nodes {
                cluster.relay(node, &room, None, ServerMessage::Detections(event.result.clone()));
            }
        }
        self.drop_overflowed(&mut s);
        drop(s);
        if let (Some(m), false) = (&self.media, self.whep.is_empty()) {
            m.hub.deliver_detections(&event.room, &event.result.participant, text.into());
        }
        if let Some(m) = &self.media {
            m.hub.metrics().observe(callsight_media::Stage::Send, event.ready.elapsed());
        }
    }

    /// Shared rooms: Redis's answer to a join's seat request.
    pub fn seat_reserved(
        self: &Arc<Self>,
        conn: ConnId,
        room: &RoomId,
        peer: &PeerId,
        result: Result<Seat, SeatRefusal>,
    ) {
        let mut s = self.lock();
        let out = s.hub.reserved(conn, room, peer, result, Instant::now());
        self.apply(&mut s, out);
    }

    /// Shared rooms: a message another node relayed to this one.
    pub fn relayed(self: &Arc<Self>, from: &str, room: &RoomId, to: Option<&PeerId>, msg: ServerMessage) {
        let mut s = self.lock();
        let out = s.hub.on_relay(from, room, to, msg, Instant::now());
        self.apply(&mut s, out);
    }

    /// Shared rooms: the rooms this node takes part in, with its own participants.
    pub fn local_rooms(&self) -> Vec<(RoomId, Vec<PeerInfo>)> {
        self.lock().hub.local_rooms()
    }

    /// Shared rooms: `room`'s members as Redis listed them at `asked_at` (`drop_missing`:
    /// see [`callsight_signal::Hub::sync_room`]).
    pub fn sync_room(
        self: &Arc<Self>,
        room: &RoomId,
        members: Vec<(PeerInfo, String)>,
        asked_at: Instant,
        drop_missing: bool,
    ) {
        let mut s = self.lock();
        let out = s.hub.sync_room(room, members, asked_at, drop_missing, Instant::now());
        self.apply(&mut s, out);
    }
}

impl Signaling {
    fn send(&mut self, to: ConnId, frame: Outbound) {
        let Some(outbox) = self.outboxes.get(&to) else { return };
        if outbox.push(frame).is_err() {
            tracing::warn!(conn = to.0, "outbox over its byte budget; dropping the connection");
            self.outboxes.remove(&to);
            self.overflowed.push(to);
        }
    }
}

/// The error code a media leg refusal gets on the wire: `forbidden` when the participant
/// may not do what it asked (send media without the right to publish), else
/// `media-unavailable`.
fn media_error_code(e: &callsight_media::MediaError) -> ErrorCode {
    match e {
        callsight_media::MediaError::Forbidden(_) => ErrorCode::Forbidden,
        _ => ErrorCode::MediaUnavailable,
    }
}

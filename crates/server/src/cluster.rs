//! Rooms shared by several nodes through Redis (`--redis`).
//!
//! The hub stays sans-IO: it asks for seats ([`Output::Reserve`]), gives them back
//! ([`Output::Release`]) and hands over messages for participants on other nodes
//! ([`Output::Relay`]); this module carries those out against Redis and feeds the
//! answers back into the hub through [`AppState`].
//!
//! - Membership and capacity: one hash per room (participant id → member JSON with its
//!   node and a joining sequence number). A seat is taken by a Lua script (`join.lua`),
//!   so two joiners racing for the last seat on two nodes cannot both win.
//! - Presence: each node keeps a key with a TTL (`--redis-presence-ttl-ms`), refreshed
//!   every third of it by `sync.lua`, which also frees dead nodes' seats, puts back this
//!   node's participants (after a Redis restart) and returns the room's members, from
//!   which the hub learns who came and went on other nodes.
//! - Relay: each node subscribes to its own channel; a message for a participant on
//!   node N is published to N's channel.
//! - Resume: a participant's departure (its connection dropped, or its node died) is a
//!   key with the resume grace as TTL (`release.lua`, `join.lua`, `sync.lua`), so its
//!   resume token (checked by each node with the shared resume key) gives its id back on
//!   any node; a resume on another node while the old seat is still held moves the seat.
//!
//! - Media placement: a room's media runs on one node, the holder of the room's lease
//!   (`place.lua`: the live holder, else the least loaded live node with a media leg,
//!   by the session counts each media node writes every heartbeat). A participant's
//!   `publish`, `offer`, `answer` and departure go to that node (relayed when it is
//!   another), whose replies, server offers and detections come back the same way. The
//!   media node renews its leases every heartbeat (`lease.lua`); the others read them,
//!   and when a holder changes (a dead node's lease lapsed) their participants are told
//!   `media-moved` and publish again ([`crate::placement`]).
//!
//! Every Redis command runs on one ordered worker, so a seat taken, the `peer-joined`
//! relays that follow it and a later release keep their order, and so do a
//! participant's media requests. Relays queued one after another go out in one pipeline.

use crate::placement::{MediaRequest, Moved, Placement};
use crate::state::AppState;
use callsight_media::ParticipantKey;
use callsight_signal::{ConnId, Output, PeerId, PeerInfo, ResumeKey, RoomId, Seat, SeatRefusal, ServerMessage};
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const ROOM_PREFIX: &str = "callsight:room:";
const NODE_PREFIX: &str = "callsight:node:";
const RELAY_PREFIX: &str = "callsight:relay:";
const SEQUENCE_KEY: &str = "callsight:seq";
/// Departures (resumable ids): `callsight:gone:{room}:{participant}`, TTL the resume grace.
const GONE_PREFIX: &str = "callsight:gone:";
/// The fingerprint of the resume key of the first node: every node must have the same.
const RESUME_KEY_ID: &str = "callsight:resume-key-id";
/// A room's media lease: `callsight:media:{room}` → the node running its media.
const LEASE_PREFIX: &str = "callsight:media:";
/// Each media node's load (media sessions it runs), for placement.
const LOAD_KEY: &str = "callsight:load";
/// Each node's `--public-url`, for WHIP/WHEP redirects.
const URLS_KEY: &str = "callsight:urls";
/// At most this many relays go to Redis in one pipeline (one round trip).
const MAX_PIPELINE: usize = 256;

/// Work for the Redis worker.
#[allow(clippy::large_enum_variant)] // `Seat` holds a hub `Output` (a `ServerMessage`): moved once per join or leave
pub enum Command {
    /// The hub's [`Output::Reserve`] or [`Output::Release`].
    Seat(Output),
    Publish {
        node: String,
        payload: String,
    },
    /// Refresh this node's presence and reconcile its rooms.
    Sync,
    /// A participant's media request, to the node running its room's media (`conn`: its
    /// connection here, for the replies; none for a departure).
    Media {
        conn: Option<ConnId>,
        room: RoomId,
        peer: PeerId,
        request: MediaRequest,
    },
}

/// A relayed message on a node's channel: a message for participants here, or a media
/// request of participant `to` for this node's media leg.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    msg: Option<ServerMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media: Option<MediaRequest>,
}

/// A seat as `join.lua` and `sync.lua` store it.
#[derive(Deserialize)]
struct Member {
    id: String,
    #[serde(default)]
    name: Option<String>,
    node: String,
    #[serde(default)]
    seq: u64,
}

pub struct ClusterConfig {
    pub url: String,
    pub presence_ttl: Duration,
    pub timeout: Duration,
    pub queue: usize,
    /// How long a departed participant's id stays resumable (`--resume-grace`).
    pub resume_grace: Duration,
    /// Where this node is reachable itself (`--public-url`).
    pub public_url: Option<String>,
}

/// Where a room's media runs, for a WHIP or WHEP request.
#[derive(Debug, PartialEq, Eq)]
pub enum Located {
    Here,
    /// On node `node`, reachable at `url` (its `--public-url`) when it has one.
    Elsewhere {
        node: String,
        url: Option<String>,
    },
}

pub struct Cluster {
    /// This node's id (random per start).
    pub node: String,
    client: redis::Client,
    conn: ConnectionManager,
    presence_ttl: Duration,
    timeout: Duration,
    queue: mpsc::Sender<Command>,
    receiver: Mutex<Option<mpsc::Receiver<Command>>>,
    /// The last command (or heartbeat) reached Redis.
    store_up: AtomicBool,
    /// This node's relay channel is subscribed.
    subscribed: AtomicBool,
    /// When Redis last came back after being down: for one presence TTL after that,
    /// participants missing from Redis are not dropped (their nodes may not have put
    /// them back yet).
    recovered_at: Mutex<Option<Instant>>,
    resume_grace: Duration,
    /// A fingerprint of this node's resume key (not the key).
    resume_key_id: String,
    /// Whether Redis holds another node's resume key fingerprint (tokens then fail
    /// across nodes).
    resume_key_mismatch: AtomicBool,
    metrics: ClusterMetrics,
    join_script: redis::Script,
    sync_script: redis::Script,
    release_script: redis::Script,
    place_script: redis::Script,
    lease_script: redis::Script,
    /// Who runs whose media (rooms placed by this node and guests it runs).
    placement: Mutex<Placement>,
    public_url: Option<String>,
    /// The other nodes' `--public-url` origins (`scheme://host[:port]`), read each heartbeat.
    peer_origins: Mutex<Vec<String>>,
}

/// What `/metrics` and `/healthz` show of Redis.
#[derive(Default)]
struct ClusterMetrics {
    /// 1 while Redis answers and this node hears its relays.
    up: Gauge,
    relays_sent: Counter,
    relays_received: Counter,
    /// Relays not sent: Redis down or the queue full.
    relays_dropped: Counter,
    /// Redis commands that failed or timed out.
    errors: Counter,
}

impl Cluster {
    /// Connects lazily: a node starts while Redis is down and says so in `/healthz`.
    pub fn new(config: &ClusterConfig, resume_key: &ResumeKey) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| anyhow::anyhow!("--redis {:?} is not a Redis URL: {e}", config.url))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        let (queue, receiver) = mpsc::channel(config.queue.max(1));
        let node = callsight_signal::ids::random_node_id();
        Ok(Arc::new(Cluster {
            placement: Mutex::new(Placement::new(node.clone())),
            node,
            client,
            conn,
            presence_ttl: config.presence_ttl,
            timeout: config.timeout,
            queue,
            receiver: Mutex::new(Some(receiver)),
            store_up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            recovered_at: Mutex::new(None),
            resume_grace: config.resume_grace,
            resume_key_id: resume_key.fingerprint(),
            resume_key_mismatch: AtomicBool::new(false),
            metrics: ClusterMetrics::default(),
            join_script: redis::Script::new(include_str!("cluster/join.lua")),
            sync_script: redis::Script::new(include_str!("cluster/sync.lua")),
            release_script: redis::Script::new(include_str!("cluster/release.lua")),
            place_script: redis::Script::new(include_str!("cluster/place.lua")),
            lease_script: redis::Script::new(include_str!("cluster/lease.lua")),
            public_url: config.public_url.clone(),
            peer_origins: Mutex::new(Vec::new()),
        }))
    }

    /// Whether Redis answers and this node hears its relays.
    pub fn up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> serde_json::Value {
        let m = &self.metrics;
        serde_json::json!({
            "node": self.node,
            "up": self.up(),
            "store": self.store_up.load(Ordering::Relaxed),
            "subscribed": self.subscribed.load(Ordering::Relaxed),
            "relays_sent": m.relays_sent.get(),
            "relays_received": m.relays_received.get(),
            "relays_dropped": m.relays_dropped.get(),
            "errors": m.errors.get(),
            "resume_key_shared": !self.resume_key_mismatch.load(Ordering::Relaxed),
            "media_rooms": self.placement().leases().0.len(),
        })
    }

    /// Adds `callsight_redis_*` to `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        let sub = registry.sub_registry_with_prefix("callsight_redis");
        sub.register(
            "up",
            "1 while Redis answers and this node hears its relays (0: new joins are refused)",
            m.up.clone(),
        );
        sub.register("relays_sent", "Messages published to other nodes", m.relays_sent.clone());
        sub.register("relays_received", "Messages relayed here by other nodes", m.relays_received.clone());
        sub.register(
            "relays_dropped",
            "Messages for other nodes not sent: Redis down or the queue full",
            m.relays_dropped.clone(),
        );
        sub.register("errors", "Redis commands that failed or timed out", m.errors.clone());
    }

    fn refresh_up(&self) {
        self.metrics.up.set(i64::from(self.up()));
    }

    /// Queues `command`; gives it back when the queue is full (or the worker is gone).
    pub fn submit(&self, command: Command) -> Option<Command> {
        self.queue.try_send(command).err().map(|e| match e {
            mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
        })
    }

    /// Queues `msg` for node `node` (participant `to` of `room`, or all of its participants there).
    pub fn relay(&self, node: String, room: &RoomId, to: Option<&PeerId>, msg: ServerMessage) {
        let payload = self.envelope(room, to, Some(msg), None);
        if self.submit(Command::Publish { node, payload }).is_some() {
            self.metrics.relays_dropped.inc();
        }
    }

    fn envelope(
        &self,
        room: &RoomId,
        to: Option<&PeerId>,
        msg: Option<ServerMessage>,
        media: Option<MediaRequest>,
    ) -> String {
        let to = to.map(|p| p.to_string());
        let envelope = Envelope { from: self.node.clone(), room: room.to_string(), to, msg, media };
        serde_json::to_string(&envelope).unwrap_or_default()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `key`'s media now runs here for its WebSocket on node `from` (maybe this one).
    pub fn host(&self, key: &ParticipantKey, from: &str) {
        self.placement().host(key, from);
    }

    /// Whether node `from` may end `key`'s session here; if so, it is forgotten.
    pub fn unhost(&self, key: &ParticipantKey, from: &str) -> bool {
        self.placement().unhost(key, from)
    }

    /// The node of guest `key`, if its media runs here.
    pub fn guest_node(&self, key: &ParticipantKey) -> Option<String> {
        self.placement().guest_node(key).map(str::to_owned)
    }

    /// The nodes of `room`'s guests.
    pub fn guest_nodes(&self, room: &str) -> std::collections::BTreeSet<String> {
        self.placement().guest_nodes(room)
    }

    /// Starts the worker, the presence heartbeat and the relay subscriber.
    pub fn spawn(self: &Arc<Self>, state: Arc<AppState>) {
        let Some(receiver) = self.receiver.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        tokio::spawn(self.clone().work(receiver, state.clone()));
        tokio::spawn(self.clone().heartbeat());
        tokio::spawn(self.clone().subscribe(state));
    }

    async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.presence_ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A full queue is busy with Redis already; the next tick tries again.
            let _ = self.submit(Command::Sync);
        }
    }

    async fn work(self: Arc<Self>, mut receiver: mpsc::Receiver<Command>, state: Arc<AppState>) {
        // A command taken from the queue while gathering relays, to run next.
        let mut next: Option<Command> = None;
        loop {
            let command = match next.take() {
                Some(c) => c,
                None => match receiver.recv().await {
                    Some(c) => c,
                    None => return,
                },
            };
            match command {
                Command::Seat(Output::Reserve { conn, room, peer, capacity, resume }) => {
                    let result = if self.up() {
                        self.reserve(&room, &peer, capacity, resume.as_ref()).await
                    } else {
                        Err(SeatRefusal::Unavailable("Redis is unreachable; try again shortly".into()))
                    };
                    state.seat_reserved(conn, &room, &peer.id, result);
                }
                Command::Seat(Output::Release { room, peer, resumable }) => {
                    // While Redis is down, the next sync after it returns frees the seat.
                    if self.store_up.load(Ordering::Relaxed) {
                        let mut invocation = self.release_script.key(room_key(&room));
                        invocation
                            .arg(peer.as_str())
                            .arg(&self.node)
                            .arg(gone_prefix(&room))
                            .arg(self.grace_ms())
                            .arg(if resumable { "1" } else { "0" });
                        let mut conn = self.conn.clone();
                        let _ = self.call(async move { invocation.invoke_async::<i64>(&mut conn).await }).await;
                    }
                }
                Command::Publish { node, payload } => {
                    // Relays waiting behind this one go out in the same round trip (a
                    // pipeline), in order; the first other command runs after them.
                    let mut batch = vec![(node, payload)];
                    while batch.len() < MAX_PIPELINE {
                        match receiver.try_recv() {
                            Ok(Command::Publish { node, payload }) => batch.push((node, payload)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.publish_all(batch).await;
                }
                Command::Seat(_) => {}
                Command::Sync => self.sync(&state).await,
                Command::Media { conn, room, peer, request } => self.media(&state, conn, room, peer, request).await,
            }
        }
    }

    /// Publishes a relay on node `node`'s channel.
    async fn publish(&self, node: String, payload: String) {
        self.publish_all(vec![(node, payload)]).await;
    }

    /// Publishes relays (node, payload) in one pipeline: one round trip, in order.
    async fn publish_all(&self, batch: Vec<(String, String)>) {
        let n = batch.len() as u64;
        if !self.store_up.load(Ordering::Relaxed) {
            self.metrics.relays_dropped.inc_by(n);
            return;
        }
        let mut pipe = redis::pipe();
        for (node, payload) in batch {
            pipe.cmd("PUBLISH").arg(format!("{RELAY_PREFIX}{node}")).arg(payload);
        }
        let mut conn = self.conn.clone();
        let sent = self.call(async move { pipe.query_async::<Vec<i64>>(&mut conn).await }).await;
        let counter = if sent.is_ok() { &self.metrics.relays_sent } else { &self.metrics.relays_dropped };
        counter.inc_by(n);
    }

    /// Sends a participant's media request to the node running its room's media: a
    /// publish places the room (`place.lua`), the rest follow the participant's route.
    async fn media(
        &self,
        state: &Arc<AppState>,
        conn: Option<ConnId>,
        room: RoomId,
        peer: PeerId,
        request: MediaRequest,
    ) {
        let key = ParticipantKey { room: room.to_string(), participant: peer.to_string() };
        let node = match &request {
            MediaRequest::Publish { .. } => {
                let node = self.place(&room).await;
                self.placement().route(&key, &node);
                node
            }
            MediaRequest::Renegotiate { .. } | MediaRequest::TrackSettings { .. } => {
                self.placement().route_of(&key).unwrap_or(&self.node).to_owned()
            }
            MediaRequest::Unpublish => self.placement().unroute(&key).unwrap_or_else(|| self.node.clone()),
        };
        if node == self.node {
            state.media_here(conn, room, peer, request);
        } else {
            tracing::debug!(room = %room.tag(), participant = %peer, media = %node, "media request relayed");
            let payload = self.envelope(&room, Some(&peer), None, Some(request));
            self.publish(node, payload).await;
        }
    }

    /// The other nodes' public origins (for this node's `connect-src`).
    pub fn peer_origins(&self) -> Vec<String> {
        self.peer_origins.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where `room`'s media runs (placing it now if nobody runs it): a WHIP or WHEP
    /// request belongs on that node.
    pub async fn locate(&self, room: &RoomId) -> Located {
        let node = self.place(room).await;
        if node == self.node {
            return Located::Here;
        }
        let mut conn = self.conn.clone();
        let asked = node.clone();
        let url =
            self.call(async move {
                redis::cmd("HGET").arg(URLS_KEY).arg(asked).query_async::<Option<String>>(&mut conn).await
            })
            .await
            .ok()
            .flatten();
        Located::Elsewhere { node, url }
    }

    /// The node that runs `room`'s media. While Redis is down, or when no node with a
    /// media leg is alive, this one (calls go on here; the lease sorts it out later).
    async fn place(&self, room: &RoomId) -> String {
        if !self.store_up.load(Ordering::Relaxed) {
            return self.node.clone();
        }
        let mut invocation = self.place_script.key(lease_key(room));
        invocation.arg(&self.node).arg(NODE_PREFIX).arg(LOAD_KEY).arg(self.presence_ttl.as_millis() as u64);
        let mut conn = self.conn.clone();
        match self.call(async move { invocation.invoke_async::<String>(&mut conn).await }).await {
            Ok(node) if !node.is_empty() => node,
            _ => self.node.clone(),
        }
    }

    /// Renews the leases of the rooms whose media runs here (and writes this node's
    /// load), reads those of rooms its participants use elsewhere, and tells whoever's
    /// media moved.
    async fn leases(&self, state: &Arc<AppState>) {
        if let Some(load) = state.media_load() {
            let mut conn = self.conn.clone();
            let node = self.node.clone();
            let _ = self
                .call(async move {
                    redis::cmd("HSET").arg(LOAD_KEY).arg(node).arg(load).query_async::<i64>(&mut conn).await
                })
                .await;
        }
        let mut conn = self.conn.clone();
        let urls =
            self.call(async move {
                redis::cmd("HGETALL").arg(URLS_KEY).query_async::<Vec<(String, String)>>(&mut conn).await
            })
            .await;
        if let Ok(urls) = urls {
            let mut origins: Vec<String> =
                urls.iter().filter(|(n, _)| *n != self.node).filter_map(|(_, u)| origin_of(u)).collect();
            origins.sort();
            origins.dedup();
            *self.peer_origins.lock().unwrap_or_else(|e| e.into_inner()) = origins;
        }
        if let Some(url) = self.public_url.clone() {
            let mut conn = self.conn.clone();
            let node = self.node.clone();
            let _ =
                self.call(async move {
                    redis::cmd("HSET").arg(URLS_KEY).arg(node).arg(url).query_async::<i64>(&mut conn).await
                })
                .await;
        }
        // Guests whose node died (its presence lapsed): their WebSockets are gone, so
        // their sessions here end (a page that reconnects elsewhere publishes again).
        let guest_nodes = self.placement().guest_nodes_all();
        for node in guest_nodes {
            let mut conn = self.conn.clone();
            let key = format!("{NODE_PREFIX}{node}");
            let Ok(alive) =
                self.call(async move { redis::cmd("EXISTS").arg(key).query_async::<i64>(&mut conn).await }).await
            else {
                return;
            };
            if alive == 0 {
                let gone = self.placement().drop_guests_of(&node);
                tracing::info!(node = %node, sessions = gone.len(), "a node died: its participants' media sessions here end");
                state.end_sessions(&gone);
            }
        }
        let (mine, elsewhere) = self.placement().leases();
        let rooms = mine.iter().map(|r| (r, true)).chain(elsewhere.keys().map(|r| (r, false)));
        let mut moved = Moved::default();
        for (room, renew) in rooms {
            let Some(room_id) = RoomId::parse(room) else { continue };
            let mut invocation = self.lease_script.key(lease_key(&room_id));
            invocation.arg(&self.node).arg(NODE_PREFIX).arg(self.presence_ttl.as_millis() as u64).arg(if renew {
                "1"
            } else {
                "0"
            });
            let mut conn = self.conn.clone();
            // Redis down: nothing is known to have moved; calls go on as they are.
            let Ok(holder) = self.call(async move { invocation.invoke_async::<String>(&mut conn).await }).await else {
                return;
            };
            let m = self.placement().lease_seen(room, &holder);
            if !m.here.is_empty() || !m.guests.is_empty() {
                tracing::info!(room = %room_id.tag(), holder = %holder, "a room's media moved");
            }
            moved.here.extend(m.here);
            moved.guests.extend(m.guests);
        }
        if !moved.here.is_empty() || !moved.guests.is_empty() {
            state.media_moved(moved);
        }
    }

    fn grace_ms(&self) -> u64 {
        self.resume_grace.as_millis().max(1) as u64
    }

    async fn reserve(
        &self,
        room: &RoomId,
        peer: &PeerInfo,
        capacity: usize,
        resume: Option<&PeerId>,
    ) -> Result<Seat, SeatRefusal> {
        let mut invocation = self.join_script.key(room_key(room));
        invocation
            .arg(peer.id.as_str())
            .arg(&self.node)
            .arg(peer.name.as_deref().unwrap_or(""))
            .arg(capacity)
            .arg(NODE_PREFIX)
            .arg(self.presence_ttl.as_millis() as u64)
            .arg(SEQUENCE_KEY)
            .arg(gone_prefix(room))
            .arg(self.grace_ms())
            .arg(resume.map_or("", PeerId::as_str));
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .call(async move { invocation.invoke_async(&mut conn).await })
            .await
            .map_err(|e| SeatRefusal::Unavailable(format!("Redis: {e}")))?;
        match &reply[..] {
            [status, id, moved, members @ ..] if status == "ok" => {
                let id = PeerId::parse(id)
                    .ok_or_else(|| SeatRefusal::Unavailable(format!("join.lua granted a bad id {id:?}")))?;
                let moved_from = (!moved.is_empty()).then(|| moved.clone());
                Ok(Seat { id, moved_from, members: parse_members(members) })
            }
            [status, ..] if status == "full" => Err(SeatRefusal::Full { capacity }),
            [status, ..] if status == "taken" => Err(SeatRefusal::IdTaken),
            _ => Err(SeatRefusal::Unavailable(format!("unexpected reply from join.lua: {reply:?}"))),
        }
    }

    /// Refreshes this node's presence and reconciles each of its rooms with Redis.
    async fn sync(&self, state: &Arc<AppState>) {
        self.check_resume_key().await;
        self.sync_rooms(state).await;
        self.leases(state).await;
    }

    async fn sync_rooms(&self, state: &Arc<AppState>) {
        let rooms = state.local_rooms();
        let ttl = self.presence_ttl.as_millis() as u64;
        if rooms.is_empty() {
            let mut conn = self.conn.clone();
            let key = format!("{NODE_PREFIX}{}", self.node);
            let _ =
                self.call(async move {
                    redis::cmd("SET").arg(key).arg(1).arg("PX").arg(ttl).query_async::<()>(&mut conn).await
                })
                .await;
            return;
        }
        let recovered = *self.recovered_at.lock().unwrap_or_else(|e| e.into_inner());
        let settled = recovered.is_none_or(|t| t.elapsed() >= self.presence_ttl);
        for (room, mine) in rooms {
            let asked_at = Instant::now();
            let mut invocation = self.sync_script.key(room_key(&room));
            invocation
                .arg(&self.node)
                .arg(NODE_PREFIX)
                .arg(ttl)
                .arg(SEQUENCE_KEY)
                .arg(gone_prefix(&room))
                .arg(self.grace_ms());
            for p in &mine {
                invocation.arg(p.id.as_str()).arg(p.name.as_deref().unwrap_or(""));
            }
            let mut conn = self.conn.clone();
            let Ok(members) = self.call(async move { invocation.invoke_async::<Vec<String>>(&mut conn).await }).await
            else {
                return;
            };
            state.sync_room(&room, parse_members(&members), asked_at, settled);
        }
    }

    /// Compares this node's resume key with the first node's (by fingerprint): with
    /// different keys a participant cannot resume on another node. Says so once.
    async fn check_resume_key(&self) {
        let mut conn = self.conn.clone();
        let id = self.resume_key_id.clone();
        let first = self
            .call(async move {
                redis::cmd("SET")
                    .arg(RESUME_KEY_ID)
                    .arg(&id)
                    .arg("NX")
                    .arg("GET")
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        let Ok(first) = first else { return };
        let mismatch = first.is_some_and(|f| f != self.resume_key_id);
        if mismatch && !self.resume_key_mismatch.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                node = %self.node,
                "another node uses a different resume key: participants cannot resume across nodes; \
                 give every node the same resume.key (--state-dir)"
            );
        }
        self.resume_key_mismatch.store(mismatch, Ordering::Relaxed);
    }

    /// Runs one Redis command within the timeout; its outcome says whether Redis is up.
    async fn call<T>(&self, command: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
        let result = match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let was_up = self.store_up.swap(result.is_ok(), Ordering::Relaxed);
        if result.is_err() {
            self.metrics.errors.inc();
        }
        self.refresh_up();
        match (&result, was_up) {
            (Err(e), true) => tracing::warn!(node = %self.node, "Redis is down: {e}; new joins are refused"),
            (Ok(_), false) => {
                tracing::info!(node = %self.node, "Redis is up");
                *self.recovered_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
            _ => {}
        }
        result
    }

    /// Listens on this node's relay channel, reconnecting whenever the connection drops.
    async fn subscribe(self: Arc<Self>, state: Arc<AppState>) {
        let channel = format!("{RELAY_PREFIX}{}", self.node);
        let mut backoff = Duration::from_millis(100);
        loop {
            match tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await {
                Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        self.subscribed.store(true, Ordering::Relaxed);
                        self.refresh_up();
                        tracing::info!(node = %self.node, "listening for relays");
                        backoff = Duration::from_millis(100);
                        let mut messages = pubsub.into_on_message();
                        while let Some(msg) = messages.next().await {
                            let Ok(payload) = msg.get_payload::<String>() else { continue };
                            match serde_json::from_str::<Envelope>(&payload) {
                                Ok(e) => {
                                    self.metrics.relays_received.inc();
                                    let (Some(room), to) = (RoomId::parse(&e.room), e.to.as_deref().map(PeerId::parse))
                                    else {
                                        continue;
                                    };
                                    if let Some(None) = to {
                                        continue;
                                    }
                                    let to = to.flatten();
                                    match (e.msg, e.media, to) {
                                        (Some(msg), _, to) => state.relayed(&e.from, &room, to.as_ref(), msg),
                                        (None, Some(request), Some(peer)) => {
                                            state.media_from(&e.from, room, peer, request)
                                        }
                                        _ => tracing::debug!("a relay with neither message nor media request"),
                                    }
                                }
                                Err(e) => tracing::debug!("a relay that does not parse: {e}"),
                            }
                        }
                        self.subscribed.store(false, Ordering::Relaxed);
                        // The command connection most likely broke too: count Redis as
                        // down until a heartbeat gets through, so no join meets the
                        // broken connection first.
                        self.store_up.store(false, Ordering::Relaxed);
                        self.refresh_up();
                        tracing::warn!(node = %self.node, "lost the Redis relay subscription; reconnecting");
                    }
                    Err(e) => tracing::debug!("subscribing to the relay channel: {e}"),
                },
                Ok(Err(e)) => tracing::debug!("connecting for relays: {e}"),
                Err(_) => tracing::debug!("connecting for relays: timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

fn room_key(room: &RoomId) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// `scheme://host[:port]` of an http(s) URL (nothing else from Redis reaches a header).
fn origin_of(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let authority = uri.authority().filter(|a| !a.as_str().contains('@'))?;
    Some(format!("{scheme}://{authority}"))
}

fn lease_key(room: &RoomId) -> String {
    format!("{LEASE_PREFIX}{room}")
}

fn gone_prefix(room: &RoomId) -> String {
    format!("{GONE_PREFIX}{room}:")
}

/// Members in joining order; entries that do not parse are skipped.
fn parse_members(values: &[String]) -> Vec<(PeerInfo, String)> {
    let mut members: Vec<Member> = values.iter().filter_map(|v| serde_json::from_str(v).ok()).collect();
    members.sort_by_key(|m| m.seq);
    members.into_iter().filter_map(|m| Some((PeerInfo { id: PeerId::parse(&m.id)?, name: m.name }, m.node))).collect()
}

//! What the HTTP and WebSocket handlers share.

use crate::config::ServeArgs;
use callsight_media::{DetectionEvent, MediaHub, PublisherKey};
use callsight_signal::{ConnId, ErrorCode, Hub, MemoryRoomStore, Output, RoomId, ServerMessage};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Frames queued per connection before it counts as stuck and is dropped, so one slow
/// reader never holds up its room.
pub const OUTBOX_CAPACITY: usize = 1024;

/// What a connection's task writes to its socket.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(String),
}

pub struct AppState {
    signaling: Mutex<Signaling>,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub max_message_bytes: usize,
    pub stun_port: Option<u16>,
    pub turn: Option<IceServer>,
    /// The media leg and its detector; `None` with `--no-media`.
    pub media: Option<Media>,
}

pub struct Media {
    pub hub: MediaHub,
    pub detector: Arc<callsight_vision::Detector>,
}

struct Signaling {
    hub: Hub,
    outboxes: HashMap<ConnId, mpsc::Sender<Outbound>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl AppState {
    pub fn new(args: &ServeArgs, stun_addr: Option<SocketAddr>, media: Option<Media>) -> Self {
        let turn = (!args.turn_urls.is_empty()).then(|| IceServer {
            urls: args.turn_urls.clone(),
            username: args.turn_username.clone(),
            credential: args.turn_credential.clone(),
        });
        AppState {
            signaling: Mutex::new(Signaling {
                hub: Hub::new(args.limits(), Box::<MemoryRoomStore>::default()),
                outboxes: HashMap::new(),
            }),
            heartbeat_interval: Duration::from_secs_f64(args.heartbeat_secs.max(0.05)),
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout_secs.max(0.1)),
            max_message_bytes: args.max_message_bytes,
            stun_port: stun_addr.map(|a| a.port()),
            turn,
            media,
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

    pub fn connect(&self, outbox: mpsc::Sender<Outbound>) -> ConnId {
        let mut s = self.lock();
        let id = s.hub.connect(Instant::now());
        s.outboxes.insert(id, outbox);
        id
    }

    pub fn on_message(self: &Arc<Self>, conn: ConnId, text: &str) {
        let media_work = {
            let mut s = self.lock();
            let out = s.hub.on_message(conn, text, Instant::now());
            s.apply(out)
        };
        self.media_work(media_work);
    }

    pub fn disconnect(self: &Arc<Self>, conn: ConnId) {
        let media_work = {
            let mut s = self.lock();
            let out = s.hub.disconnect(conn);
            s.outboxes.remove(&conn);
            s.apply(out)
        };
        self.media_work(media_work);
    }

    fn send(&self, to: ConnId, msg: &ServerMessage) {
        self.lock().send(to, Outbound::Text(msg.to_json()));
    }

    /// Carries out the media leg's share of the hub's outputs, outside the hub's lock.
    fn media_work(self: &Arc<Self>, work: Vec<Output>) {
        for output in work {
            match (output, &self.media) {
                (Output::Publish { conn, .. }, None) => {
                    let msg =
                        ServerMessage::error(ErrorCode::MediaUnavailable, "this server runs without the media leg");
                    self.send(conn, &msg);
                }
                (Output::Publish { conn, room, peer, sdp }, Some(media)) => {
                    let key = PublisherKey { room: room.to_string(), participant: peer.to_string() };
                    let (hub, state) = (media.hub.clone(), self.clone());
                    tokio::spawn(async move {
                        let reply = match hub.publish(key, &sdp).await {
                            Ok(sdp) => ServerMessage::PublishAnswer { sdp },
                            Err(e) => {
                                tracing::warn!(conn = conn.0, "publish refused: {e}");
                                ServerMessage::error(ErrorCode::MediaUnavailable, format!("publish refused: {e}"))
                            }
                        };
                        state.send(conn, &reply);
                    });
                }
                (Output::Unpublish { room, peer }, Some(media)) => {
                    media.hub.unpublish(&PublisherKey { room: room.to_string(), participant: peer.to_string() })
                }
                _ => {}
            }
        }
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

    fn deliver(&self, event: &DetectionEvent) {
        let Some(room) = RoomId::parse(&event.room) else { return };
        // Serialised once, sent to everyone in the room.
        let text = ServerMessage::Detections(event.result.clone()).to_json();
        let mut s = self.lock();
        for (_, conn) in s.hub.room_connections(&room) {
            s.send(conn, Outbound::Text(text.clone()));
        }
    }
}

impl Signaling {
    /// Sends and closes; returns the outputs meant for the media leg.
    fn apply(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        let mut media_work = Vec::new();
        for output in outputs {
            match output {
                Output::Send { to, msg } => self.send(to, Outbound::Text(msg.to_json())),
                Output::Close { conn, reason } => self.send(conn, Outbound::Close(reason)),
                other @ (Output::Publish { .. } | Output::Unpublish { .. }) => media_work.push(other),
            }
        }
        media_work
    }

    fn send(&mut self, to: ConnId, frame: Outbound) {
        let Some(outbox) = self.outboxes.get(&to) else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = outbox.try_send(frame) {
            tracing::warn!(conn = to.0, "outbox full; dropping the connection");
            // Its task notices the closed channel and disconnects it from the hub.
            self.outboxes.remove(&to);
        }
    }
}

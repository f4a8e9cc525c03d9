//! What the HTTP and WebSocket handlers share.

use crate::config::ServeArgs;
use callsight_signal::{ConnId, Hub, MemoryRoomStore, Output, ServerMessage};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
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
    pub async fn new(args: &ServeArgs, stun_addr: Option<SocketAddr>) -> anyhow::Result<Self> {
        let turn = (!args.turn_urls.is_empty()).then(|| IceServer {
            urls: args.turn_urls.clone(),
            username: args.turn_username.clone(),
            credential: args.turn_credential.clone(),
        });
        Ok(AppState {
            signaling: Mutex::new(Signaling {
                hub: Hub::new(args.limits(), Box::<MemoryRoomStore>::default()),
                outboxes: HashMap::new(),
            }),
            heartbeat_interval: Duration::from_secs_f64(args.heartbeat_secs.max(0.05)),
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout_secs.max(0.1)),
            max_message_bytes: args.max_message_bytes,
            stun_port: stun_addr.map(|a| a.port()),
            turn,
        })
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

    pub fn on_message(&self, conn: ConnId, text: &str) {
        let mut s = self.lock();
        let out = s.hub.on_message(conn, text, Instant::now());
        s.apply(out);
    }

    pub fn disconnect(&self, conn: ConnId) {
        let mut s = self.lock();
        let out = s.hub.disconnect(conn);
        s.outboxes.remove(&conn);
        s.apply(out);
    }
}

impl Signaling {
    fn apply(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { to, msg } => self.send(to, Outbound::Text(msg.to_json())),
                Output::Close { conn, reason } => self.send(conn, Outbound::Close(reason)),
                Output::Publish { conn, .. } => {
                    let msg = ServerMessage::error(
                        callsight_signal::ErrorCode::MediaUnavailable,
                        "this server runs without the media leg",
                    );
                    self.send(conn, Outbound::Text(msg.to_json()))
                }
                Output::Unpublish { .. } => {}
            }
        }
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

//! One task per WebSocket: frames in → hub → frames out, with a heartbeat that drops
//! connections whose peer went silent (a dead tab on a dead network never sends a FIN).

use crate::connections::Slot;
use crate::metrics::Direction;
use crate::outbox::{outbox, Outbound};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use callsight_signal::limits::RateLimiter;
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::time::{interval, sleep_until, timeout, MissedTickBehavior};

/// Close code 1008: policy violation (too large, rate limit).
const CLOSE_POLICY: u16 = 1008;

/// `client`: the client's address (media caps count by it). `_slots`: the connection
/// places this socket holds until it ends. `host`: the host name the browser used to reach us.
pub async fn serve_socket(
    socket: WebSocket,
    state: Arc<AppState>,
    client: IpAddr,
    _slots: Vec<Arc<Slot>>,
    host: Option<String>,
) {
    let _counted = state.metrics.ws_connection();
    let (tx, mut outbox) = outbox(state.max_outbox_bytes);
    let conn = state.connect(tx, client, host);
    tracing::debug!(conn = conn.0, "websocket open");
    let (mut sink, mut stream) = socket.split();
    let mut heartbeat = interval(state.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Bytes read: beyond the budget, reading pauses (the sender's TCP window fills).
    let (rate, burst) = state.read_budget;
    let mut read_budget = RateLimiter::new(rate, burst, last_heard);
    let mut paused_until: Option<tokio::time::Instant> = None;

    let reason = loop {
        tokio::select! {
            () = sleep_until(paused_until.unwrap_or_else(tokio::time::Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
            frame = stream.next(), if paused_until.is_none() => match frame {
                None => break "closed by peer".to_owned(),
                Some(Err(e)) => break format!("read error: {e}"),
                Some(Ok(frame)) => {
                    last_heard = Instant::now();
                    let wait = read_budget.debit(frame_bytes(&frame) as f64, last_heard);
                    if !wait.is_zero() {
                        paused_until = Some(tokio::time::Instant::now() + wait);
                    }
                    match frame {
                        Message::Text(text) => {
                            state.metrics.ws_message(Direction::In);
                            state.on_message(conn, text.as_str())
                        }
                        Message::Binary(_) => state.on_message(conn, "<binary frame>"),
                        Message::Close(_) => break "closed by peer".to_owned(),
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            },
            out = outbox.recv() => match out {
                Some(Outbound::Text(text)) => {
                    state.metrics.ws_message(Direction::Out);
                    if let Err(e) = send(&mut sink, Message::Text(text.into()), &state).await {
                        break e;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    let frame = CloseFrame { code: CLOSE_POLICY, reason: reason.clone().into() };
                    let _ = send(&mut sink, Message::Close(Some(frame)), &state).await;
                    break reason;
                }
                None => break "outbox overflow".to_owned(),
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > state.heartbeat_timeout {
                    break "heartbeat timeout".to_owned();
                }
                if state.join_deadline_passed(conn) {
                    let reason = "no join in time";
                    let frame = CloseFrame { code: CLOSE_POLICY, reason: reason.into() };
                    let _ = send(&mut sink, Message::Close(Some(frame)), &state).await;
                    break reason.to_owned();
                }
                if let Err(e) = send(&mut sink, Message::Ping(Vec::new().into()), &state).await {
                    break e;
                }
            }
        }
    };
    tracing::debug!(conn = conn.0, %reason, "websocket closed");
    state.disconnect(conn);
}

/// Payload bytes of a received frame (what the read budget counts).
fn frame_bytes(frame: &Message) -> usize {
    match frame {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 0,
    }
}

/// A write that gives up after the heartbeat timeout: a peer that stops reading must not
/// pin this task forever.
async fn send<S>(sink: &mut S, msg: Message, state: &AppState) -> Result<(), String>
where
    S: futures_util::Sink<Message, Error = axum::Error> + Unpin,
{
    match timeout(state.heartbeat_timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err("write stalled".to_owned()),
    }
}

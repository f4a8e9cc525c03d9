//! The real callers: rooms of two participants relaying signals for the whole run.

use crate::{source_ip, Args, Tally};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a WebSocket to `server` from the loopback address `from`.
pub async fn connect(server: SocketAddr, from: std::net::IpAddr) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0)).with_context(|| format!("binding {from}"))?;
    let tcp = socket.connect(server).await.with_context(|| format!("connecting {server}"))?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{server}/ws");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.context("WebSocket handshake")?;
    Ok(ws)
}

/// The next JSON text message.
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(REPLY_TIMEOUT, ws.next()).await.context("no message in time")? {
            None => bail!("closed"),
            Some(Err(e)) => bail!("socket error: {e}"),
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).context("not JSON"),
            Some(Ok(Message::Close(c))) => bail!("closed by server: {c:?}"),
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `join` (with `extra` fields merged) and returns the `joined` message.
pub async fn join(ws: &mut Ws, room: &str, extra: Value) -> anyhow::Result<Value> {
    let mut msg = json!({"type": "join", "room": room, "name": "soak"});
    if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    ws.send(Message::Text(msg.to_string().into())).await?;
    loop {
        let v = next_json(ws).await?;
        match v["type"].as_str() {
            Some("joined") => return Ok(v),
            Some("error") => bail!("join refused: {v}"),
            _ => {}
        }
    }
}

/// A fresh room id (22 url-safe characters, like the page's).
pub fn room_id(tag: &str, i: usize) -> String {
    let s = format!("soak{tag}{i:06}{:08}", std::process::id());
    format!("{s:x<22}")
}

/// Starts every room.
pub fn start(args: &Args, tally: Arc<Tally>, end: Instant) {
    for r in 0..args.rooms {
        let room = room_id("c", r);
        let (server, rate, tally) = (args.server, args.rate, tally.clone());
        tokio::spawn(async move {
            while Instant::now() < end {
                if let Err(e) = run_room(server, &room, r, rate, &tally, end).await {
                    Tally::add(&tally.caller_errors);
                    eprintln!("room {r}: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
}

/// One room until `end`: the second participant signals the first, which answers.
async fn run_room(
    server: SocketAddr,
    room: &str,
    r: usize,
    rate: f64,
    tally: &Tally,
    end: Instant,
) -> anyhow::Result<()> {
    let mut host = connect(server, source_ip(1, 2 * r)).await?;
    join(&mut host, room, json!({})).await?;
    let mut caller = connect(server, source_ip(1, 2 * r + 1)).await?;
    let joined = join(&mut caller, room, json!({})).await?;
    let host_id = joined["peers"][0]["id"].as_str().context("host listed")?.to_owned();
    let clock = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    while Instant::now() < end {
        tick.tick().await;
        let sent = clock.elapsed().as_micros() as u64;
        let signal = json!({"type": "signal", "to": host_id, "data": {"t": sent}});
        caller.send(Message::Text(signal.to_string().into())).await?;
        let got = wait_signal(&mut host).await?;
        let back = json!({"type": "signal", "to": got["from"], "data": got["data"]});
        host.send(Message::Text(back.to_string().into())).await?;
        let answer = wait_signal(&mut caller).await?;
        let t = answer["data"]["t"].as_u64().context("echoed time")?;
        tally.relayed.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        tally.latencies_us.lock().unwrap_or_else(|e| e.into_inner()).push(clock.elapsed().as_micros() as u64 - t);
    }
    Ok(())
}

async fn wait_signal(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let v = next_json(ws).await?;
        if v["type"] == "signal" {
            return Ok(v);
        }
    }
}

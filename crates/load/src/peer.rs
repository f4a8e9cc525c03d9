//! One room's two peers over a real WebSocket, in either wire protocol.

use crate::{Args, Protocol};
use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for any single reply while setting up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// After the sending stops, how long answers in flight may still arrive.
const DRAIN: Duration = Duration::from_millis(500);

/// A connected peer: its socket, its id, and the protocol's framing.
struct Peer {
    ws: Ws,
    id: String,
    protocol: Protocol,
}

/// A relayed signal as this client sees it.
struct Relayed {
    from: String,
    sent_us: u64,
}

impl Peer {
    async fn connect(args: &Args, server: &str) -> anyhow::Result<Peer> {
        let url = match args.protocol {
            Protocol::Callsight => format!("ws://{server}/ws"),
            // socket.io's Engine.IO v4 over its WebSocket transport.
            Protocol::Socketio => format!("ws://{server}/socket.io/?EIO=4&transport=websocket"),
        };
        let (ws, _) = connect_async_with_config(&url, None, true).await.with_context(|| format!("connecting {url}"))?;
        let mut peer = Peer { ws, id: String::new(), protocol: args.protocol };
        if peer.protocol == Protocol::Socketio {
            peer.expect_raw(|t| t.starts_with('0')).await?; // Engine.IO open
            peer.send_raw("40".into()).await?; // socket.io CONNECT to "/"
            let ack = peer.expect_raw(|t| t.starts_with("40")).await?;
            let v: Value = serde_json::from_str(&ack[2..]).context("socket.io connect ack")?;
            peer.id = v["sid"].as_str().context("sid in connect ack")?.to_owned();
        }
        Ok(peer)
    }

    async fn send_raw(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await.context("send")
    }

    /// The next text frame; answers Engine.IO pings on the way.
    async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            match self.ws.next().await {
                None => bail!("socket closed"),
                Some(Err(e)) => bail!("socket error: {e}"),
                Some(Ok(Message::Text(t))) => {
                    if self.protocol == Protocol::Socketio && t.as_str() == "2" {
                        self.send_raw("3".into()).await?;
                        continue;
                    }
                    return Ok(t.to_string());
                }
                Some(Ok(Message::Close(_))) => bail!("socket closed by server"),
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn expect_raw(&mut self, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        tokio::time::timeout(SETUP_TIMEOUT, async {
            loop {
                let t = self.next_text().await?;
                if pred(&t) {
                    return Ok(t);
                }
            }
        })
        .await
        .context("timed out during setup")?
    }

    /// A socket.io event frame `42["name", data]`.
    fn event(name: &str, data: Value) -> String {
        format!("42{}", json!([name, data]))
    }

    /// Joins `room`; returns the ids of the peers already there.
    async fn join(&mut self, room: &str) -> anyhow::Result<Vec<String>> {
        match self.protocol {
            Protocol::Callsight => {
                self.send_raw(json!({"type":"join","room":room}).to_string()).await?;
                let t = self.expect_raw(|t| t.contains("\"joined\"") || t.contains("\"error\"")).await?;
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] != "joined" {
                    bail!("join refused: {v}");
                }
                self.id = v["id"].as_str().context("id")?.to_owned();
                Ok(v["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect())
            }
            Protocol::Socketio => {
                self.send_raw(Self::event("join room", json!(room))).await?;
                let t = self.expect_raw(|t| t.starts_with("42[\"all users\"")).await?;
                let v: Value = serde_json::from_str(&t[2..])?;
                Ok(v[1].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_owned)).collect())
            }
        }
    }

    /// Sends a signal to `to`: a call (`answer == false`) or the answer to one.
    async fn signal(&mut self, to: &str, sent_us: u64, pad: &str, answer: bool) -> anyhow::Result<()> {
        let data = json!({"t": sent_us, "candidate": pad});
        let text = match (self.protocol, answer) {
            (Protocol::Callsight, _) => json!({"type":"signal","to":to,"data":data}).to_string(),
            (Protocol::Socketio, false) => {
                Self::event("sending signal", json!({"userToSignal": to, "callerID": self.id, "signal": data}))
            }
            (Protocol::Socketio, true) => Self::event("returning signal", json!({"callerID": to, "signal": data})),
        };
        self.send_raw(text).await
    }

    /// Parses a relayed signal, if `text` is one.
    fn relayed(&self, text: &str) -> Option<Relayed> {
        let (from, data) = match self.protocol {
            Protocol::Callsight => {
                let v: Value = serde_json::from_str(text).ok()?;
                (v["type"] == "signal").then_some(())?;
                (v["from"].as_str()?.to_owned(), v["data"].clone())
            }
            Protocol::Socketio => {
                let v: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
                match v[0].as_str()? {
                    "user joined" => (v[1]["callerID"].as_str()?.to_owned(), v[1]["signal"].clone()),
                    "receiving returned signal" => (v[1]["id"].as_str()?.to_owned(), v[1]["signal"].clone()),
                    _ => return None,
                }
            }
        };
        Some(Relayed { from, sent_us: data["t"].as_u64()? })
    }
}

/// The two peers of one room: `host` was there first, `caller` joined second.
pub struct Pair {
    host: Peer,
    caller: Peer,
    host_id: String,
}

impl Pair {
    /// Room number `index`: with several servers (nodes sharing rooms), its host is on
    /// server `index` and its caller on the next one, so every relay crosses nodes.
    pub async fn connect(args: &Args, room: &str, index: usize) -> anyhow::Result<Pair> {
        let servers: Vec<&str> = args.server.split(',').collect();
        let mut host = Peer::connect(args, servers[index % servers.len()]).await?;
        host.join(room).await?;
        let mut caller = Peer::connect(args, servers[(index + 1) % servers.len()]).await?;
        let present = caller.join(room).await?;
        let host_id = present.first().context("the first peer is not listed to the second")?.clone();
        Ok(Pair { host, caller, host_id })
    }

    /// Relays until `deadline` (on `clock`); returns each relay's latency in µs.
    pub async fn run(self, args: Args, clock: Instant, deadline: Duration) -> anyhow::Result<Vec<u64>> {
        let Pair { mut host, mut caller, host_id } = self;
        let pad = "x".repeat(args.payload_bytes);
        let now_us = move || clock.elapsed().as_micros() as u64;

        let pad2 = pad.clone();
        // The host answers every signal it gets.
        let host_task = tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Ok(Ok(text)) =
                tokio::time::timeout((deadline + DRAIN).saturating_sub(clock.elapsed()), host.next_text()).await
            {
                if let Some(r) = host.relayed(&text) {
                    let t = now_us();
                    lat.push(t.saturating_sub(r.sent_us));
                    if clock.elapsed() < deadline {
                        host.signal(&r.from, now_us(), &pad2, true).await?;
                    }
                }
            }
            anyhow::Ok(lat)
        });

        let mut lat = Vec::new();
        let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
        let mut tick = tokio::time::interval(period);
        loop {
            let left = (deadline + DRAIN).saturating_sub(clock.elapsed());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tick.tick(), if clock.elapsed() < deadline => caller.signal(&host_id, now_us(), &pad, false).await?,
                text = tokio::time::timeout(left, caller.next_text()) => match text {
                    Ok(Ok(text)) => if let Some(r) = caller.relayed(&text) { lat.push(now_us().saturating_sub(r.sent_us)) },
                    Ok(Err(e)) => return Err(e),
                    Err(_) => break,
                },
            }
        }
        lat.extend(host_task.await.context("host task")??);
        Ok(lat)
    }
}

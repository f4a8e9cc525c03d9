//! The hostile mix: each kind runs `--hostile` loops from its own loopback addresses until
//! the end of the run. None of them may disturb the callers or take anyone's identity.

use crate::callers::{connect, join, next_json, room_id};
use crate::{source_ip, Args, Tally};
use futures_util::SinkExt;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// Pause between an attacker's attempts, so a refused attacker does not spin.
const PAUSE: Duration = Duration::from_millis(200);

pub fn start(args: &Args, tally: Arc<Tally>, end: Instant) {
    for i in 0..args.hostile {
        let (server, t) = (args.server, tally.clone());
        tokio::spawn(repeat(end, PAUSE, move || half_open(server, i, t.clone())));
        let (server, t) = (args.server, tally.clone());
        tokio::spawn(repeat(end, PAUSE, move || never_joins(server, i, t.clone())));
        let (server, t) = (args.server, tally.clone());
        tokio::spawn(repeat(end, PAUSE, move || garbage(server, i, t.clone())));
        let (server, t) = (args.server, tally.clone());
        tokio::spawn(repeat(end, PAUSE, move || hijack(server, i, t.clone())));
        let (server, t) = (args.server, tally.clone());
        tokio::spawn(repeat(end, PAUSE, move || churn(server, i, t.clone())));
        if args.stun_port != 0 {
            let stun = SocketAddr::new(args.server.ip(), args.stun_port);
            tokio::spawn(repeat(end, PAUSE, move || junk_udp(stun, i)));
        }
    }
}

async fn repeat<F, Fut>(end: Instant, pause: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    while Instant::now() < end {
        // Refusals and closes are what a defended server does to these: not errors.
        let _ = tokio::time::timeout_at((end + Duration::from_secs(1)).into(), f()).await;
        tokio::time::sleep(pause).await;
    }
}

/// Half a request line, then silence until the server gives up on us.
async fn half_open(server: SocketAddr, i: usize, tally: Arc<Tally>) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source_ip(2, i), 0))?;
    let mut tcp = socket.connect(server).await?;
    Tally::add(&tally.hostile_conns);
    tcp.write_all(b"GET /healthz HT").await?;
    let mut buf = [0u8; 256];
    while tcp.read(&mut buf).await? > 0 {}
    Ok(())
}

/// A WebSocket that answers pings but never joins.
async fn never_joins(server: SocketAddr, i: usize, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(server, source_ip(3, i)).await?;
    Tally::add(&tally.hostile_conns);
    use futures_util::StreamExt;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

/// Garbage, binary and oversized frames, from a participant of a room of its own (a room
/// link is the room's secret: an attacker without it cannot sit in the callers' rooms), and
/// signals addressed to the callers' rooms' participants, which it cannot reach.
async fn garbage(server: SocketAddr, i: usize, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(server, source_ip(4, i)).await?;
    Tally::add(&tally.hostile_conns);
    let _ = join(&mut ws, &room_id("g", i), json!({})).await;
    let big = "x".repeat(256 * 1024);
    for frame in [
        Message::Text("{not json".into()),
        Message::Binary(vec![0u8; 1024].into()),
        Message::Text(json!({"type": "signal", "to": "AAAAAAAAAAAAAAAA", "data": big}).to_string().into()),
        Message::Text(
            json!({"type": "publish", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).to_string().into(),
        ),
    ] {
        ws.send(frame).await?;
    }
    for _ in 0..50 {
        ws.send(Message::Text(json!({"type": "fly"}).to_string().into())).await?;
    }
    while next_json(&mut ws).await.is_ok() {}
    Ok(())
}

/// A victim joins and drops; the attacker, who overheard its id, asks to resume as it.
async fn hijack(server: SocketAddr, i: usize, tally: Arc<Tally>) -> anyhow::Result<()> {
    let room = room_id("h", i);
    let mut victim = connect(server, source_ip(5, i)).await?;
    let joined = join(&mut victim, &room, json!({})).await?;
    let victim_id = joined["id"].as_str().unwrap_or_default().to_owned();
    drop(victim);
    let mut attacker = connect(server, source_ip(6, i)).await?;
    Tally::add(&tally.hostile_conns);
    // The server may not have noticed the close yet: then the id is still held, try again.
    for _ in 0..20 {
        match join(&mut attacker, &room, json!({"resume": victim_id})).await {
            Ok(j) if j["id"] == victim_id.as_str() => {
                Tally::add(&tally.hijacks);
                return Ok(());
            }
            Ok(_) => return Ok(()),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                attacker = connect(server, source_ip(6, i)).await?;
            }
        }
    }
    Ok(())
}

/// join / publish (a bogus offer) / leave, as fast as the server lets it.
async fn churn(server: SocketAddr, i: usize, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut ws = connect(server, source_ip(7, i)).await?;
    Tally::add(&tally.hostile_conns);
    for n in 0..20 {
        join(&mut ws, &room_id("x", i * 100 + n), json!({})).await?;
        ws.send(Message::Text(json!({"type": "publish", "sdp": "v=0"}).to_string().into())).await?;
        ws.send(Message::Text(json!({"type": "leave"}).to_string().into())).await?;
    }
    Ok(())
}

/// Junk datagrams at the STUN port: 100 per attempt.
async fn junk_udp(stun: SocketAddr, i: usize) -> anyhow::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::new(source_ip(8, i), 0)).await?;
    let mut junk = [0u8; 120];
    for (k, b) in junk.iter_mut().enumerate() {
        *b = (k * 37 + i) as u8;
    }
    // A STUN-shaped header (binding request + magic cookie) so it reaches the parser.
    junk[..8].copy_from_slice(&[0, 1, 0, 100, 0x21, 0x12, 0xa4, 0x42]);
    for _ in 0..100 {
        sock.send_to(&junk, stun).await?;
    }
    Ok(())
}

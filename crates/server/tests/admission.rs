//! Admission and resource bounds on the real server with real sockets: connection caps
//! per address, header-read and join deadlines, the outbox byte budget, the `Origin`
//! check.

mod common;

use common::*;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const FLOOD: usize = 2000;
const PER_IP: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_open_connections_from_one_address_do_not_lock_out_others() {
    let addr = start(&["--max-connections-per-ip", &PER_IP.to_string(), "--header-read-timeout", "60"]).await;
    // 2000 connections from 127.0.0.1, each sending half a request line and then nothing.
    let mut held = Vec::new();
    for _ in 0..FLOOD {
        let mut s = tcp_from("127.0.0.1", addr).await.expect("the kernel accepts the TCP handshake");
        let _ = s.write_all(b"GET / HT").await; // may already be reset: refused
        held.push(s);
    }
    // Everything beyond the per-address cap is closed by the server.
    let mut reads: FuturesUnordered<_> = held
        .iter_mut()
        .map(|s| async move {
            let mut byte = [0u8; 1];
            s.read(&mut byte).await
        })
        .collect();
    let mut closed = 0;
    while closed < FLOOD - PER_IP {
        let read = tokio::time::timeout(REPLY_DEADLINE, reads.next()).await.expect("refused connections close");
        match read.expect("pending reads remain") {
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => panic!("a half-sent request got an answer"),
        }
    }
    drop(reads);

    // Meanwhile, from other addresses: health answers and a call starts.
    let mut health = tcp_from("127.0.0.2", addr).await.unwrap();
    health
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(REPLY_DEADLINE, health.read_to_string(&mut body)).await.unwrap().unwrap();
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("ok"), "{body}");
    let (mut a, mut b) = (connect_from("127.0.0.2", addr).await, connect_from("127.0.0.3", addr).await);
    let ja = join(&mut a, "room-admit-1").await;
    let jb = join(&mut b, "room-admit-1").await;
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    send(&mut b, json!({"type":"signal","to":ja["id"],"data":{"sdp":"offer"}})).await;
    assert_eq!(recv(&mut a).await, json!({"type":"signal","from":jb["id"],"data":{"sdp":"offer"}}));
    // And 127.0.0.1 itself is still capped.
    let mut more = tcp_from("127.0.0.1", addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(REPLY_DEADLINE, more.read(&mut byte)).await.expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)));
    drop(held);
}

#[tokio::test]
async fn half_a_request_line_or_an_idle_keep_alive_is_dropped_after_the_header_timeout() {
    let addr = start(&["--header-read-timeout", "0.5"]).await;
    let mut half = tcp_from("127.0.0.1", addr).await.unwrap();
    half.write_all(b"GET /healthz HT").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(REPLY_DEADLINE, half.read_to_end(&mut rest)).await;
    assert!(read.expect("dropped in time").is_err() || rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"));

    // A full request is answered; the kept-alive connection is then dropped when idle.
    let mut idle = tcp_from("127.0.0.1", addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(REPLY_DEADLINE, idle.read_to_end(&mut all)).await.expect("dropped in time");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_socket_that_never_joins_is_closed() {
    let addr = start(&["--join-timeout", "0.3", "--heartbeat-secs", "0.1"]).await;
    let mut idle = connect(addr).await;
    assert_eq!(closed(&mut idle).await, "no join in time");
    // One that joins stays: it outlives the timeout twice over (counted in pings).
    let mut ws = connect(addr).await;
    join(&mut ws, "room-admit-2").await;
    let mut pings = 0;
    while pings < 6 {
        let frame = tokio::time::timeout(REPLY_DEADLINE, ws.next()).await.expect("a ping in time");
        match frame.expect("still open").expect("frame") {
            Message::Ping(_) => pings += 1,
            other => panic!("a joined socket got {other:?}"),
        }
    }
    // ... until it leaves and idles.
    send(&mut ws, json!({"type":"leave"})).await;
    assert_eq!(closed(&mut ws).await, "no join in time");
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_dropped_at_its_byte_budget() {
    let addr = start(&[
        "--max-outbox-bytes",
        "1000000",
        "--rate-per-sec",
        "1000",
        "--rate-burst",
        "1000",
        "--heartbeat-timeout-secs",
        "120",
    ])
    .await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    join(&mut a, "room-admit-3").await;
    let jb = join(&mut b, "room-admit-3").await;
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    // b never reads again; a sends it 400 frames of 60 kB (24 MB, well past what the
    // kernel buffers hold): far fewer frames than any frame cap, far more bytes.
    let pad = "x".repeat(60_000);
    for _ in 0..400 {
        send(&mut a, json!({"type":"signal","to":jb["id"],"data":{"pad":pad}})).await;
    }
    // Once b is gone, a's further signals to it are refused (`unknown-peer`).
    let left = loop {
        let v = recv(&mut a).await;
        if v["type"] != "error" {
            break v;
        }
    };
    assert_eq!(left, json!({"type":"peer-left","id":jb["id"]}), "b was dropped");
    drop(b);
}

async fn ws_with_origin(addr: std::net::SocketAddr, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn websocket_needs_the_same_origin_or_an_allowed_one() {
    let addr = start(&["--allowed-origin", "https://app.example.org"]).await;
    assert_eq!(ws_with_origin(addr, Some("https://evil.example")).await.err(), Some(403));
    assert_eq!(ws_with_origin(addr, Some("null")).await.err(), Some(403));
    for ok in [Some(format!("http://{addr}")), Some("https://app.example.org".to_owned()), None] {
        let mut ws = ws_with_origin(addr, ok.as_deref()).await.unwrap_or_else(|s| panic!("{ok:?}: {s}"));
        join(&mut ws, "room-origin-1").await;
        drop(ws);
    }
}

//! Helpers shared by the server's integration tests: start a real server, talk to it
//! over a real WebSocket.
#![allow(dead_code)]

use callsight_server::ServeArgs;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub mod cluster;
pub mod exchange;
#[allow(unused_imports)] // only the WHIP/WHEP tests use them
pub use exchange::*;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A generous bound so a broken server fails the test instead of hanging it.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Parser)]
pub struct TestCli {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// A state directory private to this test process (the resume-token key lives there).
pub fn test_state_dir() -> String {
    std::env::temp_dir().join(format!("callsight-test-state-{}", std::process::id())).display().to_string()
}

/// A real server on 127.0.0.1 (random port) with `extra` flags.
pub async fn start_server(extra: &[&str]) -> callsight_server::Running {
    let state_dir = test_state_dir();
    let mut argv = vec!["callsight", "--bind", "127.0.0.1:0"];
    if !extra.contains(&"--state-dir") {
        argv.extend(["--state-dir", state_dir.as_str()]);
    }
    argv.extend_from_slice(extra);
    let args = TestCli::try_parse_from(argv).expect("test flags parse").serve;
    callsight_server::start(args).await.expect("server starts")
}

/// The error a signaling-only server with `extra` flags refuses to start with.
pub async fn start_error(extra: &[&str]) -> String {
    let mut argv = vec!["callsight", "--bind", "127.0.0.1:0", "--no-stun", "--no-media"];
    argv.extend_from_slice(extra);
    let args = TestCli::try_parse_from(argv).expect("test flags parse").serve;
    let err = callsight_server::start(args).await.err().expect("the server refuses to start");
    format!("{err:#}")
}

/// A signaling-only server (no media leg).
pub async fn start(extra: &[&str]) -> SocketAddr {
    let mut argv = vec!["--no-stun", "--no-media"];
    argv.extend_from_slice(extra);
    start_server(&argv).await.http_addr
}

/// A TCP connection to `addr` from the loopback address `source` (any of 127.0.0.0/8).
pub async fn tcp_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().expect("source ip"), 0))?;
    socket.connect(addr).await
}

/// A WebSocket to `addr` from the loopback address `source`.
pub async fn connect_from(source: &str, addr: SocketAddr) -> Ws {
    let tcp = tcp_from(source, addr).await.expect("tcp connects");
    tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket connects")
        .0
}

pub async fn connect(addr: SocketAddr) -> Ws {
    connect_async(format!("ws://{addr}/ws")).await.expect("websocket connects").0
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

/// The next text message, skipping pings; panics on close or after the deadline.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(REPLY_DEADLINE, ws.next()).await.expect("a reply in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next message of type `kind`, skipping others.
pub async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Waits for the server to close the socket; returns the close reason.
pub async fn closed(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(REPLY_DEADLINE, ws.next()).await.expect("close in time") {
            None | Some(Err(_)) => return String::new(),
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            Some(Ok(_)) => continue,
        }
    }
}

pub async fn join(ws: &mut Ws, room: &str) -> Value {
    join_with(ws, json!({"type":"join","room":room})).await
}

/// Sends this `join` message and expects `joined`.
pub async fn join_with(ws: &mut Ws, msg: Value) -> Value {
    send(ws, msg).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "joined", "{v}");
    v
}

pub fn error_code(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "{v}");
    v["code"].as_str().expect("error code")
}

/// `/healthz` as JSON (this process is a local caller, so it gets the details).
pub async fn health(addr: SocketAddr) -> Value {
    let response = http_get(addr, "/healthz").await;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("healthz is JSON ({e}): {response}"))
}

pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(REPLY_DEADLINE, s.read_to_end(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Writes `secret` (a token secret) to a file `name` in `dir`.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// Runs the real `callsight token …` command; returns (token, link).
pub fn mint(secret: &Path, room: &str, identity: &str, extra: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callsight"))
        .args([
            "token",
            "--room",
            room,
            "--identity",
            identity,
            "--ttl",
            "1h",
            "--base-url",
            "https://call.example.org",
        ])
        .arg("--token-secret-file")
        .arg(secret)
        .args(extra)
        .env_remove("CALLSIGHT_TOKEN_SECRET")
        .output()
        .expect("callsight token runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (lines.next().unwrap().to_owned(), lines.next().unwrap().to_owned())
}

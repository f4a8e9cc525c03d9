//! What the server tells strangers: `/healthz` says `ok` and no more unless asked locally
//! or with the health key; logs name rooms by a keyed tag, never by their id (a room's
//! id is its only secret).

mod common;

use callsight_media::client::PendingClient;
use common::*;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn health(addr: SocketAddr, extra_headers: &str) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(REPLY_DEADLINE, s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn healthz_details_only_for_local_callers_or_with_the_key() {
    let dir = std::env::temp_dir().join(format!("callsight-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("health-key");
    std::fs::write(&key_file, "h3alth-k3y\n").unwrap();
    let addr = start(&["--health-key-file", key_file.to_str().unwrap()]).await;
    let _ = std::fs::remove_dir_all(&dir);

    let local = health(addr, "").await;
    assert_eq!(local["status"], "ok");
    assert!(local.get("connections").is_some() && local.get("rooms").is_some(), "{local}");

    // Relayed by a reverse proxy on loopback: a stranger, whatever the socket says.
    let relayed = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(health(addr, relayed).await, json!({"status":"ok"}));
    let wrong = format!("{relayed}Authorization: Bearer not-the-key\r\n");
    assert_eq!(health(addr, &wrong).await, json!({"status":"ok"}));
    let right = format!("{relayed}Authorization: Bearer h3alth-k3y\r\n");
    assert!(health(addr, &right).await.get("connections").is_some());
}

/// The real binary with the media leg: join, publish (the media leg logs the session),
/// leave. No line of its log, at any level, holds the room id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_rooms_by_a_keyed_tag_only() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_callsight"))
        .args(["--bind", "127.0.0.1:0", "--stun-port", "0", "--media-port", "0", "--state-dir", &test_state_dir()])
        .env("RUST_LOG", "debug,str0m=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("callsight runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    // Reads log lines until one contains `needle`; returns it.
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
        log: &mut Vec<String>,
        needle: &str,
    ) -> String {
        loop {
            let line = tokio::time::timeout(REPLY_DEADLINE * 6, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in the log:\n{}", log.join("\n")))
                .unwrap()
                .unwrap_or_else(|| panic!("log ended before {needle:?}:\n{}", log.join("\n")));
            log.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }
    let listening = until(&mut lines, &mut log, "listening on http://").await;
    let addr: SocketAddr = listening.rsplit("http://").next().unwrap().trim().parse().unwrap();

    let room = "room-secret-LOGS-0001";
    let mut ws = connect(addr).await;
    join(&mut ws, room).await;
    let pending = PendingClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("client socket");
    send(&mut ws, json!({"type":"publish","sdp":pending.offer()})).await;
    let answer = recv(&mut ws).await;
    assert_eq!(answer["type"], "publish-answer", "{answer}");
    until(&mut lines, &mut log, "publish accepted").await;
    send(&mut ws, json!({"type":"leave"})).await;
    until(&mut lines, &mut log, "media session closed").await;
    child.kill().await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }

    let all = log.join("\n");
    assert!(!all.contains(room) && !all.contains("LOGS-0001"), "the room id is in the log:\n{all}");
    let tags: std::collections::HashSet<&str> = log
        .iter()
        .filter_map(|l| l.split("room=").nth(1))
        .map(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap())
        .collect();
    assert_eq!(tags.len(), 1, "one room, one tag: {tags:?}\n{all}");
    let tag = tags.into_iter().next().unwrap();
    assert_eq!(tag.len(), 8, "{all}");
    let tagged = log.iter().filter(|l| l.contains(&format!("room={tag}"))).count();
    assert!(tagged >= 3, "joined, publish accepted, media session closed are tagged:\n{all}");
}

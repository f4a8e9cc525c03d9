//! The real server on 127.0.0.1 with real WebSocket clients.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn two_peers_join_relay_and_a_third_is_refused() {
    let addr = start(&[]).await;
    let (mut a, mut b, mut c) = (connect(addr).await, connect(addr).await, connect(addr).await);
    let ja = join(&mut a, "room-relay-1").await;
    assert_eq!(ja["peers"], json!([]));
    assert_eq!(ja["capacity"], 2);
    let jb = join(&mut b, "room-relay-1").await;
    let (a_id, b_id) = (ja["id"].as_str().unwrap(), jb["id"].as_str().unwrap());
    assert_eq!(jb["peers"][0]["id"], a_id);
    let pj = recv(&mut a).await;
    assert_eq!((pj["type"].as_str(), pj["peer"]["id"].as_str()), (Some("peer-joined"), Some(b_id)));

    let offer = json!({"description":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}});
    send(&mut b, json!({"type":"signal","to":a_id,"data":offer})).await;
    let got = recv(&mut a).await;
    assert_eq!(got, json!({"type":"signal","from":b_id,"data":offer}), "relayed verbatim");
    let answer = json!({"description":{"type":"answer","sdp":"v=0"}});
    send(&mut a, json!({"type":"signal","to":b_id,"data":answer})).await;
    assert_eq!(recv(&mut b).await["data"], answer);

    send(&mut c, json!({"type":"join","room":"room-relay-1"})).await;
    assert_eq!(error_code(&recv(&mut c).await), "room-full");
    // c stays usable: it can join another room.
    join(&mut c, "room-relay-2").await;
}

#[tokio::test]
async fn leave_and_disconnect_are_announced() {
    let addr = start(&[]).await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    join(&mut a, "room-leave-1").await;
    let jb = join(&mut b, "room-leave-1").await;
    recv(&mut a).await; // peer-joined
    send(&mut b, json!({"type":"leave"})).await;
    assert_eq!(recv(&mut a).await, json!({"type":"peer-left","id":jb["id"]}));
    let jb2 = join(&mut b, "room-leave-1").await;
    recv(&mut a).await; // peer-joined again
    drop(b); // the tab dies: TCP closes
    assert_eq!(recv(&mut a).await, json!({"type":"peer-left","id":jb2["id"]}));
}

#[tokio::test]
async fn capacity_flag_allows_small_mesh_rooms() {
    let addr = start(&["--room-capacity", "3"]).await;
    let mut socks = Vec::new();
    for i in 0..3 {
        let mut ws = connect(addr).await;
        let j = join(&mut ws, "room-mesh-1").await;
        assert_eq!(j["peers"].as_array().unwrap().len(), i);
        socks.push(ws);
    }
    let mut extra = connect(addr).await;
    send(&mut extra, json!({"type":"join","room":"room-mesh-1"})).await;
    assert_eq!(error_code(&recv(&mut extra).await), "room-full");
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_stays() {
    let addr = start(&[]).await;
    let mut ws = connect(addr).await;
    let cases: [(Message, &str); 8] = [
        (Message::Text("{not json".into()), "bad-message"),
        (Message::Binary(vec![1, 2, 3].into()), "bad-message"),
        (Message::Text(r#"{"type":"teleport"}"#.into()), "bad-message"),
        (Message::Text(r#"{"type":"join"}"#.into()), "bad-message"),
        (Message::Text(r#"{"type":"join","room":"a/b"}"#.into()), "bad-room"),
        (Message::Text(r#"{"type":"join","room":"abcdefgh","version":9}"#.into()), "unsupported-version"),
        (Message::Text(r#"{"type":"signal","to":"AAAAAAAAAAAAAAAA","data":{}}"#.into()), "not-joined"),
        (Message::Text(r#"{"type":"publish","sdp":"v=0"}"#.into()), "not-joined"),
    ];
    for (msg, code) in cases {
        ws.send(msg).await.unwrap();
        assert_eq!(error_code(&recv(&mut ws).await), code);
    }
    join(&mut ws, "room-bad-1").await;
}

#[tokio::test]
async fn signal_across_rooms_is_refused() {
    let addr = start(&[]).await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    let ja = join(&mut a, "room-cross-a").await;
    join(&mut b, "room-cross-b").await;
    send(&mut b, json!({"type":"signal","to":ja["id"],"data":{"x":1}})).await;
    assert_eq!(error_code(&recv(&mut b).await), "unknown-peer");
    // a got nothing: the next thing a sees is its own reply.
    send(&mut a, json!({"type":"leave"})).await;
    send(&mut a, json!({"type":"leave"})).await;
    assert_eq!(error_code(&recv(&mut a).await), "not-joined");
}

#[tokio::test]
async fn oversized_message_is_refused_and_closed() {
    let addr = start(&["--max-message-bytes", "1024"]).await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type":"leave","pad":"x".repeat(1500)})).await;
    assert_eq!(error_code(&recv(&mut ws).await), "too-large");
    assert_eq!(closed(&mut ws).await, "message too large");
    // Far above the limit the transport itself refuses the frame.
    let mut ws = connect(addr).await;
    let _ = ws.send(Message::Text("y".repeat(1 << 20).into())).await;
    closed(&mut ws).await;
    // Other connections are unaffected.
    join(&mut connect(addr).await, "room-size-1").await;
}

#[tokio::test]
async fn rate_limit_refuses_excess_messages() {
    let addr = start(&["--rate-per-sec", "1", "--rate-burst", "5"]).await;
    let mut ws = connect(addr).await;
    for _ in 0..5 {
        send(&mut ws, json!({"type":"leave"})).await;
    }
    send(&mut ws, json!({"type":"leave"})).await;
    let codes: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(error_code(&recv(&mut ws).await).to_owned());
        }
        v
    };
    assert_eq!(codes[..5], ["not-joined"; 5]);
    assert_eq!(codes[5], "rate-limited");
}

#[tokio::test]
async fn heartbeat_drops_a_silent_peer() {
    let addr = start(&["--heartbeat-secs", "0.2", "--heartbeat-timeout-secs", "0.6"]).await;
    let mut a = connect(addr).await;
    join(&mut a, "room-heart-1").await;
    // b joins, then its socket stays open but is never polled again, so it answers no
    // pings: a frozen tab on a network that never delivers a FIN.
    let mut b = connect(addr).await;
    let jb = join(&mut b, "room-heart-1").await;
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    let _frozen = b;
    // a keeps answering pings (tungstenite does so while we read); b goes silent.
    assert_eq!(recv(&mut a).await, json!({"type":"peer-left","id":jb["id"]}));
}

#[tokio::test]
async fn http_endpoints_serve_client_config_and_health() {
    let running = start_server(&["--stun-port", "0", "--no-media"]).await;
    let addr = running.http_addr;
    let config = http_get(addr, "/api/config").await;
    let config: Value = serde_json::from_str(config.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let stun_port = running.stun_addr.unwrap().port();
    assert_eq!(config["ice_servers"][0]["urls"][0], format!("stun:127.0.0.1:{stun_port}"));
    assert_eq!(config["room_capacity"], 2);
    let labels = http_get(addr, "/api/labels").await;
    let labels: Value = serde_json::from_str(labels.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!((labels[0].as_str(), labels[79].as_str()), (Some("person"), Some("toothbrush")), "{labels}");
    assert!(http_get(addr, "/healthz").await.contains("\"status\":\"ok\""));
    let page = http_get(addr, "/r/someRoomId123").await;
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "{page}");
    assert!(http_get(addr, "/no-such-file.js").await.starts_with("HTTP/1.1 404"));
}

/// `--max-bytes-per-sec`: past its burst, a connection's messages are read no faster than
/// the byte budget allows (the server stops reading; nothing is refused or lost).
#[tokio::test]
async fn byte_budget_paces_a_flooding_connection() {
    const SIZE: usize = 10_000;
    let addr = start(&["--max-bytes-per-sec", "20000", "--max-bytes-burst", "20000"]).await;
    let (mut a, mut b) = (connect(addr).await, connect(addr).await);
    let a_id = join(&mut a, "room-bytes-1").await["id"].as_str().unwrap().to_owned();
    join(&mut b, "room-bytes-1").await;
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    let start = std::time::Instant::now();
    for i in 0..5 {
        let data = json!({"candidate":{"candidate":"x".repeat(SIZE)}, "n": i});
        send(&mut b, json!({"type":"signal","to":a_id,"data":data})).await;
    }
    for i in 0..5 {
        let got = recv(&mut a).await;
        assert_eq!((got["type"].as_str(), got["data"]["n"].as_i64()), (Some("signal"), Some(i)), "in order, none lost");
    }
    // 50 kB against a 20 kB burst and 20 kB/s: the last 30 kB take at least 1.5 s
    // minus one message's worth of debt (the pause comes after the read that overdraws).
    let elapsed = start.elapsed();
    assert!(elapsed >= std::time::Duration::from_millis(900), "5 × {SIZE} bytes read in {elapsed:?}");
}

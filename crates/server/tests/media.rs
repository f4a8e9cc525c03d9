//! The whole server leg through the real server: a str0m publisher offers over the
//! signaling WebSocket (`publish`), streams H.264 encoded from a real photo, and every
//! participant of the room receives `detections` for the frames it sent.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::PendingClient;
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TICKS_PER_FRAME: u32 = 3000; // 30 fps on the 90 kHz RTP clock

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_camera_is_detected_and_results_reach_every_participant() {
    let server = start_server(&["--no-stun", "--media-port", "0"]).await;
    let addr = server.http_addr;
    let (mut alice, mut bob) = (connect(addr).await, connect(addr).await);
    let alice_id = join(&mut alice, "room-media-1").await["id"].as_str().unwrap().to_owned();
    join(&mut bob, "room-media-1").await;
    assert_eq!(recv(&mut alice).await["type"], "peer-joined");

    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = encode_loop(&photo, 640, 480, 30, 6.0, 1_500_000).expect("encode bus.jpg");
    let pending = PendingClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("client socket");
    send(&mut alice, json!({"type":"publish","sdp":pending.offer()})).await;
    let answer = recv(&mut alice).await;
    assert_eq!(answer["type"], "publish-answer", "{answer}");
    let publisher =
        pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(10)).await.expect("ICE + DTLS connect");

    let sent: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let sent_w = sent.clone();
    let streamer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for i in 0u32.. {
            tick.tick().await;
            let ts = 90_000u32.wrapping_add(i.wrapping_mul(TICKS_PER_FRAME));
            sent_w.lock().unwrap().insert(ts);
            publisher.send_frame(frames[i as usize % frames.len()].data.clone(), ts, None);
        }
    });

    for (who, ws) in [("alice", &mut alice), ("bob", &mut bob)] {
        let mut labels = HashSet::new();
        for _ in 0..200 {
            let msg = recv_type(ws, "detections").await;
            assert_eq!(msg["participant"], alice_id.as_str(), "{who}: {msg}");
            assert!(msg.get("room").is_none());
            let ts = msg["rtp_timestamp"].as_u64().expect("rtp_timestamp") as u32;
            assert!(sent.lock().unwrap().contains(&ts), "{who}: rtp_timestamp {ts} was never sent");
            assert_eq!((msg["width"].as_u64(), msg["height"].as_u64()), (Some(640), Some(480)));
            for d in msg["detections"].as_array().expect("detections list") {
                assert_eq!(d["box"].as_array().map(Vec::len), Some(4));
                labels.insert(d["label"].as_str().unwrap_or_default().to_owned());
            }
            if labels.contains("bus") && labels.contains("person") {
                break;
            }
        }
        assert!(labels.contains("bus") && labels.contains("person"), "{who} saw only {labels:?}");
    }

    // Alice leaves: her media session is freed.
    drop(alice);
    // The server frees the session when it sees the close; poll its health with a deadline.
    let deadline = tokio::time::Instant::now() + REPLY_DEADLINE;
    let health = loop {
        let h = http_get(addr, "/healthz").await;
        let freed = h.contains("\"sessions\":0") && h.contains("\"decoders\":0");
        if freed || tokio::time::Instant::now() > deadline {
            break h;
        }
        tokio::task::yield_now().await;
    };
    assert!(health.contains("\"sessions\":0") && health.contains("\"decoders\":0"), "{health}");
    streamer.abort();
}

/// `publish` and `leave` in one TCP write, over and over: the media leg answers each
/// publish after the participant is gone. No session may be left behind, and a real
/// caller can publish afterwards (the media leg's cap would otherwise be full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_leave_in_one_write_leaves_no_media_session_behind() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    const ROUNDS: usize = 12;
    let server = start_server(&["--no-stun", "--media-port", "0", "--max-media-sessions", "4"]).await;
    let addr = server.http_addr;
    let mut ws = connect(addr).await;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..ROUNDS {
        let offer = PendingClient::new(local).await.expect("client socket").offer().to_owned();
        for msg in [
            json!({"type":"join","room":"room-orphan-1"}),
            json!({"type":"publish","sdp":offer}),
            json!({"type":"leave"}),
        ] {
            ws.feed(Message::Text(msg.to_string().into())).await.unwrap();
        }
        ws.flush().await.unwrap(); // the three frames leave in one write
    }
    // Every publish gets its reply (answer or error) once the media leg is done with it.
    let (mut joined, mut replies) = (0, 0);
    while joined < ROUNDS || replies < ROUNDS {
        let v = recv(&mut ws).await;
        match v["type"].as_str() {
            Some("joined") => joined += 1,
            Some("publish-answer" | "error") => replies += 1,
            _ => panic!("unexpected {v}"),
        }
    }

    // A real caller publishes and connects.
    let mut caller = connect(addr).await;
    join(&mut caller, "room-orphan-2").await;
    let pending = PendingClient::new(local).await.expect("client socket");
    send(&mut caller, json!({"type":"publish","sdp":pending.offer()})).await;
    let answer = recv(&mut caller).await;
    assert_eq!(answer["type"], "publish-answer", "{answer}");
    let _publisher =
        pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(10)).await.expect("ICE + DTLS connect");
    // Its session is the only one.
    let health = health(addr).await;
    assert_eq!(health["media"]["stats"]["sessions"], 1, "{health}");
}

/// Media sessions per client address are capped at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sessions_per_address_are_capped() {
    let server = start_server(&["--no-stun", "--media-port", "0", "--max-media-sessions-per-ip", "1"]).await;
    let addr = server.http_addr;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut a, mut b, mut c) = (
        connect_from("127.0.0.1", addr).await,
        connect_from("127.0.0.1", addr).await,
        connect_from("127.0.0.2", addr).await,
    );
    for (ws, room) in [(&mut a, "room-mcap-1"), (&mut b, "room-mcap-2"), (&mut c, "room-mcap-3")] {
        join(ws, room).await;
    }
    // One at a time: publishes from different sockets are handled concurrently, so which of
    // a and b would get the one seat of 127.0.0.1 is otherwise a race.
    let publish = async |ws: &mut Ws| {
        let offer = PendingClient::new(local).await.expect("client socket").offer().to_owned();
        send(ws, json!({"type":"publish","sdp":offer})).await;
        recv(ws).await
    };
    assert_eq!(publish(&mut a).await["type"], "publish-answer");
    let refused = publish(&mut b).await;
    assert_eq!(error_code(&refused), "media-unavailable");
    assert!(refused["message"].as_str().unwrap().contains("address"), "{refused}");
    assert_eq!(publish(&mut c).await["type"], "publish-answer", "another address is not affected");
}

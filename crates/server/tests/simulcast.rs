//! Simulcast through the real server: a str0m publisher sends one video track in three
//! layers (320×180, 640×360, 1280×720, encoded from a real photo, each layer's RTP clock
//! with its own random-like offset, as browsers do); two str0m subscribers show it in
//! tiles of different sizes (`track-settings`) and receive different layers, on one RTP
//! timeline; the detector decodes the 640×360 layer.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::sps::{check_access_unit, SpsLimits};
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use str0m::media::MediaKind;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The layers: rid, size, RTP offset (each layer its own clock), bitrate.
const LAYERS: [(&str, u32, u32, u32, u32); 3] =
    [("q", 320, 180, 1_000_000_000, 150_000), ("h", 640, 360, 3_000_000_123, 500_000), ("f", 1280, 720, 17, 1_500_000)];

struct Seen {
    detections: Vec<Value>,
    /// The mid of the publisher's video on this participant's connection.
    video_mid: Option<String>,
}

struct Participant {
    client: Arc<Client>,
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    to_server: mpsc::UnboundedSender<Value>,
    _task: tokio::task::JoinHandle<()>,
}

/// Joins `room`, publishes `pending` with `subscribe`, connects; a task answers the
/// server's offers, records detections and the mid of the forwarded video, and sends
/// what is put on `to_server`.
async fn participant(addr: std::net::SocketAddr, room: &str, pending: PendingClient, analyse: bool) -> Participant {
    let mut ws = connect(addr).await;
    join(&mut ws, room).await;
    send(&mut ws, json!({"type":"publish","sdp":pending.offer(),"subscribe":true,"analyse":analyse})).await;
    let answer = recv_type(&mut ws, "publish-answer").await;
    let client = Arc::new(pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(20)).await.unwrap());
    let seen = Arc::new(Mutex::new(Seen { detections: Vec::new(), video_mid: None }));
    let (tx, changed) = watch::channel(0u64);
    let (to_server, mut outgoing) = mpsc::unbounded_channel::<Value>();
    let (c, s) = (client.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(v) = outgoing.recv() => send(&mut ws, v).await,
                frame = ws.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    let Message::Text(t) = frame else { continue };
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    match v["type"].as_str() {
                        Some("offer") => {
                            let answer = c.accept_offer(v["sdp"].as_str().unwrap()).await.expect("offer accepted");
                            send(&mut ws, json!({"type":"answer","sdp":answer})).await;
                            let video = v["tracks"].as_array().into_iter().flatten().find(|t| t["kind"] == "video");
                            s.lock().unwrap().video_mid = video.and_then(|t| t["mid"].as_str()).map(str::to_owned);
                        }
                        Some("detections") => s.lock().unwrap().detections.push(v),
                        Some("error") => panic!("server error: {v}"),
                        _ => continue,
                    }
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
    });
    Participant { client, seen, changed, to_server, _task: task }
}

/// The size in the SPS of the newest received video keyframe, and its RTP timestamp.
fn newest_keyframe_size(client: &Client) -> Option<((u32, u32), u32)> {
    client.received().iter().rev().filter(|f| f.kind == MediaKind::Video).find_map(|f| {
        let sps = check_access_unit(&f.data, &SpsLimits::default()).ok().flatten()?;
        Some(((sps.width, sps.height), f.rtp_timestamp))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_layer_of_their_tile_on_one_timeline_and_the_detector_the_small_one() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let server =
        start_server(&["--no-stun", "--media-port", "0", "--max-detect-fps", "5", "--room-capacity", "4"]).await;
    let addr = server.http_addr;
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let layers: Vec<_> = LAYERS
        .iter()
        .map(|&(rid, w, h, offset, bps)| (rid, offset, encode_loop(&photo, w, h, 30, 4.0, bps).expect("encode")))
        .collect();

    let room = "room-simulcast-1";
    let publisher =
        participant(addr, room, PendingClient::simulcast(LOCALHOST, &["q", "h", "f"]).await.unwrap(), true).await;
    let small = participant(addr, room, PendingClient::with_tracks(LOCALHOST, 1, false).await.unwrap(), false).await;
    let big = participant(addr, room, PendingClient::with_tracks(LOCALHOST, 1, false).await.unwrap(), false).await;
    let sender = publisher.client.clone();
    let streaming = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0u32.. {
            tick.tick().await;
            for (rid, offset, frames) in &layers {
                let frame = &frames[n as usize % frames.len()];
                sender.send_layer(rid, frame.data.clone(), offset.wrapping_add(n.wrapping_mul(3000)));
            }
        }
    });

    // Each subscriber tells the server its tile once it knows the video's mid.
    for (p, (w, h)) in [(&small, (320u32, 180u32)), (&big, (1280, 720))] {
        until("the video is offered", p.changed.clone(), || p.seen.lock().unwrap().video_mid.is_some()).await;
        let mid = p.seen.lock().unwrap().video_mid.clone().unwrap();
        p.to_server.send(json!({"type":"track-settings","mid":mid,"width":w,"height":h})).unwrap();
    }
    // The q layer's clock is the timeline every layer is mapped onto.
    let on_timeline =
        |ts: u32| ts.wrapping_sub(LAYERS[0].3).is_multiple_of(3000) && ts.wrapping_sub(LAYERS[0].3) < 3000 * 100_000;
    for (p, want) in [(&small, (320, 180)), (&big, (1280, 720))] {
        until(&format!("a {want:?} keyframe arrives"), p.client.received_watch(), || {
            newest_keyframe_size(&p.client).is_some_and(|(size, _)| size == want)
        })
        .await;
        let (_, ts) = newest_keyframe_size(&p.client).unwrap();
        assert!(on_timeline(ts), "{want:?} layer's timestamp {ts} is on the q layer's timeline");
    }
    // Later frames stay on the layer (no flapping back) and on the timeline.
    let mark = (small.client.received().len(), big.client.received().len());
    until("more frames", big.client.received_watch(), || big.client.received().len() > mark.1 + 60).await;
    for (p, from, want) in [(&small, mark.0, (320, 180)), (&big, mark.1, (1280, 720))] {
        let frames: Vec<_> =
            p.client.received().into_iter().skip(from).filter(|f| f.kind == MediaKind::Video).collect();
        assert!(frames.iter().all(|f| on_timeline(f.rtp_timestamp)), "every frame on the timeline");
        for f in &frames {
            if let Ok(Some(sps)) = check_access_unit(&f.data, &SpsLimits::default()) {
                assert_eq!((sps.width, sps.height), want, "keyframes stay on the tile's layer");
            }
        }
    }

    // Detections: made on the 640×360 layer (the first, before it was mapped, may be on
    // the 320×180 one), never on the full one; keyed on the same timeline; a bus found.
    let on_h = |d: &Value| (d["width"].as_u64(), d["height"].as_u64()) == (Some(640), Some(360));
    until("detections of the bus on the 640×360 layer", small.changed.clone(), || {
        small.seen.lock().unwrap().detections.iter().any(|d| on_h(d) && d["detections"].to_string().contains("\"bus\""))
    })
    .await;
    let seen = small.seen.lock().unwrap().detections.clone();
    let first_h = seen.iter().position(on_h).unwrap();
    for d in &seen {
        assert!(on_timeline(d["rtp_timestamp"].as_u64().unwrap() as u32), "{d}");
        assert_ne!(d["width"].as_u64(), Some(1280), "the full layer is never decoded: {d}");
    }
    assert!(seen[first_h..].iter().all(on_h), "once on the 640×360 layer, the detector stays there");
    // A simulcast publisher is never capped by REMB (its own congestion control picks
    // the layers it can send; one slow downlink must not pause the big layer for all).
    assert_eq!(publisher.client.feedback().remb, vec![], "no REMB to a simulcast publisher");

    // The small tile hidden: its video stops; shown again: it resumes.
    let mid = small.seen.lock().unwrap().video_mid.clone().unwrap();
    small.to_server.send(json!({"type":"track-settings","mid":mid,"width":0,"height":0})).unwrap();
    // Frames in flight may still land; then nothing for a while the big tile gets 30.
    until("big gets 10 frames", big.client.received_watch(), {
        let n = big.client.received().len();
        let b = big.client.clone();
        move || b.received().len() > n + 10
    })
    .await;
    let hidden_at = small.client.received().len();
    until("big gets 30 more", big.client.received_watch(), {
        let n = big.client.received().len();
        let b = big.client.clone();
        move || b.received().len() > n + 30
    })
    .await;
    assert_eq!(small.client.received().len(), hidden_at, "a hidden tile's video is not sent");
    small.to_server.send(json!({"type":"track-settings","mid":mid,"width":320,"height":180})).unwrap();
    until("the small tile's video resumes", small.client.received_watch(), || {
        small.client.received().len() > hidden_at + 10
    })
    .await;
    streaming.abort();
}

//! Decoder bombs through the real server: publishers whose keyframes carry an SPS asking
//! for openh264's maximum picture (4096×2304, 16 reference frames: ~240 MB of decoder
//! per track) are refused before the decoder sees them. The process's memory stays
//! bounded, the refusals are counted, and a camera in another room keeps its detection
//! rate meanwhile.
//!
//! Its own test binary, so the resident memory measured is this test's alone.
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{crafted_sps, encode_loop, load_test_photo, replace_sps, EncodedFrame};
use common::*;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const TICKS_PER_FRAME: u32 = 3000; // 30 fps on the 90 kHz RTP clock
const BOMBS: usize = 4;
/// Results counted per phase (before and during the bombs).
const RESULTS: usize = 30;

fn rss_mib() -> f64 {
    callsight_measure::proc::rss_kib(callsight_measure::proc::Process::Current).expect("VmRSS") as f64 / 1024.0
}

async fn media_stats(addr: SocketAddr) -> Value {
    health(addr).await["media"]["stats"].clone()
}

/// Joins `room` on `ws` and publishes one str0m video track.
async fn publish(ws: &mut Ws, room: &str) -> Client {
    join(ws, room).await;
    let pending = PendingClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("client socket");
    send(ws, json!({"type":"publish","sdp":pending.offer()})).await;
    let answer = recv(ws).await;
    assert_eq!(answer["type"], "publish-answer", "{answer}");
    pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(10)).await.expect("ICE + DTLS connect")
}

/// Sends `frames` in a loop at 30 fps until aborted.
fn stream(publisher: Client, frames: Vec<EncodedFrame>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for i in 0u32.. {
            tick.tick().await;
            let ts = 90_000u32.wrapping_add(i.wrapping_mul(TICKS_PER_FRAME));
            publisher.send_frame(frames[i as usize % frames.len()].data.clone(), ts, None);
        }
    })
}

/// Results per second of video over the next `RESULTS` detections messages on `ws`,
/// timed by their RTP timestamps (so messages that waited unread in the socket count
/// at the pace the server produced them, not the pace this test read them).
async fn detection_rate(ws: &mut Ws) -> f64 {
    let mut stamps = Vec::with_capacity(RESULTS);
    while stamps.len() < RESULTS {
        let msg = recv(ws).await;
        if msg["type"] == "detections" {
            stamps.push(msg["rtp_timestamp"].as_u64().expect("rtp_timestamp") as u32);
        }
    }
    let span = stamps[RESULTS - 1].wrapping_sub(stamps[0]);
    (RESULTS - 1) as f64 / (f64::from(span.max(1)) / 90_000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sps_bombs_are_refused_memory_stays_bounded_and_other_rooms_keep_their_rate() {
    let server =
        start_server(&["--no-stun", "--media-port", "0", "--max-media-sessions-per-ip", "0", "--max-detect-fps", "10"])
            .await;
    let addr = server.http_addr;
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    // A keyframe every 30 frames: the bomb's SPS comes back once a second.
    let frames = encode_loop(&photo, 640, 480, 30, 6.0, 1_000_000).expect("encode bus.jpg");

    // A real camera in its own room, watched by its own participant.
    let mut camera_ws = connect(addr).await;
    let camera = publish(&mut camera_ws, "room-bomb-camera").await;
    let _camera_stream = stream(camera, frames.clone());
    // Warm up (model loaded, buffers sized), then measure.
    detection_rate(&mut camera_ws).await;
    let before = detection_rate(&mut camera_ws).await;
    let rss_before = rss_mib();

    // The bombs: the same stream, its SPS swapped for one asking for 4096×2304 × 16 refs.
    let bomb_sps = crafted_sps(256, 144, 16);
    let bomb: Vec<EncodedFrame> =
        frames.iter().map(|f| EncodedFrame { data: replace_sps(&f.data, &bomb_sps), keyframe: f.keyframe }).collect();
    assert!(bomb[0].data.windows(bomb_sps.len()).any(|w| w == bomb_sps.as_slice()), "the keyframe carries the bomb");
    let received_before = media_stats(addr).await["frames_received"].as_u64().unwrap_or(0);
    let mut bombers = Vec::new();
    let mut streams = Vec::new();
    for i in 0..BOMBS {
        let mut ws = connect(addr).await;
        streams.push(stream(publish(&mut ws, &format!("room-bomb-{i}")).await, bomb.clone()));
        bombers.push(ws);
    }
    // Wait until the bombers' first two seconds (two keyframes each) have arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = media_stats(addr).await;
        if stats["frames_received"].as_u64().unwrap_or(0) >= received_before + (BOMBS as u64 + 1) * 60 {
            break;
        }
        assert!(Instant::now() < deadline, "the bombers' frames never arrived: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling an HTTP counter
    }
    let during = detection_rate(&mut camera_ws).await;
    let rss_during = rss_mib();
    let stats = media_stats(addr).await;
    for s in &streams {
        s.abort();
    }

    eprintln!(
        "detections/s before {before:.1}, during {during:.1}; RSS {rss_before:.0} → {rss_during:.0} MiB; {stats}"
    );
    // Unguarded, each bomb track costs openh264 ~240 MB (4096×2304 × 1.5 × 17 pictures).
    assert!(
        rss_during - rss_before < 100.0,
        "RSS grew from {rss_before:.0} to {rss_during:.0} MiB with {BOMBS} bombs publishing"
    );
    assert!(during >= before * 0.5, "the other room's detection rate fell from {before:.1}/s to {during:.1}/s");
    // Every bomb keyframe was refused before decoding, none reached the decoder.
    assert!(stats["frames_refused_sps"].as_u64().unwrap_or(0) >= 2 * BOMBS as u64, "{stats}");
    assert_eq!(stats["decode_errors"], 0, "{stats}");
    assert_eq!(stats["sessions"], BOMBS + 1, "every session is still up: {stats}");
}

//! Tracking through the real server: a str0m publisher streams a real photo (the bus of
//! `test-data/bus.jpg`) sliding across a grey picture and vanishing for half a second
//! on each pass; the real decoder, motion gate, detector and tracker run in the server,
//! and the room receives `detections` whose bus keeps one `track_id` from result to
//! result, coasts (`predicted`) through the frames where it is gone, and comes back
//! under the same id. Then `/metrics` is scraped and must account for that run.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::PendingClient;
use callsight_media::synth::{encode_moving, load_test_photo};
use common::*;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const TICKS_PER_FRAME: u32 = 3000; // 30 fps on the 90 kHz RTP clock
const FIRST_TS: u32 = 4_290_000_000; // wraps after ~56 s: the tracker's clock must unwrap it
/// One pass right and back: 8 s (the bus moves ~0.16 frame widths per second).
const FRAMES: usize = 240;
/// On the way back the bus is gone for 15 frames (500 ms).
const HIDDEN: std::ops::Range<usize> = 150..165;
/// Long enough for the slowest machine; the test ends as soon as it has seen enough.
const WAIT: Duration = Duration::from_secs(150);

/// Share of box `a` inside box `b`.
fn inside(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    ix * iy / (a[2] * a[3]).max(1e-6)
}

fn bbox(d: &Value) -> [f32; 4] {
    let v: Vec<f32> = d["box"].as_array().expect("box").iter().map(|x| x.as_f64().expect("number") as f32).collect();
    [v[0], v[1], v[2], v[3]]
}

/// The bus the result shows: (track id, predicted): the one inside the photo's box when
/// it is visible, else the oldest tracked bus.
fn the_bus(msg: &Value, truth: Option<[f32; 4]>) -> Option<(u64, bool)> {
    let buses: Vec<&Value> =
        msg["detections"].as_array().expect("detections").iter().filter(|d| d["label"] == "bus").collect();
    let on_truth = truth.and_then(|t| {
        buses.iter().map(|d| (inside(bbox(d), t), *d)).filter(|(v, _)| *v > 0.7).max_by(|a, b| a.0.total_cmp(&b.0))
    });
    let best = match on_truth {
        Some((_, d)) => d,
        None => *buses.first()?,
    };
    let id = best["track_id"].as_u64().unwrap_or_else(|| panic!("tracked objects carry a track_id: {best}"));
    let v = best["velocity"].as_array().unwrap_or_else(|| panic!("and a velocity: {best}"));
    assert!(v.len() == 4 && v.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)), "{best}");
    Some((id, best.get("predicted") == Some(&json!(true))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_object_keeps_its_track_id_through_a_missed_detection() {
    // Coasting long enough that a slow machine (one result a second) cannot lose the bus.
    let server = start_server(&["--no-stun", "--media-port", "0", "--track-coast-ms", "5000"]).await;
    let addr = server.http_addr;
    let mut alice = connect(addr).await;
    join(&mut alice, "room-track-1").await;

    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let video = encode_moving(&photo, 640, 480, 300, FRAMES, HIDDEN).expect("encode the moving bus");
    let pending = PendingClient::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).await.expect("client socket");
    send(&mut alice, json!({"type":"publish","sdp":pending.offer()})).await;
    let answer = recv(&mut alice).await;
    assert_eq!(answer["type"], "publish-answer", "{answer}");
    let publisher =
        pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(10)).await.expect("ICE + DTLS connect");
    let frames = video.frames.clone();
    let streamer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for i in 0u32.. {
            tick.tick().await;
            let ts = FIRST_TS.wrapping_add(i.wrapping_mul(TICKS_PER_FRAME));
            publisher.send_frame(frames[i as usize % frames.len()].data.clone(), ts, None);
        }
    });

    // Per result: which frame it is, and the bus in it.
    let mut last: Option<(u64, bool)> = None;
    let (mut pairs, mut results) = (0, 0);
    // The bus id seen just before a result for a hidden frame, if that result coasted it.
    let mut coasted: Option<u64> = None;
    let mut came_back = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(came_back && pairs >= 10) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {results} results: {pairs} consecutive pairs, coasted {coasted:?}, came back {came_back}"
        );
        let msg = recv(&mut alice).await;
        if msg["type"] != "detections" {
            continue;
        }
        results += 1;
        let ts = msg["rtp_timestamp"].as_u64().expect("rtp_timestamp") as u32;
        let n = ts.wrapping_sub(FIRST_TS) / TICKS_PER_FRAME;
        let frame = n as usize % FRAMES;
        let truth = video.boxes[frame];
        let bus = the_bus(&msg, truth);
        match (last, bus) {
            (Some((a, _)), Some((b, _))) => {
                assert_eq!(a, b, "frame {frame}: the bus changed its track_id between consecutive results: {msg}");
                pairs += 1;
            }
            // The bus is only ever missing before the tracker confirmed it (the start).
            (Some(_), None) => panic!("frame {frame}: the tracked bus vanished from the results: {msg}"),
            _ => {}
        }
        if let Some((id, predicted)) = bus {
            if truth.is_none() {
                assert!(predicted, "frame {frame} has no bus, so its box is a prediction: {msg}");
                coasted = Some(id);
            } else if !predicted && coasted == Some(id) {
                came_back = true;
            }
        }
        last = bus.or(last);
    }

    // The same run seen through /metrics (Prometheus text, scraped as a local caller).
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let value = |series: &str| -> f64 {
        let line =
            metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad line {line}"))
    };
    for stage in ["receive", "decode", "queue", "inference", "send"] {
        let n = value(&format!("callsight_media_stage_latency_seconds_count{{stage=\"{stage}\"}}"));
        assert!(n >= results as f64 || stage == "send", "{stage}: {n} observations for {results} results");
        assert!(n >= 1.0, "{stage}: {n}");
    }
    // One published track: slot 0; every result came from a detected frame.
    let detected = value("callsight_media_track_frames_total{track=\"0\",outcome=\"detected\"}");
    assert!(detected >= results as f64, "{detected} detected frames for {results} results");
    assert!(value("callsight_media_track_objects_total{track=\"0\"}") >= pairs as f64);
    assert_eq!(value("callsight_media_sessions"), 1.0);
    assert_eq!(value("callsight_ws_connections"), 1.0);
    assert!(value("callsight_ws_messages_total{direction=\"in\"}") >= 2.0, "join + publish");
    assert!(value("callsight_ws_messages_total{direction=\"out\"}") >= results as f64 + 2.0);
    assert_eq!(value("callsight_media_decode_errors_total"), 0.0);
    streamer.abort();
}

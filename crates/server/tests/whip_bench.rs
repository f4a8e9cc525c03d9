//! Benchmark (prints a table, asserts no speed): WHIP publish → first box on a subscriber.
//! One server (real detector, the bus photo); N times in a row a str0m WHIP client POSTs
//! its offer, connects (ICE + DTLS over UDP on 127.0.0.1) and streams 640×480 H.264 at
//! 30 fps (pre-encoded, first frame a keyframe); a WebSocket member of the room waits for
//! the first `detections` of that participant with a box in it. Times from the POST:
//! the `201` (admission + answer), ICE + DTLS connected, the first box at the member.
//! Then DELETE, and the member sees `peer-left` before the next run.
//!
//! cargo test --workspace --test whip_bench -- --ignored --nocapture   (WHIP_BENCH_RUNS=20)

mod common;

use callsight_measure::percentile;
use callsight_media::client::PendingClient;
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark, prints a table: cargo test --workspace --test whip_bench -- --ignored --nocapture"]
async fn whip_publish_to_first_box() {
    let runs: usize = std::env::var("WHIP_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let server = start_server(&["--no-stun", "--media-port", "0", "--room-capacity", "4"]).await;
    let addr = server.http_addr;
    let room = "room-whip-bench";
    let mut member = connect(addr).await;
    let key = join(&mut member, room).await["ingest_key"].as_str().unwrap().to_owned();
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = Arc::new(encode_loop(&photo, 640, 480, 30, 2.0, 1_000_000).expect("encode bus.jpg"));

    let (mut answered, mut connected, mut first_box) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let pending = PendingClient::with_tracks(IpAddr::V4(Ipv4Addr::LOCALHOST), 1, false).await.unwrap();
        let t0 = Instant::now();
        let r = post_offer(addr, &format!("/whip/{room}?name=bench-{run}"), Some(&key), pending.offer()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let t_answer = t0.elapsed();
        let location = r.header("location").unwrap().to_owned();
        let client = Arc::new(pending.connect(&r.body, Duration::from_secs(20)).await.expect("connects"));
        let t_connected = t0.elapsed();
        let (c, f) = (client.clone(), frames.clone());
        let stream = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            for k in 0u32.. {
                tick.tick().await;
                c.send_frame(f[k as usize % f.len()].data.clone(), 90_000 + k * 3000, Some(SystemTime::now()));
            }
        });
        let id = loop {
            let j = next_of(&mut member, "peer-joined", WAIT).await;
            if j["peer"]["name"] == format!("bench-{run}").as_str() {
                break j["peer"]["id"].as_str().unwrap().to_owned();
            }
        };
        let t_box = loop {
            let d = next_of(&mut member, "detections", WAIT).await;
            if d["participant"] == id.as_str() && !d["detections"].as_array().unwrap().is_empty() {
                break t0.elapsed();
            }
        };
        stream.abort();
        assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
        loop {
            if next_of(&mut member, "peer-left", WAIT).await["id"] == id.as_str() {
                break;
            }
        }
        until_sessions(addr, 0).await;
        answered.push(t_answer.as_secs_f64() * 1e3);
        connected.push(t_connected.as_secs_f64() * 1e3);
        first_box.push(t_box.as_secs_f64() * 1e3);
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nWHIP publish → first box, {runs} runs, str0m client on 127.0.0.1, 640×480@30 H.264 (bus.jpg), load {}",
        load.trim()
    );
    println!("| from the POST to | p50 ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (what, v) in [
        ("201 + answer", &mut answered),
        ("ICE + DTLS connected", &mut connected),
        ("first box at a room member", &mut first_box),
    ] {
        let max = v.iter().cloned().fold(0.0, f64::max);
        let p50 = percentile(v, 50.0).unwrap();
        let p95 = percentile(v, 95.0).unwrap();
        println!("| {what} | {p50:.0} | {p95:.0} | {max:.0} |");
    }
}

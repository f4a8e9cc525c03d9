//! End-to-end tests of the media leg with real parts: a str0m client publishes H.264
//! (openh264-encoded from the real test photos) over real UDP on 127.0.0.1 to a real
//! `MediaHub` running the real bundled detector.
//!
//! Needs `test-data/bus.jpg` (run scripts/fetch-test-data.sh).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo, EncodedFrame};
use callsight_media::{DetectionEvent, MediaConfig, MediaError, MediaHub, ParticipantKey};
use callsight_vision::{Detector, DetectorConfig};
use tokio::sync::broadcast;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous: the tract backend on a busy 2-core machine can take ~1 s per frame.
const WAIT: Duration = Duration::from_secs(90);
const TICKS_PER_FRAME: u32 = 3000; // 30 fps at 90 kHz
const FIRST_TS: u32 = 4_000_000_000; // wraps around u32 after ~100 s: exercises wrapping

fn detector() -> Arc<Detector> {
    static D: OnceLock<Arc<Detector>> = OnceLock::new();
    D.get_or_init(|| Arc::new(Detector::load(&DetectorConfig::default()).expect("bundled detector loads"))).clone()
}

fn bus_frames(w: u32, h: u32, n: usize) -> Vec<EncodedFrame> {
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    encode_loop(&photo, w, h, n, 6.0, 1_500_000).expect("encode bus.jpg")
}

fn bus_640() -> Vec<EncodedFrame> {
    static F: OnceLock<Vec<EncodedFrame>> = OnceLock::new();
    F.get_or_init(|| bus_frames(640, 480, 30)).clone()
}

fn key(p: &str) -> ParticipantKey {
    ParticipantKey { room: "room-1".into(), participant: p.into() }
}

fn local_config() -> MediaConfig {
    MediaConfig { udp_bind: SocketAddr::new(LOCALHOST, 0), ..MediaConfig::default() }
}

async fn connect(hub: &MediaHub, k: &ParticipantKey) -> Client {
    let pending = PendingClient::new(LOCALHOST).await.expect("client socket");
    let answer = hub.publish(k.clone(), pending.offer()).await.expect("offer accepted");
    pending.connect(&answer, Duration::from_secs(10)).await.expect("ICE + DTLS connect on loopback")
}

/// What the sender stamped: RTP timestamp → expected capture time (unix ms).
type Sent = Arc<Mutex<HashMap<u32, f64>>>;

/// Streams `frames` in a loop at 30 fps; abs-capture-time on every 30th frame (as
/// Chromium does about once a second).
fn stream(publisher: Arc<Client>, frames: Vec<EncodedFrame>) -> (tokio::task::JoinHandle<()>, Sent) {
    let sent: Sent = Arc::default();
    let s = sent.clone();
    let base_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as f64;
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for i in 0u64.. {
            tick.tick().await;
            let frame = &frames[i as usize % frames.len()];
            let ts = FIRST_TS.wrapping_add((i as u32).wrapping_mul(TICKS_PER_FRAME));
            let capture_ms = base_ms + i as f64 * TICKS_PER_FRAME as f64 / 90.0;
            let stamp = (i % 30 == 0).then(|| UNIX_EPOCH + Duration::from_secs_f64(capture_ms / 1000.0));
            s.lock().unwrap().insert(ts, capture_ms);
            publisher.send_frame(frame.data.clone(), ts, stamp);
        }
    });
    (task, sent)
}

async fn next_event(rx: &mut broadcast::Receiver<Arc<DetectionEvent>>, participant: &str) -> Arc<DetectionEvent> {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Err(_) => panic!("no detection event for {participant} within {WAIT:?}"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("event channel: {e}"),
            Ok(Ok(ev)) if ev.result.participant == participant => return ev,
            Ok(Ok(_)) => continue,
        }
    }
}

fn check_event_matches_sent(ev: &DetectionEvent, sent: &Sent) {
    let sent = sent.lock().unwrap();
    let expected = sent
        .get(&ev.result.rtp_timestamp)
        .unwrap_or_else(|| panic!("event rtp_timestamp {} was never sent", ev.result.rtp_timestamp));
    let got = ev.result.capture_time.expect("capture time known (frame 0 carries abs-capture-time)");
    // abs-capture-time is NTP 32.32 fixed point: sub-microsecond; extrapolation adds none.
    assert!((got - expected).abs() < 0.5, "capture time {got} vs sent {expected}");
}

/// Waits (on the hub's lifecycle signal, not a timer) until `pred(stats)` holds.
async fn wait_stats(hub: &MediaHub, what: &str, pred: impl Fn(&callsight_media::MediaStats) -> bool) {
    let mut life = hub.lifecycle();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred(&hub.stats()) {
        match tokio::time::timeout_at(deadline, life.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("{what}: not reached; stats {:?}", hub.stats()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_bus_is_detected_with_the_sent_timestamps() {
    let hub = MediaHub::start(local_config(), detector()).await.expect("hub starts");
    let mut events = hub.events();
    let k = key("alice");
    let publisher = Arc::new(connect(&hub, &k).await);
    let (task, sent) = stream(publisher.clone(), bus_640());

    let mut labels = HashSet::new();
    let mut n = 0;
    while !(labels.contains("bus") && labels.contains("person")) {
        let ev = next_event(&mut events, "alice").await;
        assert_eq!(ev.room, "room-1");
        assert_eq!((ev.result.width, ev.result.height), (640, 480));
        check_event_matches_sent(&ev, &sent);
        for d in &ev.result.detections {
            assert!(d.bbox.iter().all(|v| (-0.01..=1.01).contains(v)), "box {:?}", d.bbox);
            labels.insert(d.label.clone());
        }
        n += 1;
        assert!(n < 200, "200 frames detected without bus + person; labels so far {labels:?}");
    }
    let st = hub.stats();
    assert!(st.frames_received >= st.frames_decoded && st.frames_decoded >= st.frames_detected);
    assert!(st.frames_detected >= n, "{st:?}");
    assert_eq!((st.sessions, st.decoders), (1, 1));
    assert!(st.pending_frames <= 1);
    assert!(st.latency_p95_ms.is_some());
    // Serialised like the server forwards it: `box`, no room.
    let json = serde_json::to_value(&next_event(&mut events, "alice").await.result).expect("serialize");
    assert!(json.get("room").is_none() && json.get("rtp_timestamp").is_some());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_mid_stream_frees_session_decoder_and_pipeline() {
    let hub = MediaHub::start(local_config(), detector()).await.expect("hub starts");
    let mut events = hub.events();
    let k = key("bob");
    let publisher = Arc::new(connect(&hub, &k).await);
    let (task, _sent) = stream(publisher.clone(), bus_640());
    next_event(&mut events, "bob").await;
    assert_eq!(hub.stats().decoders, 1);

    hub.unpublish(&k);
    wait_stats(&hub, "session, decoder and pending frame freed", |s| {
        s.sessions == 0 && s.decoders == 0 && s.pending_frames == 0
    })
    .await;
    // The client keeps sending: nothing reaches a decoder any more, no more events.
    let received = hub.stats().frames_received;
    let quiet = tokio::time::timeout(Duration::from_secs(2), next_event(&mut events, "bob")).await;
    // Results already in flight when unpublish landed are discarded, so none may come.
    assert!(quiet.is_err(), "detections after unpublish: {:?}", quiet.ok());
    let st = hub.stats();
    assert_eq!(st.frames_received, received, "frames still accepted after unpublish");
    assert!(st.garbage_packets > 0, "the client's packets must be turned away: {st:?}");
    task.abort();
}

/// xorshift: deterministic junk without another dependency.
fn junk(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_packets_and_frames_do_not_break_a_session() {
    let hub = MediaHub::start(local_config(), detector()).await.expect("hub starts");
    let hub_addr = hub.local_addrs()[0];
    let mut events = hub.events();
    let k = key("carol");
    let publisher = Arc::new(connect(&hub, &k).await);

    // A garbage "frame" through the real RTP path (valid SRTP, nonsense H.264), after a
    // keyframe: the decoder must fail on it and ask for a keyframe.
    let frames = bus_640();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut kf = publisher.keyframe_watch();
    publisher.send_frame(frames[0].data.clone(), 1000, None);
    for i in 0..5u32 {
        let mut bad = vec![0, 0, 0, 1, 0x41];
        bad.extend(junk(&mut seed, 3000));
        publisher.send_frame(bad.into(), 1000 + (i + 1) * TICKS_PER_FRAME, None);
    }
    tokio::time::timeout(Duration::from_secs(10), kf.changed())
        .await
        .expect("keyframe request (PLI) after undecodable frames")
        .expect("client alive");
    assert!(hub.stats().keyframe_requests >= 1);

    // Junk datagrams from a stranger and from the publisher's own address (which the
    // session accepts and has to reject packet by packet).
    let stranger = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let firsts = [0x00u8, 0x01, 0x14, 0x16, 0x17, 0x3f, 0x80, 0x81, 0x90, 0xbf, 0xc8, 0xff];
    let mut sent_junk = 0u64;
    for i in 0..400usize {
        let len = 1 + (i * 37) % 300;
        let mut p = junk(&mut seed, len);
        p[0] = firsts[i % firsts.len()];
        stranger.send_to(&p, hub_addr).await.unwrap();
        sent_junk += 1;
        if i % 4 == 0 {
            publisher.send_raw(hub_addr, &p).await.unwrap();
        }
    }
    stranger.send_to(&[], hub_addr).await.unwrap();

    // The session still works: detections for frames sent after all that junk.
    let (task, sent) = stream(publisher.clone(), frames);
    let mut ev = next_event(&mut events, "carol").await;
    // The keyframe sent before the junk (ts 1000) may still be in flight.
    while ev.result.rtp_timestamp == 1000 {
        ev = next_event(&mut events, "carol").await;
    }
    check_event_matches_sent(&ev, &sent);
    let st = hub.stats();
    // Not all 500 arrive: the kernel drops what overflows the socket's receive buffer.
    assert!(st.garbage_packets > 0 && st.garbage_packets <= sent_junk + 200, "{st:?}");
    assert!(st.decode_errors >= 1, "{st:?}");
    assert_eq!(st.sessions, 1);
    assert!(publisher.is_running());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_downscaled_before_detection() {
    let cfg = MediaConfig { max_pixels: 640 * 360, ..local_config() };
    let hub = MediaHub::start(cfg, detector()).await.expect("hub starts");
    let mut events = hub.events();
    let k = key("dave");
    let publisher = Arc::new(connect(&hub, &k).await);
    let (task, sent) = stream(publisher.clone(), bus_frames(1280, 720, 10));
    let mut labels = HashSet::new();
    for _ in 0..100 {
        let ev = next_event(&mut events, "dave").await;
        // Boxes are normalised, so the event reports the decoded size.
        assert_eq!((ev.result.width, ev.result.height), (1280, 720));
        check_event_matches_sent(&ev, &sent);
        labels.extend(ev.result.detections.iter().map(|d| d.label.clone()));
        if labels.contains("person") {
            break;
        }
    }
    assert!(labels.contains("person"), "downscaled frames still show people: {labels:?}");
    let st = hub.stats();
    assert!(st.frames_downscaled > 0 && st.frames_downscaled <= st.frames_decoded, "{st:?}");
    // Memory: at most one decoded frame waits per track.
    assert!(st.pending_frames <= 1, "{st:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_and_session_limit_are_clear_errors() {
    let cfg = MediaConfig { max_sessions: 1, ..local_config() };
    let hub = MediaHub::start(cfg, detector()).await.expect("hub starts");
    let r = hub.publish(key("x"), "this is not SDP").await;
    assert!(matches!(r, Err(MediaError::BadOffer(_))), "{r:?}");
    let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
    let r = hub.publish(key("x"), &huge).await;
    assert!(matches!(r, Err(MediaError::BadOffer(_))), "{r:?}");

    let first = PendingClient::new(LOCALHOST).await.unwrap();
    hub.publish(key("one"), first.offer()).await.expect("first session");
    let second = PendingClient::new(LOCALHOST).await.unwrap();
    let r = hub.publish(key("two"), second.offer()).await;
    assert!(matches!(r, Err(MediaError::TooManySessions(1))), "{r:?}");
    // Re-publishing the same key replaces its session instead of counting twice.
    let again = PendingClient::new(LOCALHOST).await.unwrap();
    hub.publish(key("one"), again.offer()).await.expect("republish replaces");
    assert_eq!(hub.stats().sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_publisher_is_closed_after_the_idle_timeout() {
    let cfg = MediaConfig { idle_timeout: Duration::from_secs(1), ..local_config() };
    let hub = MediaHub::start(cfg, detector()).await.expect("hub starts");
    let publisher = connect(&hub, &key("erin")).await;
    publisher.send_frame(bus_640()[0].data.clone(), 1, None);
    wait_stats(&hub, "session and decoder up", |s| s.sessions == 1 && s.decoders == 1).await;
    // The client vanishes without a word (no DTLS close, no more STUN).
    drop(publisher);
    wait_stats(&hub, "idle session closed, decoder freed", |s| s.sessions == 0 && s.decoders == 0).await;
}

/// A stranger floods the media port with junk (~100 k datagrams/s) while a publisher
/// streams 30 fps: the junk is dropped on the socket task, before the queue real media
/// waits in, so the publisher's frames keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_session_keeps_flowing_under_a_junk_flood() {
    let hub = MediaHub::start(local_config(), detector()).await.expect("hub starts");
    let hub_addr = hub.local_addrs()[0];
    let mut events = hub.events();
    let k = key("fran");
    let publisher = Arc::new(connect(&hub, &k).await);
    let (task, sent) = stream(publisher.clone(), bus_640());
    next_event(&mut events, "fran").await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let flooder = std::thread::spawn(move || {
        let sock = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let (start, mut n) = (std::time::Instant::now(), 0u64);
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * 100_000.0) as u64;
            while n < due {
                let len = 20 + (n as usize * 31) % 180;
                let _ = sock.send_to(&junk(&mut seed, len), hub_addr);
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        (n, start.elapsed().as_secs_f64())
    });
    let sent_before = sent.lock().unwrap().len();
    let s0 = hub.stats();
    // The measurement window: three seconds of flood.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s1 = hub.stats();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (junk_sent, secs) = flooder.join().unwrap();
    let frames_sent = sent.lock().unwrap().len() - sent_before;
    let frames_received = s1.frames_received - s0.frames_received;
    println!(
        "junk flood: {:.0} junk pkts/s for {secs:.1} s; publisher sent {frames_sent} frames, hub received {frames_received} \
         ({:.1} fps); garbage counted {}, queue drops {}",
        junk_sent as f64 / secs,
        frames_received as f64 / secs,
        s1.garbage_packets - s0.garbage_packets,
        s1.datagrams_dropped - s0.datagrams_dropped,
    );
    assert!(s1.garbage_packets > s0.garbage_packets, "the junk reached the port: {s1:?}");
    // Junk never takes the known session's place in the queue: nothing of it is dropped
    // there. (What the kernel drops when the socket buffer overflows hits junk and media
    // alike; on a loaded machine in a debug build that is most of the loss.)
    assert_eq!(s1.datagrams_dropped, s0.datagrams_dropped, "known-session datagrams dropped from the queue");
    assert!(
        frames_received * 3 >= frames_sent as u64,
        "only {frames_received} of {frames_sent} frames got through the flood"
    );
    // And the session still produces detections afterwards.
    let ev = next_event(&mut events, "fran").await;
    assert_eq!(ev.result.participant, "fran");
    task.abort();
}

/// Motion gating: a still grey scene is not detected again (frames gated), and a bus
/// that then drives in is found on the first frames it is in. The re-check interval is
/// set far beyond the test, so only the gate's "changed" verdict can find it; tracking
/// is off, so the first frame that shows the bus reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_object_entering_a_still_scene_is_found_within_a_few_frames() {
    const FRAMES: usize = 150;
    const ENTRY: usize = 90; // 3 s of still picture first
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let video = callsight_media::synth::encode_moving(&photo, 640, 480, 300, FRAMES, 0..ENTRY).expect("encode");
    let config = MediaConfig {
        tracking: None,
        motion: Some(callsight_vision::MotionConfig { recheck_ms: 60_000.0, ..Default::default() }),
        ..local_config()
    };
    let hub = MediaHub::start(config, detector()).await.expect("hub starts");
    let mut events = hub.events();
    let k = key("still");
    let publisher = Arc::new(connect(&hub, &k).await);
    let frames = video.frames.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for (i, f) in frames.iter().enumerate() {
            tick.tick().await;
            publisher.send_frame(f.data.clone(), FIRST_TS.wrapping_add(i as u32 * TICKS_PER_FRAME), None);
        }
    });
    let mut still_results = 0;
    let found = loop {
        let ev = next_event(&mut events, "still").await;
        let frame = (ev.result.rtp_timestamp.wrapping_sub(FIRST_TS) / TICKS_PER_FRAME) as usize;
        if frame < ENTRY {
            still_results += 1;
            continue;
        }
        break (frame, ev);
    };
    let (frame, ev) = found;
    let gated = hub.stats().frames_gated;
    // The first picture is analysed; the still ones after it are not (a few may differ
    // where the encoder puts its once-a-second keyframes).
    assert!(still_results <= 6, "{still_results} results for a still picture");
    assert!(gated >= (ENTRY - 20) as u64, "only {gated} frames gated of {ENTRY} still ones: {:?}", hub.stats());
    assert!(frame - ENTRY <= 3, "the bus entered at frame {ENTRY}, first analysed at {frame}");
    let truth = video.boxes[frame].expect("the bus is in the picture");
    let bus = ev.result.detections.iter().find(|d| d.label == "bus").unwrap_or_else(|| panic!("no bus: {ev:?}"));
    let [x, y, w, h] = bus.bbox;
    let ix = ((x + w).min(truth[0] + truth[2]) - x.max(truth[0])).max(0.0);
    let iy = ((y + h).min(truth[1] + truth[3]) - y.max(truth[1])).max(0.0);
    // The truth is the photo's box; the bus is a part of the photo.
    assert!(ix * iy > 0.8 * w * h, "bus box {:?} outside the photo at {truth:?}", bus.bbox);
    eprintln!("still results {still_results}, gated {gated}, bus found on frame {frame} (entered at {ENTRY})");
    task.abort();
}

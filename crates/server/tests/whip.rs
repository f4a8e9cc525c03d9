//! WHIP ingest (RFC 9725) through the real server: HTTP semantics (status codes,
//! `Location`, `DELETE`, CORS, refusals of bad keys, tokens, content types, sizes and
//! codecs), a str0m publisher whose stream is analysed like any camera, and GStreamer's
//! own WebRTC stack (webrtcbin + libnice, `scripts/gst-whip-publish.py`) publishing into a
//! room where a participant receives its detections and its forwarded video.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh) and, for the GStreamer test,
//! Debian's python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-plugins-{good,bad,ugly},
//! gstreamer1.0-nice (scripts/test.sh installs them).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use str0m::media::MediaKind;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn vp8_only(offer: &str) -> String {
    offer.replace("H264/90000", "VP8/90000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publishes_into_a_room_and_refuses_what_it_must() {
    let server = start_server(&[
        "--no-stun",
        "--media-port",
        "0",
        "--room-capacity",
        "4",
        "--max-detect-fps",
        "5",
        "--max-whip-body-bytes",
        "20000",
    ])
    .await;
    let addr = server.http_addr;
    let room = "room-whip-0001";
    let path = format!("/whip/{room}");

    // A member of the room sees the room's ingest key; another room's differs.
    let mut member = connect(addr).await;
    let joined = join(&mut member, room).await;
    let key = joined["ingest_key"].as_str().expect("joined carries the ingest key").to_owned();
    let mut other = connect(addr).await;
    let other_key = join(&mut other, "room-whip-0002").await["ingest_key"].as_str().unwrap().to_owned();
    assert_ne!(key, other_key);

    let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    let offer = pending.offer().to_owned();

    // Refusals: nothing joins, no media session is made.
    let r = post_offer(addr, &path, None, &offer).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post_offer(addr, &path, Some(&other_key), &offer).await.status, 401, "another room's key");
    assert_eq!(post_offer(addr, "/whip/x", Some(&key), &offer).await.status, 404, "not a room name");
    let r = http(
        addr,
        "POST",
        &path,
        &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {key}"))],
        offer.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let r = post_offer(addr, &path, Some(&key), &vp8_only(&offer)).await;
    assert_eq!(r.status, 406, "{}", r.body);
    assert!(r.body.contains("VP8") && r.body.contains("H264") && r.body.contains("Opus"), "{}", r.body);
    let big = format!("{offer}{}", "a=x-padding\r\n".repeat(2000));
    assert_eq!(post_offer(addr, &path, Some(&key), &big).await.status, 413, "over --max-whip-body-bytes");
    let r = post_offer(addr, &path, Some(&key), "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n")
        .await;
    assert_eq!(r.status, 400, "a broken offer: {}", r.body);
    assert_eq!(health(addr).await["media"]["stats"]["sessions"], 0);
    assert_eq!(health(addr).await["connections"], 2, "refused requests leave no participant behind");

    // CORS preflight and the trickle verb.
    let r = http(
        addr,
        "OPTIONS",
        &path,
        &[("Origin", "https://obs.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));

    // A good offer: 201, the answer, the session's Location; the member sees it join.
    let r = post_offer(addr, &format!("{path}?name=Garden%20cam"), Some(&key), &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.starts_with(&format!("{path}/")) && location.len() > path.len() + 20, "{location}");
    // (The broken offer above joined and left again before its publish was refused.)
    let joined = loop {
        let joined = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await;
        if joined["peer"]["name"] != "WHIP" {
            break joined;
        }
    };
    assert_eq!(joined["peer"]["name"], "Garden cam");
    let whip_id = joined["peer"]["id"].as_str().unwrap().to_owned();
    let patch =
        http(addr, "PATCH", &location, &[("Content-Type", "application/trickle-ice-sdpfrag")], b"a=x\r\n").await;
    assert_eq!(patch.status, 428, "a PATCH without If-Match: {}", patch.body);

    // It streams; it is analysed like any camera: the member gets its detections.
    let client = Arc::new(pending.connect(&r.body, Duration::from_secs(20)).await.expect("ICE + DTLS connect"));
    let stream = stream_bus(client.clone());
    // (The first results may come before the tracker confirms anything.)
    tokio::time::timeout(WAIT, async {
        loop {
            let d = next_of(&mut member, "detections", WAIT).await;
            let bus = d["detections"].as_array().unwrap().iter().any(|o| o["label"] == "bus");
            if d["participant"] == whip_id.as_str() && bus {
                return;
            }
        }
    })
    .await
    .expect("the bus in the WHIP participant's detections");

    // DELETE ends it: the participant leaves, the media session is freed; a second DELETE is 404.
    let wrong_room = location.replacen(room, "room-whip-0002", 1);
    assert_eq!(http(addr, "DELETE", &wrong_room, &[], b"").await.status, 404, "the session is not another room's");
    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
    let left = next_of(&mut member, "peer-left", REPLY_DEADLINE).await;
    assert_eq!(left["id"], whip_id.as_str());
    until_sessions(addr, 0).await;
    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 404);
    stream.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_needs_a_room_token_when_tokens_are_required() {
    let dir = std::env::temp_dir().join(format!("callsight-whip-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_path = dir.join("secret");
    std::fs::write(&secret_path, "whip-token-secret-42\n").unwrap();
    let secret = secret_path.to_str().unwrap();
    let server = start_server(&[
        "--no-stun",
        "--media-port",
        "0",
        "--room-capacity",
        "4",
        "--require-token",
        "--token-secret-file",
        secret,
    ])
    .await;
    let addr = server.http_addr;
    let room = "room-whip-token";
    let mint = |room: &str, identity: &str, name: Option<&str>| {
        let claims =
            callsight_server::token::claims(room, identity, name, Duration::from_secs(3600), SystemTime::now());
        callsight_server::token::mint(b"whip-token-secret-42", &claims).unwrap()
    };
    let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    let path = format!("/whip/{room}");
    assert_eq!(post_offer(addr, &path, None, pending.offer()).await.status, 401);
    assert_eq!(post_offer(addr, &path, Some("not.a.jwt"), pending.offer()).await.status, 401);
    let foreign = mint("room-whip-elsewhere", "cam", None);
    assert_eq!(post_offer(addr, &path, Some(&foreign), pending.offer()).await.status, 403);
    assert_eq!(health(addr).await["connections"], 0);

    // A member joined with its own token sees no ingest key (the token is the key).
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, json!({"type":"join","room":room,"token":mint(room, "ada", None)})).await;
    assert!(joined.get("ingest_key").is_none(), "{joined}");
    let r = post_offer(addr, &path, Some(&mint(room, "cam-7", Some("Door camera"))), pending.offer()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let joined = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await;
    assert_eq!(joined["peer"]["name"], "Door camera", "the name comes from the token");
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
    next_of(&mut member, "peer-left", REPLY_DEADLINE).await;
}

/// Streams the bus photo (320×240 H.264, 30 fps) from `client` until aborted.
fn stream_bus(client: Arc<Client>) -> tokio::task::JoinHandle<()> {
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = encode_loop(&photo, 320, 240, 30, 2.0, 400_000).expect("encode bus.jpg");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for k in 0u32.. {
            tick.tick().await;
            let au = frames[k as usize % frames.len()].data.clone();
            client.send_frame(au, 90_000 + k * 3000, Some(SystemTime::now()));
        }
    })
}

/// Waits for a result of `participant`'s video with the bus in it.
async fn bus_seen(member: &mut Ws, participant: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let d = next_of(member, "detections", WAIT).await;
            let bus = d["detections"].as_array().unwrap().iter().any(|o| o["label"] == "bus");
            if d["participant"] == participant && bus {
                return;
            }
        }
    })
    .await
    .expect("the bus in the WHIP participant's detections")
}

/// A PATCH of `frag` to the session with `If-Match: if_match` (none when `None`).
async fn patch(addr: SocketAddr, location: &str, if_match: Option<&str>, frag: &str) -> Reply {
    let mut headers = vec![("Content-Type", "application/trickle-ice-sdpfrag")];
    if let Some(m) = if_match {
        headers.push(("If-Match", m));
    }
    http(addr, "PATCH", location, &headers, frag.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_trickles_candidates_by_patch_and_restarts_ice() {
    use callsight_server::sdpfrag::{frag_of, parse, with_ice};
    let args = ["--no-stun", "--media-port", "0", "--max-detect-fps", "5", "--max-whip-trickle-candidates", "2"];
    let server = start_server(&args).await;
    let addr = server.http_addr;
    let room = "room-whip-trickle";
    let mut member = connect(addr).await;
    let key = join(&mut member, room).await["ingest_key"].as_str().unwrap().to_owned();

    // The offer goes without candidates (a trickling client sends it before gathering).
    let pending = PendingClient::with_tracks(LOCALHOST, 1, false).await.expect("client socket");
    let (bare_offer, candidates) = split_candidates(pending.offer());
    assert_eq!(candidates.len(), 1, "{}", pending.offer());
    let r = post_offer(addr, &format!("/whip/{room}?name=trickler"), Some(&key), &bare_offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_owned();
    let etag = r.header("etag").expect("an ETag for the ICE session").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10, "{etag}");
    assert_eq!(r.header("accept-patch"), Some("application/trickle-ice-sdpfrag"));
    let (answer, server_candidates) = split_candidates(&r.body);
    assert!(!server_candidates.is_empty());
    let whip_id = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await["peer"]["id"].as_str().unwrap().to_owned();

    // Refused PATCHes change nothing.
    let ufrag = bare_offer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    let pwd = bare_offer.lines().find_map(|l| l.strip_prefix("a=ice-pwd:")).unwrap().to_owned();
    let trickle = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na={}\r\n",
        candidates[0]
    );
    assert_eq!(patch(addr, &location, None, &trickle).await.status, 428, "no If-Match");
    assert_eq!(patch(addr, &location, Some("\"stale\""), &trickle).await.status, 412, "another ICE session's tag");
    let r =
        http(addr, "PATCH", &location, &[("Content-Type", "application/sdp"), ("If-Match", &etag)], trickle.as_bytes())
            .await;
    assert_eq!(r.status, 415);
    assert_eq!(patch(addr, &location, Some(&etag), "this is not SDP\r\n").await.status, 400);
    let bad = format!("a=ice-ufrag:{ufrag}\r\na=candidate:oops\r\n");
    assert_eq!(patch(addr, &location, Some(&etag), &bad).await.status, 400, "an unparseable candidate");
    let three = format!("{trickle}a={c}\r\na={c}\r\n", c = candidates[0]);
    let r = patch(addr, &location, Some(&etag), &three).await;
    assert_eq!(r.status, 422, "over --max-whip-trickle-candidates: {}", r.body);
    let restart_without_pwd = "a=ice-ufrag:ysXw\r\n";
    assert_eq!(patch(addr, &location, Some("*"), restart_without_pwd).await.status, 422);
    let elsewhere = location.replacen(room, "room-whip-other", 1);
    assert_eq!(patch(addr, &elsewhere, Some(&etag), &trickle).await.status, 404);

    // The client does not get the server's candidates either: the only way the two can
    // meet is the server's checks to the candidate it learnt by PATCH.
    // (An mDNS candidate rides along: its name cannot be resolved, so it is skipped.)
    let mdns = "candidate:2 1 udp 2122260223 4b8e0c1c-3c1d-4a6f-9a3e-1f6f0f5d2a10.local 61764 typ host";
    let r = patch(addr, &location, Some(&etag), &format!("{trickle}a={mdns}\r\na=end-of-candidates\r\n")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("etag").is_none() && r.body.is_empty());
    let client = Arc::new(
        pending.connect(&answer, Duration::from_secs(20)).await.expect("ICE + DTLS through the trickled candidate"),
    );
    let stream = stream_bus(client.clone());
    bus_seen(&mut member, &whip_id).await;

    // ICE restart: new credentials both ways, a new ETag; the old one is refused after.
    let restart = client.ice_restart().await.expect("the client's restart offer");
    let new_ufrag = restart.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    assert_ne!(new_ufrag, ufrag);
    let mut connected = client.ice_connected_watch();
    let before = *connected.borrow_and_update();
    let r = patch(addr, &location, Some("*"), &frag_of(&restart)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/trickle-ice-sdpfrag"));
    let new_etag = r.header("etag").expect("the new ICE session's ETag").to_owned();
    assert_ne!(new_etag, etag);
    let frag = parse(&r.body).expect("the server's fragment parses");
    let old_server_ufrag = answer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap();
    let (server_ufrag, server_pwd) = (frag.ufrag.unwrap(), frag.pwd.unwrap());
    assert_ne!(server_ufrag, old_server_ufrag, "the server's credentials are new");
    assert!(!frag.candidates.is_empty() && frag.end_of_candidates, "{}", r.body);
    let restarted = with_ice(&answer, &server_ufrag, &server_pwd, &frag.candidates);
    client.accept_restart_answer(&restarted).await.expect("the client takes the server's new ICE");
    // ICE connects again with the new credentials on both sides (the old ones are gone).
    tokio::time::timeout(WAIT, connected.wait_for(|n| *n > before))
        .await
        .expect("ICE connected again after the restart")
        .unwrap();
    assert_eq!(patch(addr, &location, Some(&etag), &trickle).await.status, 412, "the old ICE session's tag");
    let stale = format!("a=ice-ufrag:{new_ufrag}\r\na={}\r\n", candidates[0]);
    assert_eq!(patch(addr, &location, Some(&new_etag), &stale).await.status, 204, "trickle into the new session");
    // Media still flows: new results of the bus after the restart.
    bus_seen(&mut member, &whip_id).await;

    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
    assert_eq!(patch(addr, &location, Some(&new_etag), &stale).await.status, 404, "the session is gone");
    until_sessions(addr, 0).await;
    stream.abort();
}

/// What the room member's signaling task saw.
#[derive(Default)]
struct Seen {
    whip_id: Option<String>,
    detections: Vec<Value>,
    /// mid → publisher, from the server's offers.
    tracks: HashMap<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_webrtcbin_publisher_is_seen_analysed_and_forwarded() {
    // libnice gathers no loopback candidates: the media leg listens on every interface
    // (as deployed by default), so its answer names the machine's own address too.
    let state_dir = test_state_dir();
    let argv = ["callsight", "--bind", "0.0.0.0:0", "--state-dir", &state_dir, "--no-stun", "--media-port", "0"];
    let more = ["--room-capacity", "4", "--max-detect-fps", "5"];
    let args = <TestCli as clap::Parser>::try_parse_from(argv.iter().chain(&more)).expect("flags parse").serve;
    let server = callsight_server::start(args).await.expect("server starts");
    let addr = SocketAddr::new(LOCALHOST, server.http_addr.port());
    let room = "room-whip-gst1";

    // A member that publishes and subscribes (it sends nothing): it receives the WHIP video.
    let mut ws = connect(addr).await;
    let key = join(&mut ws, room).await["ingest_key"].as_str().unwrap().to_owned();
    let pending = PendingClient::with_tracks(LOCALHOST, 1, false).await.expect("client socket");
    send(&mut ws, json!({"type":"publish","sdp":pending.offer(),"subscribe":true,"analyse":false})).await;
    let answer = recv_type(&mut ws, "publish-answer").await;
    let client = Arc::new(pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(20)).await.unwrap());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (tx, changed) = watch::channel(0u64);
    let (c, s) = (client.clone(), seen.clone());
    let signaling = tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(t) = frame else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            match v["type"].as_str() {
                Some("offer") => {
                    let answer = c.accept_offer(v["sdp"].as_str().unwrap()).await.expect("client accepts the offer");
                    send(&mut ws, json!({"type":"answer","sdp":answer})).await;
                    let mut s = s.lock().unwrap();
                    for t in v["tracks"].as_array().unwrap() {
                        s.tracks.insert(t["mid"].as_str().unwrap().into(), t["participant"].as_str().unwrap().into());
                    }
                }
                Some("peer-joined") if v["peer"]["name"] == "gst" => {
                    s.lock().unwrap().whip_id = v["peer"]["id"].as_str().map(str::to_owned)
                }
                Some("detections") => s.lock().unwrap().detections.push(v),
                Some("error") => panic!("server error: {v}"),
                _ => continue,
            }
            tx.send_modify(|n| *n += 1);
        }
    });

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/gst-whip-publish.py");
    let image = callsight_media::synth::test_data_dir().join("bus.jpg");
    let mut gst = tokio::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(format!("http://{addr}/whip/{room}?name=gst"))
        .args(["--key", &key, "--image"])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the GStreamer publisher");
    let mut lines = BufReader::new(gst.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.expect("the publisher posts its offer").unwrap();
    let first = first.unwrap_or_default();
    assert!(first.starts_with("location http://"), "GStreamer's WHIP POST: {first}");
    let printed = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("gst-whip-publish: {l}");
            all.push(l);
        }
        all
    });

    // Its detections reach the member (keyed by the publisher's RTP timestamps)…
    let s = seen.clone();
    let until = |what: &'static str, mut rx: watch::Receiver<u64>, done: Box<dyn Fn() -> bool + Send>| async move {
        tokio::time::timeout(WAIT, async {
            while !done() {
                rx.changed().await.expect("signaling runs");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"));
    };
    until(
        "a detection of the GStreamer stream with the bus in it",
        changed.clone(),
        Box::new(move || {
            let s = s.lock().unwrap();
            let Some(id) = &s.whip_id else { return false };
            s.detections.iter().any(|d| {
                d["participant"] == id.as_str()
                    && d["detections"].as_array().unwrap().iter().any(|o| o["label"] == "bus" || o["label"] == "person")
            })
        }),
    )
    .await;

    // …and its video is forwarded to the member (on the mid the server's offer named).
    let (s, c) = (seen.clone(), client.clone());
    until(
        "the member receives the GStreamer video",
        client.received_watch(),
        Box::new(move || {
            let s = s.lock().unwrap();
            let Some(id) = &s.whip_id else { return false };
            let mids: Vec<&String> = s.tracks.iter().filter(|(_, p)| *p == id).map(|(m, _)| m).collect();
            c.received().iter().filter(|f| f.kind == MediaKind::Video && mids.contains(&&f.mid.to_string())).count()
                >= 10
        }),
    )
    .await;

    // Closing the publisher's stdin: it DELETEs its session and exits.
    drop(gst.stdin.take());
    let status = tokio::time::timeout(WAIT, gst.wait()).await.expect("the publisher exits").unwrap();
    let printed = printed.await.unwrap();
    assert!(status.success(), "{printed:?}");
    assert!(printed.iter().any(|l| l == "deleted 200"), "{printed:?}");
    until_sessions(addr, 1).await;
    signaling.abort();
}

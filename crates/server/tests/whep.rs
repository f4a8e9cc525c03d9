//! WHEP viewing through the real server: a str0m WHIP publisher streams the bus photo
//! into a room; str0m WHEP players receive its video and audio with the publisher's RTP
//! timestamps and its detections on their `detections` data channel, keyed by those
//! timestamps; the room-wide form shows the earliest publisher; `DELETE` frees the media
//! session; bad keys, tokens, rooms, participants, offers, sizes and content types get
//! their status and leave no session; a viewer is not a participant anyone sees.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use str0m::media::MediaKind;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A WHEP player posts its offer and connects with the answer; returns it and its `Location`.
async fn watch(addr: SocketAddr, path: &str, key: &str) -> (Client, String) {
    let pending = PendingClient::viewer(LOCALHOST, Some("detections")).await.expect("client socket");
    let r = post_offer(addr, path, Some(key), pending.offer()).await;
    assert_eq!(r.status, 201, "{path}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let location = r.header("location").expect("Location").to_owned();
    let client = pending.connect(&r.body, Duration::from_secs(20)).await.expect("ICE + DTLS connect");
    (client, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_players_receive_a_participants_media_and_detections() {
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
        "--max-whep-sessions",
        "2",
    ])
    .await;
    let addr = server.http_addr;
    let room = "room-whep-0001";

    // A member of the room sees its view key (not the ingest key); another room's differs.
    let mut member = connect(addr).await;
    let joined = join(&mut member, room).await;
    let ingest_key = joined["ingest_key"].as_str().unwrap().to_owned();
    let view_key = joined["view_key"].as_str().expect("joined carries the view key").to_owned();
    assert_ne!(view_key, ingest_key);
    let mut other = connect(addr).await;
    let other_key = join(&mut other, "room-whep-0002").await["view_key"].as_str().unwrap().to_owned();
    assert_ne!(view_key, other_key);

    // A WHIP publisher streams the bus (video) and Opus-shaped packets (audio).
    let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    let r = post_offer(addr, &format!("/whip/{room}?name=cam"), Some(&ingest_key), pending.offer()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let whip_id = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await["peer"]["id"].as_str().unwrap().to_owned();
    let publisher = Arc::new(pending.connect(&r.body, Duration::from_secs(20)).await.expect("publisher connects"));
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = encode_loop(&photo, 320, 240, 30, 2.0, 400_000).expect("encode bus.jpg");
    let sent: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let (p, s) = (publisher.clone(), sent.clone());
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for k in 0u32.. {
            tick.tick().await;
            // Near the u32 wrap, so a rewritten timestamp could not pass by chance.
            let ts = 4_294_000_000u32.wrapping_add(k * 3000);
            s.lock().unwrap().insert(ts);
            p.send_frame(frames[k as usize % frames.len()].data.clone(), ts, Some(SystemTime::now()));
            p.send_audio(Arc::from(vec![0xfc, k as u8, 1, 2, 3]), 7_000_000 + k * 1600);
        }
    });
    until_sessions(addr, 1).await;

    // Refusals: no session is made.
    let path = format!("/whep/{room}/{whip_id}");
    let probe = PendingClient::viewer(LOCALHOST, Some("detections")).await.expect("client socket");
    let offer = probe.offer().to_owned();
    let r = post_offer(addr, &path, None, &offer).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "{}", r.body);
    assert_eq!(post_offer(addr, &path, Some(&ingest_key), &offer).await.status, 401, "the ingest key does not view");
    assert_eq!(post_offer(addr, &path, Some(&other_key), &offer).await.status, 401, "another room's key");
    let sdp = [("Content-Type", "application/json"), ("Authorization", &format!("Bearer {view_key}"))];
    assert_eq!(http(addr, "POST", &path, &sdp, offer.as_bytes()).await.status, 415);
    assert_eq!(post_offer(addr, "/whep/x", Some(&view_key), &offer).await.status, 404, "not a room name");
    let empty_room = "room-whep-nobody";
    let empty_key = {
        // The key of a room nobody is in (a member's view, taken before it leaves).
        let mut ws = connect(addr).await;
        let k = join(&mut ws, empty_room).await["view_key"].as_str().unwrap().to_owned();
        drop(ws);
        k
    };
    tokio::time::timeout(WAIT, async {
        while health(addr).await["connections"] != 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the empty room's member left");
    assert_eq!(post_offer(addr, &format!("/whep/{empty_room}"), Some(&empty_key), &offer).await.status, 404);
    let stranger = "A".repeat(whip_id.len());
    assert_eq!(post_offer(addr, &format!("/whep/{room}/{stranger}"), Some(&view_key), &offer).await.status, 404);
    assert_eq!(post_offer(addr, &format!("/whep/{room}/not-an-id"), Some(&view_key), &offer).await.status, 404);
    let r = post_offer(addr, &path, Some(&view_key), &offer.replace("H264/90000", "VP8/90000")).await;
    assert_eq!(r.status, 406, "{}", r.body);
    assert!(r.body.contains("VP8") && r.body.contains("H264"), "{}", r.body);
    let big = format!("{offer}{}", "a=x-padding\r\n".repeat(2000));
    assert_eq!(post_offer(addr, &path, Some(&view_key), &big).await.status, 413, "over --max-whip-body-bytes");
    let broken = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";
    assert_eq!(post_offer(addr, &path, Some(&view_key), broken).await.status, 400);
    let r = http(addr, "OPTIONS", &path, &[("Access-Control-Request-Method", "POST")], b"").await;
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, Some("*")));
    assert_eq!(health(addr).await["media"]["stats"]["sessions"], 1, "refused requests leave no session");
    drop(probe);

    // A player of the WHIP participant: its video and audio, the publisher's RTP timestamps.
    let (viewer, location) = watch(addr, &path, &view_key).await;
    assert!(location.starts_with(&format!("/whep/{room}/sessions/")), "{location}");
    until("20 video frames and 20 audio packets reach the player", viewer.received_watch(), || {
        let got = viewer.received();
        got.iter().filter(|f| f.kind == MediaKind::Video).count() >= 20
            && got.iter().filter(|f| f.kind == MediaKind::Audio).count() >= 20
    })
    .await;
    let got = viewer.received();
    let video: Vec<u32> = got.iter().filter(|f| f.kind == MediaKind::Video).map(|f| f.rtp_timestamp).collect();
    {
        let sent = sent.lock().unwrap();
        assert!(video.iter().all(|ts| sent.contains(ts)), "video RTP timestamps unchanged: {video:?}");
    }
    let audio = got.iter().filter(|f| f.kind == MediaKind::Audio).map(|f| f.rtp_timestamp);
    assert!(audio.clone().all(|ts| ts >= 7_000_000 && (ts - 7_000_000) % 1600 == 0), "{:?}", audio.collect::<Vec<_>>());

    // Its detections on the `detections` channel: the WebSocket's message, keyed by the
    // RTP timestamp of a frame the player received.
    until("the bus in a detections message on the data channel", viewer.messages_watch(), || {
        viewer.messages().iter().any(|m| {
            let d: Value = serde_json::from_str(m).unwrap();
            d["detections"].as_array().is_some_and(|a| a.iter().any(|o| o["label"] == "bus"))
        })
    })
    .await;
    let messages = viewer.messages();
    let received: HashSet<u32> = viewer.received().iter().map(|f| f.rtp_timestamp).collect();
    let mut keys = Vec::new();
    for m in &messages {
        let d: Value = serde_json::from_str(m).unwrap();
        assert_eq!(
            (d["type"].as_str(), d["participant"].as_str()),
            (Some("detections"), Some(whip_id.as_str())),
            "{d}"
        );
        assert!(d["width"].as_u64() == Some(320) && d["detections"].is_array(), "{d}");
        keys.push(d["rtp_timestamp"].as_u64().unwrap() as u32);
    }
    assert!(keys.iter().all(|ts| sent.lock().unwrap().contains(ts)), "keyed by the publisher's timestamps: {keys:?}");
    // (The first results may be of frames sent while the player was still connecting.)
    let last = keys.last().unwrap();
    assert!(received.contains(last), "the newest result names a frame the player received: {last}");

    // The room-wide form shows the earliest publisher: the WHIP participant here.
    let (room_viewer, room_location) = watch(addr, &format!("/whep/{room}"), &view_key).await;
    until("the room-wide player receives video", room_viewer.received_watch(), || {
        room_viewer.received().iter().filter(|f| f.kind == MediaKind::Video).count() >= 5
    })
    .await;
    let r = post_offer(addr, &format!("/whep/{room}"), Some(&view_key), &offer).await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("10")), "over --max-whep-sessions: {}", r.body);

    // Viewers are not participants: a newcomer sees the member and the WHIP camera only,
    // and the member's next peer-joined is the newcomer's.
    let mut newcomer = connect(addr).await;
    let peers = join(&mut newcomer, room).await["peers"].as_array().unwrap().len();
    assert_eq!(peers, 2, "the member and the camera");
    let next = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await;
    assert_ne!(next["peer"]["id"], whip_id.as_str());
    assert_eq!(health(addr).await["connections"], 4, "member, other, camera, newcomer");

    // DELETE frees each viewer's media session; a second DELETE (or another room's path) is 404.
    assert_eq!(http(addr, "DELETE", &location.replacen(room, "room-whep-0002", 1), &[], b"").await.status, 404);
    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
    until_sessions(addr, 2).await;
    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 404);
    assert_eq!(http(addr, "DELETE", &room_location, &[], b"").await.status, 200);
    until_sessions(addr, 1).await;
    stream.abort();
    drop((viewer, room_viewer, other, newcomer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_needs_a_room_token_with_the_subscribe_right_when_tokens_are_required() {
    let dir = std::env::temp_dir().join(format!("callsight-whep-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_path = dir.join("secret");
    std::fs::write(&secret_path, "whep-token-secret-42\n").unwrap();
    let server = start_server(&[
        "--no-stun",
        "--media-port",
        "0",
        "--require-token",
        "--token-secret-file",
        secret_path.to_str().unwrap(),
    ])
    .await;
    let addr = server.http_addr;
    let room = "room-whep-token";
    let mint = |room: &str, subscribe: bool| {
        let mut claims =
            callsight_server::token::claims(room, "screen", None, Duration::from_secs(3600), SystemTime::now());
        claims.video.can_subscribe = subscribe;
        callsight_server::token::mint(b"whep-token-secret-42", &claims).unwrap()
    };
    let mut member = connect(addr).await;
    let joined = join_with(&mut member, json!({"type":"join","room":room,"token":mint(room, true)})).await;
    assert!(joined.get("view_key").is_none(), "no key with tokens: {joined}");

    let pending = PendingClient::viewer(LOCALHOST, None).await.expect("client socket");
    let path = format!("/whep/{room}");
    assert_eq!(post_offer(addr, &path, None, pending.offer()).await.status, 401);
    assert_eq!(post_offer(addr, &path, Some("not.a.jwt"), pending.offer()).await.status, 401);
    assert_eq!(post_offer(addr, &path, Some(&mint("room-whep-other", true)), pending.offer()).await.status, 403);
    assert_eq!(
        post_offer(addr, &path, Some(&mint(room, false)), pending.offer()).await.status,
        403,
        "no subscribe right"
    );
    assert_eq!(health(addr).await["media"]["stats"]["sessions"], 0);
    let r = post_offer(addr, &path, Some(&mint(room, true)), pending.offer()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    until_sessions(addr, 1).await;
    assert_eq!(http(addr, "DELETE", r.header("location").unwrap(), &[], b"").await.status, 200);
    until_sessions(addr, 0).await;
}

/// A `PATCH` of `frag` to a WHEP session with `If-Match: if_match`.
async fn patch(addr: SocketAddr, location: &str, if_match: &str, frag: &str) -> Reply {
    let headers = [("Content-Type", "application/trickle-ice-sdpfrag"), ("If-Match", if_match)];
    http(addr, "PATCH", location, &headers, frag.as_bytes()).await
}

/// A player that trickles: its offer goes without candidates, and the answer's are
/// withheld from it, so the only way to meet is the server's checks to the candidate the
/// player `PATCH`ed. Then it restarts ICE by `PATCH` and keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_players_trickle_candidates_by_patch_and_restart_ice() {
    use callsight_server::sdpfrag::{frag_of, parse, with_ice};
    let server = start_server(&["--no-stun", "--media-port", "0", "--max-whip-trickle-candidates", "2"]).await;
    let addr = server.http_addr;
    let room = "room-whep-trickle";
    let mut member = connect(addr).await;
    let joined = join(&mut member, room).await;
    let (ingest_key, view_key) = (joined["ingest_key"].as_str().unwrap(), joined["view_key"].as_str().unwrap());
    let pending = PendingClient::with_tracks(LOCALHOST, 1, false).await.expect("client socket");
    let r = post_offer(addr, &format!("/whip/{room}?name=cam"), Some(ingest_key), pending.offer()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let whip_id = next_of(&mut member, "peer-joined", REPLY_DEADLINE).await["peer"]["id"].as_str().unwrap().to_owned();
    let publisher = Arc::new(pending.connect(&r.body, Duration::from_secs(20)).await.expect("publisher connects"));
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = encode_loop(&photo, 320, 240, 30, 2.0, 400_000).expect("encode bus.jpg");
    let p = publisher.clone();
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for k in 0u32.. {
            tick.tick().await;
            p.send_frame(frames[k as usize % frames.len()].data.clone(), k * 3000, Some(SystemTime::now()));
        }
    });

    let viewer = PendingClient::viewer(LOCALHOST, None).await.expect("client socket");
    let (bare_offer, candidates) = split_candidates(viewer.offer());
    let r = post_offer(addr, &format!("/whep/{room}/{whip_id}"), Some(view_key), &bare_offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.header("location").unwrap().to_owned();
    let etag = r.header("etag").expect("an ETag for the ICE session").to_owned();
    assert_eq!(r.header("accept-patch"), Some("application/trickle-ice-sdpfrag"));
    let (answer, _) = split_candidates(&r.body);
    let ufrag = bare_offer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    let pwd = bare_offer.lines().find_map(|l| l.strip_prefix("a=ice-pwd:")).unwrap().to_owned();
    let trickle = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na={}\r\n", candidates[0]);
    // WHIP's rules: a stale tag is 412, beyond --max-whip-trickle-candidates 422, another room 404.
    assert_eq!(patch(addr, &location, "\"stale\"", &trickle).await.status, 412);
    let three = format!("{trickle}a={c}\r\na={c}\r\n", c = candidates[0]);
    assert_eq!(patch(addr, &location, &etag, &three).await.status, 422);
    assert_eq!(patch(addr, &location.replacen(room, "room-whep-other", 1), &etag, &trickle).await.status, 404);
    let r = patch(addr, &location, &etag, &trickle).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let client =
        viewer.connect(&answer, Duration::from_secs(20)).await.expect("ICE + DTLS through the trickled candidate");
    until("frames through the trickled candidate", client.received_watch(), || client.received().len() >= 10).await;

    // ICE restart: new credentials both ways and a new ETag; frames keep coming.
    let restart = client.ice_restart().await.expect("the player's restart offer");
    let mut connected = client.ice_connected_watch();
    let before = *connected.borrow_and_update();
    let r = patch(addr, &location, "*", &frag_of(&restart)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.header("etag").expect("the new ICE session's ETag"), etag);
    let frag = parse(&r.body).expect("the server's fragment parses");
    let restarted = with_ice(&answer, &frag.ufrag.unwrap(), &frag.pwd.unwrap(), &frag.candidates);
    client.accept_restart_answer(&restarted).await.expect("the player takes the server's new ICE");
    tokio::time::timeout(WAIT, connected.wait_for(|n| *n > before)).await.expect("ICE connected again").unwrap();
    let seen = client.take_received().len();
    assert!(seen >= 10);
    until("frames after the ICE restart", client.received_watch(), || client.received().len() >= 10).await;
    assert_eq!(patch(addr, &location, &etag, &trickle).await.status, 412, "the old ICE session's tag");

    assert_eq!(http(addr, "DELETE", &location, &[], b"").await.status, 200);
    assert_eq!(patch(addr, &location, "*", &frag_of(&restart)).await.status, 404, "the session is gone");
    stream.abort();
}

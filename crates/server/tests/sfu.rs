//! Forwarding (SFU) through the real server: str0m participants join a room over the
//! signaling WebSocket, each publishes H.264 video (encoded from a real photo) and Opus
//! audio with `publish` + `subscribe`, answers the server's `offer`s, and receives every
//! other participant's tracks over real UDP on the same connection.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use str0m::media::{MediaKind, Mid};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// RTP timestamp bases far apart, so each received frame names its publisher.
fn video_ts(i: usize, n: u32) -> u32 {
    (i as u32 + 1).wrapping_mul(1_000_000_000).wrapping_add(n.wrapping_mul(3000))
}
fn audio_ts(i: usize, n: u32) -> u32 {
    (i as u32 + 1).wrapping_mul(700_000_000).wrapping_add(n.wrapping_mul(960))
}

/// Which participant sent a frame with this timestamp (the bases are 10⁹ apart).
fn publisher_of(ts: u32, kind: MediaKind, n: usize) -> Option<usize> {
    (0..n).find(|&i| {
        let (base, step) = match kind {
            MediaKind::Video => (video_ts(i, 0), 3000),
            MediaKind::Audio => (audio_ts(i, 0), 960),
        };
        let d = ts.wrapping_sub(base);
        d % step == 0 && d / step < 1_000_000
    })
}

/// A server with a media leg on a free UDP port, no STUN, rooms of 4, and `extra` flags.
async fn sfu_server(extra: &[&str]) -> callsight_server::Running {
    let mut args = vec!["--no-stun", "--media-port", "0", "--room-capacity", "4"];
    args.extend_from_slice(extra);
    start_server(&args).await
}

/// What a participant's signaling task saw.
#[derive(Default)]
struct Seen {
    detections: Vec<Value>,
    /// The `tracks` of each answered server offer, in order.
    offers: Vec<Vec<Value>>,
    /// The SDP of every server offer, answered or not.
    offer_sdps: Vec<String>,
}

/// What a participant does with the server's first `offer` (fault injection).
#[derive(Clone, Copy, PartialEq)]
enum FirstOffer {
    Answer,
    /// Never sees it (lost on the way, or a page that ignored it).
    Lost,
    /// Applies it, but its answer never reaches the server.
    AnswerLost,
}

struct Participant {
    id: String,
    client: Arc<Client>,
    seen: Arc<Mutex<Seen>>,
    /// Bumped after each answered offer and each detection.
    changed: watch::Receiver<u64>,
    signaling: tokio::task::JoinHandle<()>,
}

/// Joins, publishes with `subscribe`, connects; then a task answers the server's offers
/// (as the web client does) and records detections.
async fn participant(addr: std::net::SocketAddr, room: &str, analyse: bool) -> Participant {
    participant_with(addr, room, analyse, FirstOffer::Answer).await
}

async fn participant_with(addr: std::net::SocketAddr, room: &str, analyse: bool, first: FirstOffer) -> Participant {
    let (ws, id) = joined(addr, json!({"type":"join","room":room})).await;
    let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    publishing(ws, id, pending, analyse, first).await
}

/// A joined participant publishes `pending`'s offer with `subscribe` and connects; then a
/// task answers the server's offers (as the web client does) and records detections.
async fn publishing(mut ws: Ws, id: String, pending: PendingClient, analyse: bool, first: FirstOffer) -> Participant {
    send(&mut ws, json!({"type":"publish","sdp":pending.offer(),"subscribe":true,"analyse":analyse})).await;
    let answer = recv_type(&mut ws, "publish-answer").await;
    let client = pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(20)).await.expect("connects");
    let client = Arc::new(client);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (tx, changed) = watch::channel(0u64);
    let (c, s) = (client.clone(), seen.clone());
    let signaling = tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(t) = frame else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
            match v["type"].as_str() {
                Some("offer") => {
                    let sdp = v["sdp"].as_str().unwrap();
                    let nth = {
                        let mut s = s.lock().unwrap();
                        s.offer_sdps.push(sdp.to_owned());
                        s.offer_sdps.len()
                    };
                    if nth == 1 && first == FirstOffer::Lost {
                        continue;
                    }
                    let answer = c.accept_offer(sdp).await.expect("client accepts the offer");
                    if nth == 1 && first == FirstOffer::AnswerLost {
                        continue;
                    }
                    send(&mut ws, json!({"type":"answer","sdp":answer})).await;
                    s.lock().unwrap().offers.push(v["tracks"].as_array().cloned().unwrap_or_default());
                }
                Some("detections") => s.lock().unwrap().detections.push(v),
                Some("error") => panic!("server error: {v}"),
                _ => continue,
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    Participant { id, client, seen, changed, signaling }
}

/// Joins with `msg` (a `join`), returns the socket and the participant id.
async fn joined(addr: std::net::SocketAddr, msg: Value) -> (Ws, String) {
    let mut ws = connect(addr).await;
    let id = join_with(&mut ws, msg).await["id"].as_str().unwrap().to_owned();
    (ws, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_receive_each_other_through_the_server() {
    let server = sfu_server(&["--max-detect-fps", "3"]).await;
    let addr = server.http_addr;
    let room = "room-sfu-1";
    let mut people = Vec::new();
    // p2 does not allow analysis: its media is forwarded, never decoded.
    for analyse in [true, true, false] {
        people.push(participant(addr, room, analyse).await);
    }
    let n = people.len();

    // Everyone streams video at ~30 fps and audio beside it; every participant receives
    // every other one's video and audio, RTP timestamps as sent.
    let streams = stream_all(&people);
    everyone_receives_everyone(&people).await;

    // Only the two analysed cameras have a decoder.
    let health = health(addr).await;
    assert_eq!(health["media"]["stats"]["decoders"], 2, "{health}");
    assert_eq!(health["media"]["stats"]["sessions"], 3, "{health}");

    // The server named each forwarded track in its offers: p1's mid for p0's video.
    let p0_video_at_p1: Mid = people[1]
        .client
        .received()
        .iter()
        .find(|f| f.kind == MediaKind::Video && publisher_of(f.rtp_timestamp, f.kind, n) == Some(0))
        .map(|f| f.mid)
        .unwrap();
    {
        let seen = people[1].seen.lock().unwrap();
        let tracks = seen.offers.last().expect("p1 answered offers");
        let named = tracks.iter().find(|t| t["mid"] == p0_video_at_p1.to_string()).expect("the mid is named");
        assert_eq!(
            (named["participant"].as_str(), named["kind"].as_str()),
            (Some(people[0].id.as_str()), Some("video"))
        );
    }

    // A detection of p0's video names a frame p1 received from the server, by its RTP timestamp.
    let seen1 = people[1].seen.clone();
    let (p0_id, c1) = (people[0].id.clone(), people[1].client.clone());
    until("a detection of p0's video that names a frame p1 received", people[1].changed.clone(), || {
        let received: HashSet<u32> =
            c1.received().iter().filter(|f| f.mid == p0_video_at_p1).map(|f| f.rtp_timestamp).collect();
        seen1.lock().unwrap().detections.iter().any(|d| {
            d["participant"] == p0_id.as_str() && received.contains(&(d["rtp_timestamp"].as_u64().unwrap() as u32))
        })
    })
    .await;

    // p1's PLI for p0's video reaches p0.
    let mut kf = people[0].client.keyframe_watch();
    let before = people[0].client.keyframe_requests();
    kf.mark_unchanged();
    people[1].client.request_keyframe(p0_video_at_p1);
    tokio::time::timeout(WAIT, kf.wait_for(|n| *n > before)).await.expect("p0 gets a keyframe request").unwrap();

    // p2 leaves: its tracks are removed from p0 and p1 by a new offer.
    let p2_mids: Vec<HashSet<Mid>> = people[..2]
        .iter()
        .map(|p| {
            let r = p.client.received();
            r.iter().filter(|f| publisher_of(f.rtp_timestamp, f.kind, n) == Some(2)).map(|f| f.mid).collect()
        })
        .collect();
    assert!(p2_mids.iter().all(|m| m.len() == 2), "p2's video and audio at each: {p2_mids:?}");
    let p2 = people.pop().unwrap();
    let p2_id = p2.id.clone();
    p2.signaling.abort();
    drop(p2);
    for p in &people {
        let seen = p.seen.clone();
        let p2_id = p2_id.clone();
        until("an offer without p2's tracks", p.changed.clone(), || {
            let s = seen.lock().unwrap();
            s.offers.last().is_some_and(|t| t.len() == 2 && t.iter().all(|t| t["participant"] != p2_id.as_str()))
        })
        .await;
    }
    for (p, gone) in people.iter().zip(&p2_mids) {
        let receiving: HashSet<Mid> = p.client.receiving().await.into_iter().map(|(m, _)| m).collect();
        assert!(receiving.is_disjoint(gone), "p2's tracks still received: {receiving:?} vs {gone:?}");
        assert_eq!(receiving.len(), 2, "the other participant's video and audio stay: {receiving:?}");
    }
    for s in streams {
        s.abort();
    }
}

/// Starts ~30 fps video and audio from every participant (RTP bases from `video_ts` / `audio_ts`).
fn stream_all(people: &[Participant]) -> Vec<tokio::task::JoinHandle<()>> {
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    let frames = encode_loop(&photo, 320, 240, 30, 4.0, 400_000).expect("encode bus.jpg");
    people
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (c, frames) = (p.client.clone(), frames.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(33));
                for k in 0u32.. {
                    tick.tick().await;
                    c.send_video(0, frames[k as usize % frames.len()].data.clone(), video_ts(i, k));
                    c.send_audio(vec![0xfc, k as u8, 0xff, 0xfe].into(), audio_ts(i, k));
                }
            })
        })
        .collect()
}

/// Waits until every participant received ≥ 10 video frames and ≥ 10 audio packets of
/// every other one, each with the RTP timestamp it was sent with.
async fn everyone_receives_everyone(people: &[Participant]) {
    let all: Vec<usize> = (0..people.len()).collect();
    for me in 0..people.len() {
        receives_from(people, me, &all).await;
    }
}

/// Waits until participant `me` received ≥ 10 video frames and ≥ 10 audio packets of each
/// participant in `from` (but itself), with the RTP timestamps they were sent with.
async fn receives_from(people: &[Participant], me: usize, from: &[usize]) {
    let n = people.len();
    let client = people[me].client.clone();
    until(&format!("participant {me} receives {from:?}"), client.received_watch(), || {
        let mut seen: HashMap<(usize, MediaKind), usize> = HashMap::new();
        for f in client.received() {
            let sender = publisher_of(f.rtp_timestamp, f.kind, n)
                .unwrap_or_else(|| panic!("{me} got {:?} ts {} that nobody sent", f.kind, f.rtp_timestamp));
            assert_ne!(sender, me, "participant {me} got its own track back");
            *seen.entry((sender, f.kind)).or_default() += 1;
        }
        from.iter().filter(|&&i| i != me).all(|&i| {
            seen.get(&(i, MediaKind::Video)).is_some_and(|c| *c >= 10)
                && seen.get(&(i, MediaKind::Audio)).is_some_and(|c| *c >= 10)
        })
    })
    .await;
}

/// A subscriber that never saw the server's first offer, and one whose answer to it was
/// lost, still receive every Track: the server offers again after `--offer-timeout-ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_offer_is_offered_again_and_every_track_arrives() {
    let server = sfu_server(&["--offer-timeout-ms", "400"]).await;
    let addr = server.http_addr;
    let room = "room-sfu-offer-again";
    let mut people = Vec::new();
    for first in [FirstOffer::Answer, FirstOffer::Lost, FirstOffer::AnswerLost] {
        people.push(participant_with(addr, room, false, first).await);
    }
    let streams = stream_all(&people);
    everyone_receives_everyone(&people).await;
    for (i, p) in people.iter().enumerate().skip(1) {
        let seen = p.seen.lock().unwrap();
        assert!(
            seen.offer_sdps.len() >= 2 && seen.offer_sdps[1] == seen.offer_sdps[0],
            "participant {i} got its first offer again: {} offers",
            seen.offer_sdps.len()
        );
    }
    let health = health(addr).await;
    assert!(health["media"]["stats"]["offers_repeated"].as_u64() >= Some(2), "{health}");
    for s in streams {
        s.abort();
    }
}

/// A participant whose token may subscribe but not publish (`callsight token --no-publish`)
/// receives the room's Tracks through the server on a connection that sends nothing; an
/// offer of it that would send is refused with `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_without_the_right_to_publish_subscribes_receive_only() {
    let dir = std::env::temp_dir().join(format!("callsight-sfu-tokens-{}", std::process::id()));
    let secret = secret_file(&dir, "secret", "sfu-receive-only-secret-1");
    let server = sfu_server(&["--require-token", "--token-secret-file", secret.to_str().unwrap()]).await;
    let addr = server.http_addr;
    let room = "room-sfu-watch-only";
    let (ada, _) = mint(&secret, room, "ada", &[]);
    let (bob, _) = mint(&secret, room, "bob", &["--no-publish"]);
    let (ws, id) = joined(addr, json!({"type":"join","room":room,"token":ada})).await;
    let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    let ada = publishing(ws, id, pending, false, FirstOffer::Answer).await;

    let (mut ws, bob_id) = joined(addr, json!({"type":"join","room":room,"token":bob})).await;
    // An offer that sends camera and microphone: refused, saying why.
    let sends = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
    send(&mut ws, json!({"type":"publish","sdp":sends.offer(),"subscribe":true})).await;
    let refused = recv_type(&mut ws, "error").await;
    assert_eq!(error_code(&refused), "forbidden", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("publishing"), "{refused}");
    // Without subscribe there is nothing it may do.
    send(&mut ws, json!({"type":"publish","sdp":sends.offer()})).await;
    assert_eq!(error_code(&recv_type(&mut ws, "error").await), "forbidden");
    // Receive-only m-lines: accepted; the server then offers it ada's Tracks.
    let watches = PendingClient::viewer(LOCALHOST, None).await.expect("client socket");
    let bob = publishing(ws, bob_id, watches, false, FirstOffer::Answer).await;
    let people = [ada, bob];
    let streams = stream_all(&people);
    receives_from(&people, 1, &[0]).await;
    let health = health(addr).await;
    assert_eq!(health["media"]["stats"]["sessions"], 2, "{health}");
    assert!(people[0].seen.lock().unwrap().offer_sdps.is_empty(), "bob publishes nothing, so ada is offered nothing");
    for s in streams {
        s.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bandwidth estimation reaches the publisher: the server gives the publisher TWCC
/// feedback (its own congestion control runs on it), and a subscriber's constrained
/// downlink (the REMB it sends for the forwarded video) limits the publisher by REMB —
/// never below `--min-publish-kbps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribers_downlink_limits_what_the_publisher_sends() {
    let server = sfu_server(&["--min-publish-kbps", "100"]).await;
    let addr = server.http_addr;
    let room = "room-sfu-bandwidth";
    let people = [participant(addr, room, false).await, participant(addr, room, false).await];
    let streams = stream_all(&people);
    receives_from(&people, 1, &[0]).await;
    let publisher = people[0].client.clone();
    until("TWCC feedback reaches the publisher", publisher.feedback_watch(), || {
        publisher.feedback().twcc_rtt.is_some()
    })
    .await;

    // The subscriber's downlink takes 200 kbit/s of p0's video: p0 is asked for no more.
    let video_at_1 = people[1]
        .client
        .received()
        .iter()
        .find(|f| f.kind == MediaKind::Video && publisher_of(f.rtp_timestamp, f.kind, 2) == Some(0))
        .map(|f| f.mid)
        .expect("p0's video at p1");
    let limited = |lo: u64, hi: u64| {
        let p = publisher.clone();
        move || p.feedback().remb.iter().any(|(_, bps)| (lo..=hi).contains(bps))
    };
    people[1].client.send_remb(video_at_1, 200_000);
    until("REMB of at most 200 kbit/s at the publisher", publisher.feedback_watch(), limited(100_000, 200_000)).await;
    // However small the subscriber's downlink, the publisher is asked for the floor.
    people[1].client.send_remb(video_at_1, 20_000);
    until("REMB of the floor at the publisher", publisher.feedback_watch(), limited(100_000, 100_000)).await;
    assert!(publisher.feedback().remb.iter().all(|(_, bps)| *bps >= 100_000), "never below the floor");
    for s in streams {
        s.abort();
    }
}

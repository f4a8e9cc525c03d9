//! Media placement across nodes (`--redis`): two nodes with media legs share one real
//! `redis-server`; str0m participants on different nodes publish into one room, whose
//! media runs on one node only — the other node's participant publishes there through
//! its own WebSocket (requests and replies relayed through Redis) and its media goes
//! straight to that node. When the media node dies, the surviving participant is told
//! `media-moved`, publishes again, and the room's media continues on the live node.
//!
//! Needs `test-data/bus.jpg` (scripts/fetch-test-data.sh).

mod common;

use callsight_media::client::{Client, PendingClient};
use callsight_media::synth::{encode_loop, load_test_photo, EncodedFrame};
use common::cluster::*;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use str0m::media::MediaKind;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous: encoders, two media legs and a detector share two loaded cores.
const WAIT: Duration = Duration::from_secs(90);

/// Each participant's RTP video timestamps start 10⁹ apart, so a frame names its sender.
fn video_ts(i: usize, n: u32) -> u32 {
    (i as u32 + 1).wrapping_mul(1_000_000_000).wrapping_add(n.wrapping_mul(3000))
}

fn sender_of(ts: u32) -> usize {
    (ts / 1_000_000_000) as usize - 1
}

/// A participant that publishes (and subscribes) through its node, answers the server's
/// offers, records detections, and publishes again on `media-moved`, as the page does.
struct Member {
    id: String,
    /// The connection to the server, replaced on each publish.
    client: watch::Receiver<Option<Arc<Client>>>,
    detections: Arc<Mutex<Vec<Value>>>,
    /// Bumped on each detection.
    seen: watch::Receiver<u64>,
    moved: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn join(node: SocketAddr, room: &str, index: usize, analyse: bool, frames: Arc<Vec<EncodedFrame>>) -> Member {
        let mut ws = connect(node).await;
        let id = join(&mut ws, room).await["id"].as_str().unwrap().to_owned();
        let (client_tx, client) = watch::channel(None);
        let detections: Arc<Mutex<Vec<Value>>> = Arc::default();
        let moved = Arc::new(AtomicUsize::new(0));
        let (d, m) = (detections.clone(), moved.clone());
        let (seen_tx, seen) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let pending = PendingClient::with_tracks(LOCALHOST, 1, true).await.expect("client socket");
                send(&mut ws, json!({"type":"publish","sdp":pending.offer(),"subscribe":true,"analyse":analyse})).await;
                // Placed on a node that just died: no answer comes, and `media-moved`
                // follows once its lease lapsed.
                let answer = loop {
                    let v = next_message(&mut ws).await;
                    match v["type"].as_str() {
                        Some("publish-answer") => break Some(v),
                        Some("media-moved") => break None,
                        Some("error") => panic!("server error: {v}"),
                        _ => {}
                    }
                };
                let Some(answer) = answer else {
                    m.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let c =
                    pending.connect(answer["sdp"].as_str().unwrap(), Duration::from_secs(20)).await.expect("connects");
                let c = Arc::new(c);
                let streaming = stream(c.clone(), index, frames.clone());
                client_tx.send_replace(Some(c.clone()));
                let republish = loop {
                    let Some(Ok(frame)) = ws.next().await else { break false };
                    let Message::Text(t) = frame else { continue };
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    match v["type"].as_str() {
                        Some("offer") => {
                            let answer = c.accept_offer(v["sdp"].as_str().unwrap()).await.expect("accepts the offer");
                            send(&mut ws, json!({"type":"answer","sdp":answer})).await;
                        }
                        Some("detections") => {
                            d.lock().unwrap().push(v);
                            seen_tx.send_modify(|n| *n += 1);
                        }
                        Some("media-moved") => break true,
                        Some("error") => panic!("server error: {v}"),
                        _ => {}
                    }
                };
                if !republish {
                    // The WebSocket closed; like a page's, the media connection stays up.
                    return;
                }
                streaming.abort();
                m.fetch_add(1, Ordering::Relaxed);
            }
        });
        Member { id, client, detections, seen, moved, task }
    }

    /// Waits until this member's current connection received ≥ 10 video frames of
    /// member `from` (by RTP timestamp), and none of its own.
    async fn receives(&self, me: usize, from: usize) {
        let mut clients = self.client.clone();
        tokio::time::timeout(WAIT, async {
            loop {
                let client = clients.borrow_and_update().clone();
                if let Some(client) = client {
                    let mut frames = client.received_watch();
                    loop {
                        let got = client
                            .received()
                            .iter()
                            .filter(|f| f.kind == MediaKind::Video)
                            .map(|f| sender_of(f.rtp_timestamp))
                            .inspect(|&s| assert_ne!(s, me, "member {me} got its own video back"))
                            .filter(|&s| s == from)
                            .count();
                        if got >= 10 {
                            return;
                        }
                        tokio::select! {
                            r = frames.changed() => r.expect("client runs"),
                            r = clients.changed() => { r.expect("member runs"); break; }
                        }
                    }
                } else {
                    clients.changed().await.expect("member runs");
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("member {me} never received member {from}'s video"));
    }

    /// Waits until a detection of participant `of` arrived after `after` others.
    async fn detection_of(&self, of: &str, after: usize) {
        let mut seen = self.seen.clone();
        tokio::time::timeout(WAIT, async {
            while !self.detections.lock().unwrap().iter().skip(after).any(|d| d["participant"] == of) {
                seen.changed().await.expect("member runs");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no detection of {of}"));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// ~30 fps of the encoded photo from `client`, RTP timestamps of member `index`.
fn stream(client: Arc<Client>, index: usize, frames: Arc<Vec<EncodedFrame>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for k in 0u32.. {
            tick.tick().await;
            client.send_video(0, frames[k as usize % frames.len()].data.clone(), video_ts(index, k));
        }
    })
}

/// The next text message (bounded by `WAIT`); panics when the socket closes.
async fn next_message(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let Some(Ok(frame)) = ws.next().await else { panic!("socket closed") };
            if let Message::Text(t) = frame {
                return serde_json::from_str(t.as_str()).expect("server sends JSON");
            }
        }
    })
    .await
    .expect("a message in time")
}

/// The bus photo as ~4 s of 320×240 H.264 at 30 fps, looped by every member.
fn bus_frames() -> Arc<Vec<EncodedFrame>> {
    let photo = load_test_photo("bus.jpg").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(encode_loop(&photo, 320, 240, 30, 4.0, 400_000).expect("encode bus.jpg"))
}

/// Which of two nodes runs the room's media: exactly one must.
async fn media_node(nodes: &[Node; 2]) -> usize {
    let counts = media_rooms(&[&nodes[0], &nodes[1]]).await;
    match counts[..] {
        [1, 0] => 0,
        [0, 1] => 1,
        _ => panic!("the room's media should run on exactly one node: {counts:?}"),
    }
}

/// How many rooms' media each node runs (`/healthz` `redis.media_rooms`).
async fn media_rooms(nodes: &[&Node]) -> Vec<u64> {
    let mut counts = Vec::new();
    for n in nodes {
        counts.push(health(n.addr).await["redis"]["media_rooms"].as_u64().expect("redis.media_rooms"));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_media_runs_on_one_node_and_moves_when_that_node_dies() {
    let frames = bus_frames();
    let redis = Redis::start();
    let flags = ["--max-detect-fps", "2", "--room-capacity", "4"];
    let mut nodes = [Node::with_media(&redis, &flags).await, Node::with_media(&redis, &flags).await];
    let room = "room-placed";

    // Member 0 (analysed) on node 0, member 1 on node 1.
    let m0 = Member::join(nodes[0].addr, room, 0, true, frames.clone()).await;
    let m1 = Member::join(nodes[1].addr, room, 1, false, frames.clone()).await;
    m0.receives(0, 1).await;
    m1.receives(1, 0).await;
    // One node runs the room's media (whichever placement chose); the other none.
    let holder = media_node(&nodes).await;
    // Member 0's detections reach both, whichever node each is connected to.
    m0.detection_of(&m0.id, 0).await;
    m1.detection_of(&m0.id, 0).await;

    // The media node dies (no goodbye). The member on the other node is told its media
    // moved, publishes again, and the room's media now runs on the surviving node.
    let survivor = 1 - holder;
    let (gone, stays) = if holder == 0 { (m0, m1) } else { (m1, m0) };
    drop(gone);
    nodes[holder].kill();
    let stays_index = survivor;
    // A newcomer on the surviving node (analysed): both receive each other there.
    let newcomer = Member::join(nodes[survivor].addr, room, 2, true, frames.clone()).await;
    stays.receives(stays_index, 2).await;
    newcomer.receives(2, stays_index).await;
    assert!(stays.moved.load(Ordering::Relaxed) >= 1, "the surviving member was told media-moved");
    assert_eq!(media_rooms(&[&nodes[survivor]]).await, vec![1], "the survivor runs the room's media");
    let seen = stays.detections.lock().unwrap().len();
    stays.detection_of(&newcomer.id, seen).await;
}

/// A node dies while its participant's media runs on another node (and the participant's
/// media connection stays up, as a page's does): the media node ends that session once
/// the dead node's presence lapsed, instead of forwarding for a participant nobody can
/// reach any more (and counting it against the room and its load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_participants_lose_their_sessions_on_the_media_node() {
    let frames = bus_frames();
    let redis = Redis::start();
    let flags = ["--room-capacity", "4"];
    let mut nodes = [Node::with_media(&redis, &flags).await, Node::with_media(&redis, &flags).await];
    let room = "room-guests";
    let m0 = Member::join(nodes[0].addr, room, 0, false, frames.clone()).await;
    m0.client.clone().wait_for(Option::is_some).await.expect("m0 publishes");
    let holder = media_node(&nodes).await;
    let other = 1 - holder;
    // m1 on the other node: a guest of the media node.
    let m1 = Member::join(nodes[other].addr, room, 1, false, frames.clone()).await;
    m0.receives(0, 1).await;
    m1.receives(1, 0).await;
    until_sessions(nodes[holder].addr, 2).await;

    nodes[other].kill();
    // m0 too was a guest when it joined the node that is not the media node.
    let left = if other == 0 { 0 } else { 1 };
    until_sessions(nodes[holder].addr, left).await;
    drop((m0, m1));
}

/// WHIP and WHEP requests that reach a node which does not run the room's media are
/// redirected (307) to the node that does — its `--public-url`, the same path and
/// query — and are served there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_are_redirected_to_the_node_that_runs_the_rooms_media() {
    let frames = bus_frames();
    let redis = Redis::start();
    let urls = ["http://node-0.example:8443", "http://node-1.example:8443"];
    let flags = |i: usize| ["--room-capacity", "4", "--public-url", urls[i]];
    let nodes = [Node::with_media(&redis, &flags(0)).await, Node::with_media(&redis, &flags(1)).await];
    let room = "room-whip-placed";
    let m0 = Member::join(nodes[0].addr, room, 0, false, frames.clone()).await;
    m0.client.clone().wait_for(Option::is_some).await.expect("m0 publishes");
    let holder = media_node(&nodes).await;
    let other = 1 - holder;
    let mut member = connect(nodes[other].addr).await;
    let joined = join(&mut member, room).await;
    let (ingest_key, view_key) = (joined["ingest_key"].as_str().unwrap(), joined["view_key"].as_str().unwrap());

    let pending = PendingClient::with_tracks(LOCALHOST, 1, false).await.expect("client socket");
    let path = format!("/whip/{room}?name=cam");
    let r = post_offer(nodes[other].addr, &path, Some(ingest_key), pending.offer()).await;
    assert_eq!(r.status, 307, "{}", r.body);
    assert_eq!(r.header("location"), Some(format!("{}{path}", urls[holder]).as_str()));
    let r = post_offer(nodes[holder].addr, &path, Some(ingest_key), pending.offer()).await;
    assert_eq!(r.status, 201, "served where the media runs: {}", r.body);
    let cam = recv_type(&mut member, "peer-joined").await;
    assert_eq!(cam["peer"]["name"], "cam");

    let viewer = PendingClient::viewer(LOCALHOST, None).await.expect("client socket");
    let path = format!("/whep/{room}/{}", m0.id);
    let r = post_offer(nodes[other].addr, &path, Some(view_key), viewer.offer()).await;
    assert_eq!(r.status, 307, "{}", r.body);
    assert_eq!(r.header("location"), Some(format!("{}{path}", urls[holder]).as_str()));
    let r = post_offer(nodes[holder].addr, &path, Some(view_key), viewer.offer()).await;
    assert_eq!(r.status, 201, "served where the media runs: {}", r.body);
}

/// A room whose only publisher is a WHIP encoder keeps its media on the encoder's node
/// past the lease's lifetime (that node renews it), so a participant who joins later on
/// another node is placed with the encoder and receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_only_room_keeps_its_media_node() {
    let frames = bus_frames();
    let redis = Redis::start();
    let urls = ["http://node-0.example:8443", "http://node-1.example:8443"];
    let flags = |i: usize| ["--room-capacity", "4", "--public-url", urls[i]];
    let nodes = [Node::with_media(&redis, &flags(0)).await, Node::with_media(&redis, &flags(1)).await];
    let room = "room-whip-only";
    let mut watcher = connect(nodes[0].addr).await;
    let ingest_key = join(&mut watcher, room).await["ingest_key"].as_str().unwrap().to_owned();
    let pending = PendingClient::with_tracks(LOCALHOST, 1, false).await.expect("client socket");
    let path = format!("/whip/{room}?name=cam");
    let mut r = post_offer(nodes[0].addr, &path, Some(&ingest_key), pending.offer()).await;
    let holder = if r.status == 307 { 1 } else { 0 };
    if holder == 1 {
        r = post_offer(nodes[1].addr, &path, Some(&ingest_key), pending.offer()).await;
    }
    assert_eq!(r.status, 201, "{}", r.body);
    let camera = Arc::new(pending.connect(&r.body, Duration::from_secs(20)).await.expect("the encoder connects"));
    let streaming = stream(camera, 0, frames.clone());
    // A window of several lease lifetimes (presence TTL 1.5 s): an unrenewed lease lapses.
    tokio::time::sleep(Duration::from_millis(3 * PRESENCE_TTL_MS.parse::<u64>().unwrap())).await;
    assert_eq!(media_rooms(&[&nodes[holder]]).await, vec![1], "the encoder's node still runs the room");

    let other = 1 - holder;
    let late = Member::join(nodes[other].addr, room, 1, false, frames.clone()).await;
    late.receives(1, 0).await;
    assert_eq!(media_rooms(&[&nodes[other]]).await, vec![0], "placed with the encoder");
    streaming.abort();
}

//! Several nodes sharing rooms through a real `redis-server` (started by the test on a
//! free loopback port): clients on different nodes join one room and relay, capacity
//! holds under a race across nodes, a dead node's seats expire, and a Redis outage
//! refuses joins while running calls go on, until Redis returns (`/healthz`, `/metrics`);
//! a participant whose socket dropped resumes its id on another node.

mod common;

use common::cluster::*;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn ids(peers: &Value) -> Vec<String> {
    peers.as_array().expect("peers").iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_share_a_room_and_relay() {
    let redis = Redis::start();
    let (node_a, node_b) = (Node::start(&redis, &[]).await, Node::start(&redis, &[]).await);
    let (mut a, mut b) = (connect(node_a.addr).await, connect(node_b.addr).await);
    let a_joined = join_with(&mut a, json!({"type":"join","room":"shared-room-1","name":"Ann"})).await;
    let a_id = a_joined["id"].as_str().unwrap().to_owned();
    let b_joined = join(&mut b, "shared-room-1").await;
    let b_id = b_joined["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&b_joined["peers"]), vec![a_id.clone()], "b sees a, who is on the other node");
    assert_eq!(b_joined["peers"][0]["name"], "Ann");
    let v = recv_type(&mut a, "peer-joined").await;
    assert_eq!(v["peer"]["id"], b_id.as_str());

    send(&mut a, json!({"type":"signal","to":b_id,"data":{"description":{"type":"offer","sdp":"v=0 a"}}})).await;
    let v = recv_type(&mut b, "signal").await;
    assert_eq!((v["from"].as_str(), &v["data"]["description"]["sdp"]), (Some(a_id.as_str()), &json!("v=0 a")));
    send(&mut b, json!({"type":"signal","to":a_id,"data":{"candidate":"c"}})).await;
    let v = recv_type(&mut a, "signal").await;
    assert_eq!((v["from"].as_str(), &v["data"]["candidate"]), (Some(b_id.as_str()), &json!("c")));

    // A third participant on either node finds the room full (capacity 2, over both nodes).
    let mut c = connect(node_a.addr).await;
    send(&mut c, json!({"type":"join","room":"shared-room-1"})).await;
    assert_eq!(error_code(&recv(&mut c).await), "room-full");

    // b leaves: a hears it through Redis, and its seat is free for c.
    send(&mut b, json!({"type":"leave"})).await;
    let v = recv_type(&mut a, "peer-left").await;
    assert_eq!(v["id"], b_id.as_str());
    let c_joined = join(&mut c, "shared-room-1").await;
    assert_eq!(ids(&c_joined["peers"]), vec![a_id]);
    let health = health(node_b.addr).await;
    assert!(health["redis"]["relays_sent"].as_u64().unwrap() >= 2, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_joiners_racing_for_the_last_seat_on_two_nodes_one_wins() {
    let redis = Redis::start();
    let nodes = [Node::start(&redis, &[]).await, Node::start(&redis, &[]).await, Node::start(&redis, &[]).await];
    for round in 0..5 {
        let room = format!("race-room-{round}");
        let mut first = connect(nodes[0].addr).await;
        join(&mut first, &room).await;
        // One seat left (capacity 2); two joiners on two other nodes ask at once.
        let (mut x, mut y) = (connect(nodes[1].addr).await, connect(nodes[2].addr).await);
        let msg = json!({"type":"join","room":room});
        tokio::join!(send(&mut x, msg.clone()), send(&mut y, msg));
        let (rx, ry) = tokio::join!(recv(&mut x), recv(&mut y));
        let mut kinds = [rx["type"].as_str().unwrap().to_owned(), ry["type"].as_str().unwrap().to_owned()];
        kinds.sort();
        assert_eq!(kinds, ["error", "joined"], "round {round}: {rx} {ry}");
        let refused = if rx["type"] == "error" { &rx } else { &ry };
        assert_eq!(error_code(refused), "room-full", "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_participants_leave_when_its_presence_expires() {
    let redis = Redis::start();
    let node_a = Node::start(&redis, &[]).await;
    let mut node_b = Node::start(&redis, &[]).await;
    let (mut a, mut b) = (connect(node_a.addr).await, connect(node_b.addr).await);
    join(&mut a, "presence-room").await;
    let b_id = join(&mut b, "presence-room").await["id"].as_str().unwrap().to_owned();
    recv_type(&mut a, "peer-joined").await;

    // Node b dies without telling anyone; its seat outlives it only by its presence TTL.
    node_b.kill();
    let v = recv_type(&mut a, "peer-left").await;
    assert_eq!(v["id"], b_id.as_str());
    let mut c = connect(node_a.addr).await;
    join(&mut c, "presence-room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_refuses_joins_keeps_calls_and_recovers() {
    let mut redis = Redis::start();
    let node_a = Node::start(&redis, &["--room-capacity", "4"]).await;
    let node_b = Node::start(&redis, &["--room-capacity", "4"]).await;
    let (mut a, mut a2, mut b) = (connect(node_a.addr).await, connect(node_a.addr).await, connect(node_b.addr).await);
    let a_id = join(&mut a, "outage-room").await["id"].as_str().unwrap().to_owned();
    let a2_id = join(&mut a2, "outage-room").await["id"].as_str().unwrap().to_owned();
    let b_id = join(&mut b, "outage-room").await["id"].as_str().unwrap().to_owned();

    redis.stop();
    let health = node_a.wait_health(false).await;
    assert_eq!(health["status"], "degraded", "{health}");
    node_b.wait_health(false).await;
    // New joins are refused with a clear error...
    let mut d = connect(node_a.addr).await;
    send(&mut d, json!({"type":"join","room":"other-room"})).await;
    let v = recv(&mut d).await;
    assert_eq!(error_code(&v), "unavailable", "{v}");
    assert!(v["message"].as_str().unwrap().contains("Redis"), "{v}");
    let metrics = http_get(node_a.addr, "/metrics").await;
    assert!(metrics.contains("\ncallsight_redis_up 0\n"), "{metrics}");
    // ...while the call on one node goes on.
    send(&mut a, json!({"type":"signal","to":a2_id,"data":{"during":"outage"}})).await;
    assert_eq!(recv_type(&mut a2, "signal").await["data"]["during"], "outage");

    // Redis returns, empty: the nodes put their participants back and relay again.
    let _redis = Redis::start_on(redis.port);
    node_a.wait_health(true).await;
    node_b.wait_health(true).await;
    let metrics = http_get(node_a.addr, "/metrics").await;
    assert!(metrics.contains("\ncallsight_redis_up 1\n"), "{metrics}");
    // Each node's first successful command after the outage was its heartbeat, which put
    // its participants back: a newcomer sees all three.
    let mut e = connect(node_b.addr).await;
    let joined = join(&mut e, "outage-room").await;
    let mut seen = ids(&joined["peers"]);
    seen.sort();
    let mut want = vec![a_id.clone(), a2_id.clone(), b_id.clone()];
    want.sort();
    assert_eq!(seen, want, "{joined}");
    let e_id = joined["id"].as_str().unwrap().to_owned();
    send(&mut e, json!({"type":"signal","to":a_id,"data":{"after":"outage"}})).await;
    let v = recv_type(&mut a, "signal").await;
    assert_eq!((v["from"].as_str(), &v["data"]["after"]), (Some(e_id.as_str()), &json!("outage")));
}

fn resume_msg(room: &str, joined: &Value) -> Value {
    json!({"type":"join","room":room,"resume":joined["id"],"resume_token":joined["resume_token"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_participant_resumes_its_id_on_another_node() {
    let redis = Redis::start();
    // The nodes share the resume key: one state directory (tests/common).
    let cap = ["--room-capacity", "4"];
    let (node_a, node_b) = (Node::start(&redis, &cap).await, Node::start(&redis, &cap).await);
    let room = "resume-room-1";
    let (mut a, mut b) = (connect(node_a.addr).await, connect(node_b.addr).await);
    let a_joined = join(&mut a, room).await;
    let a_id = a_joined["id"].as_str().unwrap().to_owned();
    let b_id = join(&mut b, room).await["id"].as_str().unwrap().to_owned();
    recv_type(&mut a, "peer-joined").await;

    // a's socket drops; b hears it (node a released the seat, recording the departure, first).
    drop(a);
    assert_eq!(recv_type(&mut b, "peer-left").await["id"], a_id.as_str());
    // A wrong token on node b gets a fresh id.
    let mut forger = connect(node_b.addr).await;
    let forged =
        json!({"type":"join","room":room,"resume":a_id,"resume_token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let v = join_with(&mut forger, forged).await;
    assert_ne!(v["id"], a_id.as_str(), "{v}");
    send(&mut forger, json!({"type":"leave"})).await;
    assert_eq!(recv_type(&mut b, "peer-joined").await["peer"]["id"], v["id"]);
    recv_type(&mut b, "peer-left").await;

    // a comes back on node b with its token: same id, and b hears it return.
    let mut a2 = connect(node_b.addr).await;
    let a2_joined = join_with(&mut a2, resume_msg(room, &a_joined)).await;
    assert_eq!(a2_joined["id"], a_id.as_str(), "{a2_joined}");
    assert_eq!(ids(&a2_joined["peers"]), vec![b_id.clone()]);
    assert_eq!(recv_type(&mut b, "peer-joined").await["peer"]["id"], a_id.as_str());
    send(&mut b, json!({"type":"signal","to":a_id,"data":{"n":1}})).await;
    assert_eq!(recv_type(&mut a2, "signal").await["data"]["n"], 1);

    // A stale session: a2's socket is still open on node b, yet a resumes on node a (its
    // network moved). The seat moves to node a; the stale socket is closed without a
    // peer-left, and b's signals reach a on node a.
    let mut a3 = connect(node_a.addr).await;
    let a3_joined = join_with(&mut a3, resume_msg(room, &a2_joined)).await;
    assert_eq!(a3_joined["id"], a_id.as_str(), "{a3_joined}");
    assert_eq!(closed(&mut a2).await, "resumed on another node");
    let v = recv(&mut b).await;
    assert_eq!(
        (&v["type"], &v["peer"]["id"]),
        (&json!("peer-joined"), &json!(a_id)),
        "a new session, no peer-left: {v}"
    );
    send(&mut b, json!({"type":"signal","to":a_id,"data":{"n":2}})).await;
    assert_eq!(recv_type(&mut a3, "signal").await["data"]["n"], 2);

    // After a `leave`, the token resumes nothing, on any node.
    send(&mut a3, json!({"type":"leave"})).await;
    assert_eq!(recv_type(&mut b, "peer-left").await["id"], a_id.as_str());
    let mut a4 = connect(node_b.addr).await;
    let v = join_with(&mut a4, resume_msg(room, &a3_joined)).await;
    assert_ne!(v["id"], a_id.as_str(), "left on purpose: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_participant_resumes_its_id_on_a_live_node() {
    let redis = Redis::start();
    let node_a = Node::start(&redis, &[]).await;
    let mut node_b = Node::start(&redis, &[]).await;
    let room = "resume-room-2";
    let (mut a, mut b) = (connect(node_a.addr).await, connect(node_b.addr).await);
    join(&mut a, room).await;
    let b_joined = join(&mut b, room).await;
    let b_id = b_joined["id"].as_str().unwrap().to_owned();
    recv_type(&mut a, "peer-joined").await;

    // Node b dies with b's seat; b reconnects to node a at once (before b's presence
    // lapses): the seat moves to node a; a hears b's new session (peer-joined), no peer-left.
    node_b.kill();
    let mut b2 = connect(node_a.addr).await;
    let b2_joined = join_with(&mut b2, resume_msg(room, &b_joined)).await;
    assert_eq!(b2_joined["id"], b_id.as_str(), "{b2_joined}");
    let v = recv(&mut a).await;
    assert_eq!((&v["type"], &v["peer"]["id"]), (&json!("peer-joined"), &json!(b_id)), "{v}");
    send(&mut a, json!({"type":"signal","to":b_id,"data":{"n":3}})).await;
    assert_eq!(recv_type(&mut b2, "signal").await["data"]["n"], 3);
    // One seat each: the room (capacity 2) is full.
    let mut c = connect(node_a.addr).await;
    send(&mut c, json!({"type":"join","room":room})).await;
    assert_eq!(error_code(&recv(&mut c).await), "room-full");
}

/// Three nodes, one participant on each. When one node dies, each survivor hears
/// `peer-left` for its participant only; a participant whose socket drops resumes on the
/// third node and nobody hears it leave (only return); nothing else is said about anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_a_death_and_a_resume_say_exactly_who_left() {
    let redis = Redis::start();
    let room = "three-node-room";
    let cap = ["--room-capacity", "4"];
    let (node_a, node_b) = (Node::start(&redis, &cap).await, Node::start(&redis, &cap).await);
    let mut node_c = Node::start(&redis, &cap).await;
    let (mut a, mut b, mut c) = (connect(node_a.addr).await, connect(node_b.addr).await, connect(node_c.addr).await);
    let a_joined = join(&mut a, room).await;
    let a_id = a_joined["id"].as_str().unwrap().to_owned();
    let b_id = join(&mut b, room).await["id"].as_str().unwrap().to_owned();
    let c_id = join(&mut c, room).await["id"].as_str().unwrap().to_owned();
    assert_eq!(recv_type(&mut a, "peer-joined").await["peer"]["id"], b_id.as_str());
    assert_eq!(recv_type(&mut a, "peer-joined").await["peer"]["id"], c_id.as_str());
    assert_eq!(recv_type(&mut b, "peer-joined").await["peer"]["id"], c_id.as_str());

    // Node c dies: a and b hear that c left, and nothing else.
    node_c.kill();
    for ws in [&mut a, &mut b] {
        let v = recv(ws).await;
        assert_eq!((&v["type"], &v["id"]), (&json!("peer-left"), &json!(c_id)), "{v}");
    }
    // A window of several heartbeats (presence TTL 1.5 s): any wrong `peer-left` from a
    // sync would arrive in it. Then a signals b, which must be b's next message.
    tokio::time::sleep(Duration::from_millis(3 * PRESENCE_TTL_MS.parse::<u64>().unwrap())).await;
    send(&mut a, json!({"type":"signal","to":b_id,"data":{"n":1}})).await;
    let v = recv(&mut b).await;
    assert_eq!((&v["type"], &v["data"]["n"]), (&json!("signal"), &json!(1)), "{v}");

    // a's socket drops and a resumes on node b at once: b hears a leave and return (or
    // only return), never a second leave; a's signals keep reaching b.
    drop(a);
    let mut a2 = connect(node_b.addr).await;
    let a2_joined = join_with(&mut a2, resume_msg(room, &a_joined)).await;
    assert_eq!(a2_joined["id"], a_id.as_str(), "{a2_joined}");
    assert_eq!(ids(&a2_joined["peers"]), vec![b_id.clone()]);
    loop {
        let v = recv(&mut b).await;
        match v["type"].as_str() {
            Some("peer-left") => assert_eq!(v["id"], a_id.as_str()),
            Some("peer-joined") => {
                assert_eq!(v["peer"]["id"], a_id.as_str());
                break;
            }
            _ => panic!("unexpected {v}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(3 * PRESENCE_TTL_MS.parse::<u64>().unwrap())).await;
    send(&mut a2, json!({"type":"signal","to":b_id,"data":{"n":2}})).await;
    let v = recv(&mut b).await;
    assert_eq!((&v["type"], &v["data"]["n"]), (&json!("signal"), &json!(2)), "{v}");
    drop(node_a);
}

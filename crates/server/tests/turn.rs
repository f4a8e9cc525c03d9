//! TURN credentials against a real coturn (Debian package `coturn`) started on loopback
//! with `--use-auth-secret`: a joined participant's `ice_servers` holds credentials that
//! get an allocation from coturn's own client (`turnutils_uclient`); expired and forged
//! ones are refused; `/api/config` hands no TURN credentials to anyone.

mod common;

use bytecodec::EncodeExt;
use common::*;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stun_codec::rfc5389::{methods::BINDING, Attribute};
use stun_codec::{Message, MessageClass, MessageEncoder, TransactionId};

const SECRET: &str = "turn-test-secret-9f3a";

/// coturn on 127.0.0.1, stopped (killed) when dropped.
struct Coturn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on loopback right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start_coturn(dir: PathBuf) -> Coturn {
    let port = free_port();
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("turnserver")
        .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--use-auth-secret"])
        .arg(format!("--static-auth-secret={SECRET}"))
        .args(["-p", &port.to_string()])
        .args(["--realm=callsight", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers"])
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver runs (apt-get install coturn)");
    let coturn = Coturn { child, port, dir };
    wait_until_answering(port);
    coturn
}

/// Retransmits a STUN Binding request (as any STUN client does) until coturn answers.
fn wait_until_answering(port: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let request = Message::<Attribute>::new(MessageClass::Request, BINDING, TransactionId::new([3; 12]));
    let bytes = MessageEncoder::new().encode_into_bytes(request).unwrap();
    let deadline = std::time::Instant::now() + REPLY_DEADLINE;
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        socket.send_to(&bytes, ("127.0.0.1", port)).unwrap();
        if socket.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("coturn did not answer on udp {port}");
}

/// Runs coturn's client: allocate a relay with these credentials. Returns (success, output).
async fn allocate(port: u16, username: &str, password: &str) -> (bool, String) {
    let run = tokio::process::Command::new("turnutils_uclient")
        .args(["-v", "-y", "-n", "0", "-c", "-p", &port.to_string(), "-u", username, "-w", password, "127.0.0.1"])
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("uclient finishes").expect("uclient runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let allocated = out.status.success() && text.contains("Received relay addr");
    (allocated, text)
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn joined_participants_get_turn_credentials_that_coturn_accepts_and_nobody_else_does() {
    let dir = std::env::temp_dir().join(format!("callsight-turn-{}-{}", std::process::id(), free_port()));
    let coturn = start_coturn(dir.clone());
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let turn_url = format!("turn:127.0.0.1:{}", coturn.port);
    let server = start_server(&[
        "--no-media",
        "--stun-port",
        "0",
        "--turn-url",
        &turn_url,
        "--turn-secret-file",
        secret_file.to_str().unwrap(),
        "--turn-ttl",
        "10m",
    ])
    .await;
    let addr: SocketAddr = server.http_addr;

    // Anyone may fetch the page's config: STUN only, no TURN, no credentials.
    let config = http_get(addr, "/api/config").await;
    assert!(!config.contains("turn:") && !config.contains("credential"), "{config}");
    assert!(config.contains("stun:127.0.0.1:"), "{config}");

    let mut ws = connect(addr).await;
    let joined = join(&mut ws, "room-turn-0001").await;
    let id = joined["id"].as_str().unwrap();
    let servers = joined["ice_servers"].as_array().expect("ice_servers in joined");
    let stun_port = server.stun_addr.unwrap().port();
    assert_eq!(servers[0]["urls"][0], format!("stun:127.0.0.1:{stun_port}"), "{joined}");
    let turn = servers.iter().find(|s| s["urls"][0] == turn_url.as_str()).expect("a TURN entry");
    let username = turn["username"].as_str().unwrap();
    let password = turn["credential"].as_str().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, id, "the credential names the participant");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now_unix() && expiry <= now_unix() + 600, "expiry {expiry} follows --turn-ttl");

    let (ok, log) = allocate(coturn.port, username, password).await;
    assert!(ok, "issued credentials must get an allocation:\n{log}");

    // Forged: a later expiry with the same password, and a password made with another secret.
    let forged_user = format!("{}:{id}", expiry + 86_400);
    let (ok, log) = allocate(coturn.port, &forged_user, password).await;
    assert!(!ok && log.contains("Cannot complete Allocation"), "forged expiry accepted:\n{log}");
    let other = callsight_server::turn::credential(b"not-the-secret", expiry, id);
    let (ok, log) = allocate(coturn.port, &other.username, &other.password).await;
    assert!(!ok && log.contains("Cannot complete Allocation"), "foreign secret accepted:\n{log}");

    // Expired: correctly signed, but its time has passed.
    let expired = callsight_server::turn::credential(SECRET.as_bytes(), now_unix() - 60, id);
    let (ok, log) = allocate(coturn.port, &expired.username, &expired.password).await;
    assert!(!ok && log.contains("Cannot complete Allocation"), "expired credential accepted:\n{log}");
    drop(coturn);
}

#[tokio::test]
async fn turn_urls_without_a_secret_refuse_to_start() {
    let err = start_error(&["--turn-url", "turn:127.0.0.1:3478"]).await;
    assert!(err.contains("CALLSIGHT_TURN_SECRET"), "{err}");
}

//! Several nodes sharing one real `redis-server` (started on a free loopback port): the
//! harness of the `cluster` and `placement` tests.

use super::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Presence TTL of the test nodes: short, so expiry is seen quickly.
pub const PRESENCE_TTL_MS: &str = "1500";

/// A `redis-server` on a free loopback port, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(port)
    }

    pub fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        let deadline = Instant::now() + REPLY_DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A signaling node in its own runtime: stopping it drops every task at once, as a
/// killed process would (no goodbye to Redis).
pub struct Node {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// A signaling-only node (`--no-media`).
    pub async fn start(redis: &Redis, extra: &[&str]) -> Node {
        Node::start_with(redis, false, extra).await
    }

    /// A node with a media leg (SFU and detector) on a free UDP port.
    pub async fn with_media(redis: &Redis, extra: &[&str]) -> Node {
        Node::start_with(redis, true, extra).await
    }

    async fn start_with(redis: &Redis, media: bool, extra: &[&str]) -> Node {
        let leg: &[&str] = if media { &["--media-port", "0"] } else { &["--no-media"] };
        let mut argv: Vec<String> = ["--no-stun", "--redis", &redis.url()]
            .into_iter()
            .chain(leg.iter().copied())
            .chain(["--redis-presence-ttl-ms", PRESENCE_TTL_MS, "--redis-timeout-ms", "500"])
            .chain(extra.iter().copied())
            .map(String::from)
            .collect();
        argv.extend(["--heartbeat-secs".into(), "0.5".into()]);
        let workers = if media { 2 } else { 1 };
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
            runtime.block_on(async move {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let running = start_server(&argv).await;
                let _ = addr_tx.send(running.http_addr);
                let _ = stopped.await;
            });
            // Dropping the runtime cancels every task of the node.
            drop(runtime);
        });
        // A media leg loads and optimises the detector first: far longer on loaded cores.
        let deadline = if media { Duration::from_secs(180) } else { REPLY_DEADLINE };
        let addr = tokio::time::timeout(deadline, addr_rx).await.expect("node starts").expect("node address");
        let node = Node { addr, stop: Some(stop), thread: Some(thread) };
        node.wait_health(true).await;
        node
    }

    /// Waits until `/healthz` says Redis is up (or down).
    pub async fn wait_health(&self, up: bool) -> Value {
        let deadline = Instant::now() + REPLY_DEADLINE;
        loop {
            let health = health(self.addr).await;
            if health["redis"]["up"] == up {
                return health;
            }
            assert!(Instant::now() < deadline, "redis.up never became {up}: {health}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("node thread ends");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

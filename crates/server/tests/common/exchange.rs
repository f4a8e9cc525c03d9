//! HTTP exchanges of the WHIP/WHEP tests (raw HTTP/1.1 over TCP: every header and
//! status as sent), and waits on the server's state.

use super::{health, Ws, REPLY_DEADLINE};
use futures_util::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Generous: encoders, decoders and the detector share two loaded cores.
pub const WAIT: Duration = Duration::from_secs(90);

/// Waits (at most [`WAIT`]) until `done` holds, re-checking whenever `rx` changes (a
/// client's or a signaling task's change counter).
pub async fn until(what: &str, mut rx: tokio::sync::watch::Receiver<u64>, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            rx.changed().await.expect("still running");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"));
}

/// One HTTP/1.1 exchange: (status, headers with lower-case names, body).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("tcp connects");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    // A server that refuses early may close before reading it all.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    tokio::time::timeout(REPLY_DEADLINE, s.read_to_end(&mut buf)).await.expect("reply in time").ok();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

pub async fn post_offer(addr: SocketAddr, path: &str, key: Option<&str>, sdp: &str) -> Reply {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(addr, "POST", path, &headers, sdp.as_bytes()).await
}

/// Waits (bounded) until the media leg reports `n` sessions; the server offers no event
/// for it, so `/healthz` is asked every 50 ms.
pub async fn until_sessions(addr: SocketAddr, n: u64) {
    tokio::time::timeout(WAIT, async {
        while health(addr).await["media"]["stats"]["sessions"] != n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("media sessions never became {n}"));
}

pub async fn next_of(ws: &mut Ws, kind: &str, deadline: Duration) -> Value {
    tokio::time::timeout(deadline, async {
        loop {
            let Some(Ok(frame)) = ws.next().await else { panic!("socket closed while waiting for {kind}") };
            let Message::Text(t) = frame else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} in time"))
}

/// The offer or answer without its candidates, and the candidates (`candidate:…`).
pub fn split_candidates(sdp: &str) -> (String, Vec<String>) {
    let mut bare = String::new();
    let mut candidates = Vec::new();
    for line in sdp.lines() {
        match line.strip_prefix("a=") {
            Some(c) if c.starts_with("candidate:") => candidates.push(c.to_owned()),
            Some("end-of-candidates") => {}
            _ => {
                bare.push_str(line);
                bare.push_str("\r\n");
            }
        }
    }
    (bare, candidates)
}

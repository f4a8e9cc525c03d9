//! Janus as the bench's anchor: starts a `janus` process with a generated configuration
//! (HTTP API on a free loopback port, ICE on one given address, only the VideoRoom plugin and the
//! HTTP transport loaded) and speaks its HTTP API (sessions, handles, plugin messages,
//! long-poll events). <https://janus.conf.meetecho.com/docs/rest.html>

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// A running `janus` process; killed on drop.
pub struct JanusProcess {
    child: Child,
    pub api: Api,
    _dir: TempDir,
}

impl JanusProcess {
    /// Starts `binary`, gathering ICE candidates on `ip` only, and waits (at most 20 s)
    /// until its HTTP API answers.
    pub async fn start(binary: &Path, ip: IpAddr) -> Result<JanusProcess> {
        let dir = TempDir::new()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        write_config(&dir.0, port)?;
        let log = std::fs::File::create(log_path())?;
        let child = Command::new(binary)
            .arg("-F")
            .arg(&dir.0)
            .arg(format!("--ice-enforce-list={ip}"))
            .args(["--session-timeout=0", "--debug-level=3"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (Debian package `janus`)", binary.display()))?;
        let mut janus = JanusProcess { child, api: Api::new(port), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = janus.child.try_wait() {
                bail!("janus exited at start ({status}); its log: {}", janus.log_path().display());
            }
            if janus.api.get("/janus/info").await.is_ok() {
                return Ok(janus);
            }
            if Instant::now() > deadline {
                bail!("janus's HTTP API did not answer within 20 s; its log: {}", janus.log_path().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> PathBuf {
        log_path()
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Janus's log (kept after the run, for when something fails).
fn log_path() -> PathBuf {
    std::env::temp_dir().join(format!("janus-load-{}.log", std::process::id()))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("janus-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_config(dir: &Path, port: u16) -> Result<()> {
    let plugins = [
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "voicemail",
    ];
    let disable = |names: &[&str]| names.iter().map(|n| format!("libjanus_{n}.so")).collect::<Vec<_>>().join(",");
    let main = format!(
        "general: {{\n  configs_folder = \"{dir}\"\n  plugins_folder = \"{LIB}/plugins\"\n  transports_folder = \"{LIB}/transports\"\n  events_folder = \"{LIB}/events\"\n  loggers_folder = \"{LIB}/loggers\"\n}}\n\
         plugins: {{ disable = \"{p}\" }}\n\
         transports: {{ disable = \"{t}\" }}\n\
         loggers: {{ disable = \"libjanus_jsonlog.so\" }}\n",
        dir = dir.display(),
        p = disable(&plugins),
        t = disable(&["mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"]),
    );
    std::fs::write(dir.join("janus.jcfg"), main)?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n  base_path = \"/janus\"\n  http = true\n  port = {port}\n  ip = \"127.0.0.1\"\n  https = false\n}}\nadmin: {{ admin_http = false }}\n"
        ),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

/// Janus's HTTP API (the REST transport).
pub struct Api {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    transaction: AtomicU64,
}

impl Api {
    fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder(TokioExecutor::new()).build_http(),
            transaction: AtomicU64::new(0),
        }
    }

    async fn request(&self, method: hyper::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let uri = format!("{}{path}", self.base);
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = hyper::Request::builder().method(method).uri(&uri).body(Full::new(body))?;
        let res = self.http.request(req).await.with_context(|| format!("janus {uri}"))?;
        let bytes = res.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("janus {uri}: not JSON"))?;
        if v["janus"] == "error" {
            bail!("janus {uri}: {}", v["error"]);
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.request(hyper::Method::GET, path, None).await
    }

    /// POSTs a Janus request (`janus: kind` plus `fields`), a fresh transaction id.
    async fn post(&self, path: &str, kind: &str, fields: Value) -> Result<Value> {
        let mut body =
            json!({ "janus": kind, "transaction": self.transaction.fetch_add(1, Ordering::Relaxed).to_string() });
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        self.request(hyper::Method::POST, path, Some(body)).await
    }

    /// A new session with a VideoRoom handle: (session, handle).
    pub async fn videoroom(&self) -> Result<(u64, u64)> {
        let session = id(&self.post("/janus", "create", json!({})).await?)?;
        let handle = id(&self
            .post(&format!("/janus/{session}"), "attach", json!({ "plugin": "janus.plugin.videoroom" }))
            .await?)?;
        Ok((session, handle))
    }

    /// A plugin message; the plugin's synchronous reply (`success`) or `ack`.
    pub async fn message(&self, (session, handle): (u64, u64), body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut fields = json!({ "body": body });
        if let Some(jsep) = jsep {
            fields["jsep"] = jsep;
        }
        self.post(&format!("/janus/{session}/{handle}"), "message", fields).await
    }

    /// Tells Janus that the offer or answer just sent carried all of this side's ICE
    /// candidates (no trickle).
    pub async fn candidates_done(&self, (session, handle): (u64, u64)) -> Result<()> {
        self.post(&format!("/janus/{session}/{handle}"), "trickle", json!({ "candidate": { "completed": true } }))
            .await?;
        Ok(())
    }

    /// Long-polls the session's events until one carries a JSEP (an offer or answer), at most `timeout`.
    pub async fn jsep_event(&self, session: u64, timeout: Duration) -> Result<Value> {
        self.event(session, timeout, |e| e.get("jsep").is_some()).await
    }

    /// Long-polls the session's events until `wanted` takes one, at most `timeout`; a
    /// plugin error ends the wait.
    pub async fn event(&self, session: u64, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let events = self.get(&format!("/janus/{session}?maxev=5")).await?;
            let events = if events.is_array() { events } else { json!([events]) };
            for e in events.as_array().into_iter().flatten() {
                if let Some(err) = e["plugindata"]["data"].get("error") {
                    bail!("janus videoroom: {err}");
                }
                if wanted(e) {
                    return Ok(e.clone());
                }
            }
        }
        Err(anyhow!("the awaited event did not come from janus within {timeout:?}"))
    }

    /// Ends a session (its handles and PeerConnections).
    pub async fn destroy(&self, session: u64) {
        let _ = self.post(&format!("/janus/{session}"), "destroy", json!({})).await;
    }
}

fn id(v: &Value) -> Result<u64> {
    v["data"]["id"].as_u64().ok_or_else(|| anyhow!("janus: no id in {v}"))
}

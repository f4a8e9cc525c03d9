//! The `callsight` server, a thin async shell around the sans-IO parts.
//!
//! - [`config`]: command-line flags and environment (clap), with named defaults.
//! - [`serve`]: the accept loop: connection caps, TLS and header-read deadlines, HTTP/1.1.
//! - [`admission`]: connection caps in total and per client address; trusted proxies.
//! - [`http`]: the axum router: embedded web client, `/api/config`, `/healthz`, `/ws`.
//! - [`ws`]: one task per WebSocket: frames in → [`callsight_signal::Hub`] → frames out, heartbeat.
//! - [`media_sessions`]: media session caps per room/address; publish/unpublish order.
//! - [`outbox`]: each connection's write queue, bounded in bytes.
//! - [`state`]: what the handlers share: the hub, each connection's outbox, the media leg.
//! - [`state_dir`]: the state directory and the resume-token key kept in it.
//! - [`stun`]: a STUN (RFC 5389) Binding server on UDP.
//! - [`tls`]: certificates from files or self-signed at start.
//! - [`detector_args`]: detector flags shared by serving and `callsight detect`.
//! - [`detect_cmd`]: the `callsight detect` subcommand.

pub mod admission;
pub mod config;
pub mod detect_cmd;
pub mod detector_args;
pub mod http;
pub mod media_sessions;
pub mod outbox;
pub mod serve;
pub mod state;
pub mod state_dir;
pub mod stun;
pub mod tls;
pub mod ws;

pub use config::ServeArgs;

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A server that is bound and running; dropping the handle does not stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub stun_addr: Option<SocketAddr>,
    pub tls: bool,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Binds every listener, then serves in the background.
pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    let stun_addr = if args.no_stun {
        None
    } else {
        let addr = SocketAddr::new(args.bind.ip(), args.stun_port);
        Some(stun::spawn(addr).await.with_context(|| format!("starting STUN on udp {addr}"))?)
    };
    let media = if args.no_media { None } else { Some(start_media(&args).await?) };
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => state_dir::default_dir().context("no --state-dir given and neither XDG_DATA_HOME nor HOME is set")?,
    };
    let resume_key = state_dir::resume_key(&state_dir)?;
    let state = Arc::new(state::AppState::new(&args, stun_addr, media, resume_key));
    tokio::spawn(state.clone().forward_detections());
    let app = http::router(state.clone());
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    let http_addr = listener.local_addr()?;
    let tls_config = tls::load(&args).await?.map(|c| c.get_inner());
    let tls = tls_config.is_some();
    let admission = state.admission.clone();
    let header_read_timeout = config::secs(args.header_read_timeout);
    let task = tokio::spawn(serve::run(listener, app, admission, tls_config, header_read_timeout));
    Ok(Running { http_addr, stun_addr, tls, task })
}

/// Loads the detector (off the async threads: optimising a model takes a while) and
/// starts the media leg.
async fn start_media(args: &ServeArgs) -> anyhow::Result<state::Media> {
    let config = args.detector.config(args.detect_workers);
    let detector = tokio::task::spawn_blocking(move || callsight_vision::Detector::load(&config))
        .await
        .context("detector loading task")?
        .context("loading the detector")?;
    let detector = Arc::new(detector);
    let hub = callsight_media::MediaHub::start(args.media_config(), detector.clone())
        .await
        .context("starting the media leg")?;
    tracing::info!("media listening on udp {:?}", hub.local_addrs());
    Ok(state::Media { hub, detector })
}

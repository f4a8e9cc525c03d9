//! The `callsight` server, a thin async shell around the sans-IO parts.
//!
//! - [`config`]: command-line flags and environment (clap), with named defaults.
//! - [`http`]: the axum router: embedded web client, `/api/config`, `/healthz`, `/ws`.
//! - [`ws`]: one task per WebSocket: frames in → [`callsight_signal::Hub`] → frames out, heartbeat.
//! - [`state`]: what the handlers share: the hub, each connection's outbox, the media leg.
//! - [`stun`]: a STUN (RFC 5389) Binding server on UDP.
//! - [`tls`]: certificates from files or self-signed at start.
//! - [`detector_args`]: detector flags shared by serving and `callsight detect`.
//! - [`detect_cmd`]: the `callsight detect` subcommand.

pub mod config;
pub mod detect_cmd;
pub mod detector_args;
pub mod http;
pub mod state;
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
    let state = Arc::new(state::AppState::new(&args, stun_addr, media));
    tokio::spawn(state.clone().forward_detections());
    let app = http::router(state.clone());
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    let http_addr = listener.local_addr()?;
    let tls_config = tls::load(&args).await?;
    let tls = tls_config.is_some();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = match tls_config {
        None => {
            // Small signaling frames must not wait for Nagle's algorithm (40 ms stalls).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
            });
            tokio::spawn(async move { axum::serve(listener, service).await.context("http server") })
        }
        Some(config) => {
            let std_listener = listener.into_std()?;
            tokio::spawn(async move {
                axum_server::from_tcp_rustls(std_listener, config).serve(service).await.context("https server")
            })
        }
    };
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

//! The `callsight` server, a thin async shell around the sans-IO parts.
//!
//! - [`config`]: command-line flags and environment (clap), with named defaults.
//! - [`serve`]: the accept loop: connection caps, TLS and header-read deadlines, HTTP/1.1.
//! - [`connections`]: connection caps in total and per client address; trusted proxies.
//! - [`http`]: the axum router: embedded web client, `/api/config`, `/healthz`, `/ws`.
//! - [`whip`]: WHIP ingest (`/whip/{room}`): an encoder publishes as a participant of its own.
//! - [`ice_patch`]: `PATCH` on a WHIP or WHEP session: trickle ICE and ICE restarts.
//! - [`sdpfrag`]: `application/trickle-ice-sdpfrag` bodies of those `PATCH`es.
//! - [`whep`]: WHEP viewing (`/whep/{room}[/{participant}]`): a player receives one
//!   participant's video, audio and detections, without joining the room.
//! - [`ws`]: one task per WebSocket: frames in → [`callsight_signal::Hub`] → frames out, heartbeat.
//! - [`media_sessions`]: media session caps per room/address; publish/unpublish order.
//! - [`outbox`]: each connection's write queue, bounded in bytes.
//! - [`cluster`]: rooms shared with other nodes through Redis (`--redis`): seats, presence,
//!   relays, media placement and its leases.
//! - [`placement`]: which node runs whose media (sans-IO tables the cluster worker keeps).
//! - [`state`]: what the handlers share: the hub, each connection's outbox, the media leg.
//! - [`state_dir`]: the state directory and the resume-token key kept in it.
//! - [`stun`]: a STUN (RFC 5389) Binding server on UDP.
//! - [`source_limit`]: token buckets per source address in a bounded table (STUN).
//! - [`ice`]: the ICE server list a browser gets (STUN for all, TURN for joined participants).
//! - [`turn`]: time-limited TURN credentials (the TURN REST scheme, coturn `use-auth-secret`).
//! - [`headers`]: security headers on every response (CSP, frame-ancestors, referrer, HSTS).
//! - [`token`]: room access tokens (JWT, HS256): checked on join with `--require-token`.
//! - [`token_cmd`]: the `callsight token` subcommand (mints a token and a join link).
//! - [`secrets`]: secrets from the environment or a file, never from argv.
//! - [`tls`]: certificates from files or self-signed at start.
//! - [`detect_cmd`]: the `callsight detect` subcommand.

pub mod cluster;
pub mod config;
pub mod connections;
pub mod detect_cmd;
pub mod headers;
pub mod http;
pub mod ice;
pub mod ice_patch;
pub mod media_sessions;
pub mod metrics;
pub mod outbox;
pub mod placement;
pub mod sdpfrag;
pub mod secrets;
pub mod serve;
pub mod source_limit;
pub mod state;
pub mod state_dir;
pub mod stun;
pub mod tls;
pub mod token;
pub mod token_cmd;
pub mod turn;
pub mod whep;
pub mod whip;
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
    let stun = if args.no_stun {
        None
    } else {
        let addr = SocketAddr::new(args.bind.ip(), args.stun_port);
        Some(stun::spawn(addr, args.stun_limits()).await.with_context(|| format!("starting STUN on udp {addr}"))?)
    };
    let stun_addr = stun.as_ref().map(|s| s.addr);
    let access = access(&args, stun_addr)?;
    let media = if args.no_media { None } else { Some(start_media(&args).await?) };
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => state_dir::default_dir().context("no --state-dir given and neither XDG_DATA_HOME nor HOME is set")?,
    };
    let resume_key = state_dir::resume_key(&state_dir)?;
    let cluster = match &args.redis {
        Some(url) => Some(cluster::Cluster::new(&args.cluster_config(url), &resume_key)?),
        None => None,
    };
    let state =
        Arc::new(state::AppState::new(&args, access, media, resume_key, stun.map(|s| s.counters), cluster.clone()));
    if let Some(cluster) = &cluster {
        tracing::info!(node = %cluster.node, "sharing rooms through Redis");
        cluster.spawn(state.clone());
    }
    tokio::spawn(state.clone().forward_detections());
    tokio::spawn(state.clone().forward_offers());
    let app = http::router(state.clone());
    let listener = TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    let http_addr = listener.local_addr()?;
    let tls_config = tls::load(&args).await?.map(|c| c.get_inner());
    let tls = tls_config.is_some();
    let gate = state.connections.clone();
    let header_read_timeout = config::secs(args.header_read_timeout);
    let task = tokio::spawn(serve::run(listener, app, gate, tls_config, header_read_timeout));
    Ok(Running { http_addr, stun_addr, tls, task })
}

/// ICE servers, the health key and room admission, with their secrets from the
/// environment or files.
fn access(args: &ServeArgs, stun_addr: Option<SocketAddr>) -> anyhow::Result<state::Access> {
    let ice = ice_servers(args, stun_addr)?;
    let health_key = secrets::load("the health key", "CALLSIGHT_HEALTH_KEY", args.health_key_file.as_deref())?;
    let rooms: Box<dyn callsight_signal::Admission> = if args.require_token {
        let secret = secrets::load("the token secret", token::SECRET_ENV, args.token_secret_file.as_deref())?
            .context("--require-token needs the token secret: set CALLSIGHT_TOKEN_SECRET or --token-secret-file")?;
        Box::new(token::TokenAdmission::new(&secret)?)
    } else {
        Box::new(callsight_signal::admission::Open)
    };
    Ok(state::Access { ice, health_key, rooms })
}

/// Our STUN server, and TURN with the shared secret from the environment or a file.
fn ice_servers(args: &ServeArgs, stun_addr: Option<SocketAddr>) -> anyhow::Result<ice::IceServers> {
    let secret = secrets::load("the TURN secret", "CALLSIGHT_TURN_SECRET", args.turn_secret_file.as_deref())?;
    let turn = match (args.turn_urls.is_empty(), secret) {
        (true, _) => None,
        (false, Some(secret)) => Some((args.turn_urls.clone(), turn::TurnRest::new(secret, args.turn_ttl))),
        (false, None) => anyhow::bail!(
            "--turn-url needs the secret shared with the TURN server: set CALLSIGHT_TURN_SECRET or --turn-secret-file"
        ),
    };
    Ok(ice::IceServers { stun_port: stun_addr.map(|a| a.port()), turn })
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

//! The HTTP surface: the embedded web client, `/api/config`, `/healthz` and `/ws`.

use crate::state::{AppState, IceServer};
use axum::extract::{ws::WebSocketUpgrade, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde_json::json;
use std::sync::Arc;

/// The browser client, compiled into the binary so it runs from any directory.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/r/{room}", get(index))
        .route("/api/config", get(config))
        .route("/healthz", get(healthz))
        .route("/ws", get(websocket))
        .fallback(get(asset))
        .with_state(state)
}

async fn websocket(State(state): State<Arc<AppState>>, upgrade: WebSocketUpgrade) -> Response {
    // The transport refuses frames far above the limit before buffering them; the hub
    // answers those just above it with a `too-large` error.
    let cap = state.max_message_bytes.saturating_mul(2).max(1024);
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        // Signaling messages are small: modest buffers keep the memory per connection low.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state))
}

async fn index() -> Response {
    serve_asset("index.html")
}

async fn asset(uri: Uri) -> Response {
    serve_asset(uri.path().trim_start_matches('/'))
}

fn serve_asset(path: &str) -> Response {
    match WebAssets::get(path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache".to_owned())], file.data).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let (connections, rooms) = state.counts();
    let media = state.media.as_ref().map(|m| json!({ "detector": m.detector.info(), "stats": m.hub.stats() }));
    Json(json!({ "status": "ok", "connections": connections, "rooms": rooms, "media": media }))
}

/// ICE servers for the client: our STUN server under the name the browser used to reach
/// us (so it works for `localhost`, a LAN address or a DNS name alike), plus TURN.
async fn config(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Json<serde_json::Value> {
    let mut ice_servers = Vec::new();
    if let (Some(port), Some(host)) = (state.stun_port, request_host(&headers)) {
        ice_servers.push(IceServer { urls: vec![format!("stun:{host}:{port}")], username: None, credential: None });
    }
    ice_servers.extend(state.turn.clone());
    Json(json!({
        "ice_servers": ice_servers,
        "room_capacity": state.room_capacity(),
        "protocol": callsight_signal::PROTOCOL_VERSION,
        "media": { "enabled": state.media.is_some() },
        "detector": state.media.as_ref().map(|m| json!({
            "info": m.detector.info(),
            "labels": m.detector.labels(),
        })),
    }))
}

/// The host part of the `Host` header, if it looks like a host name or IP literal.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let authority: axum::http::uri::Authority = headers.get(header::HOST)?.to_str().ok()?.parse().ok()?;
    let host = authority.host();
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    ok.then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_is_reduced_to_a_safe_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "192.168.1.7:8443".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("192.168.1.7"));
        h.insert(header::HOST, "[::1]:8080".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("[::1]"));
        h.insert(header::HOST, "evil\"host".parse().unwrap());
        assert_eq!(request_host(&h), None);
        assert_eq!(request_host(&HeaderMap::new()), None);
    }
}

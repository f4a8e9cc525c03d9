//! The HTTP surface: the embedded web client, `/api/config`, `/api/labels`, `/healthz`, `/metrics` and `/ws`.

use crate::connections::Slot;
use crate::serve::ConnectionSlot;
use crate::state::AppState;
use axum::extract::{ws::WebSocketUpgrade, ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The browser client, compiled into the binary so it runs from any directory.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

pub fn router(state: Arc<AppState>) -> Router {
    let policy = crate::headers::Policy { hsts: state.hsts, cluster: state.cluster.clone() };
    Router::new()
        .route("/", get(index))
        .route("/r/{room}", get(index))
        .route("/watch/{room}", get(watch))
        .route("/watch/{room}/{participant}", get(watch))
        .route("/api/config", get(config))
        .route("/api/labels", get(labels))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        .merge(crate::whip::routes(&state))
        .merge(crate::whep::routes(&state))
        .fallback(get(asset))
        .with_state(state)
        .layer(axum::middleware::map_response_with_state(policy, crate::headers::secure))
}

/// `/ws`: checks the page's origin and the client's connection cap, then upgrades.
async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<ConnectionSlot>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.allowed_origins) {
        tracing::debug!(%peer, origin = ?headers.get(header::ORIGIN), "websocket refused: foreign origin");
        return (StatusCode::FORBIDDEN, "this page's origin may not open the signaling socket").into_response();
    }
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = state.connections.client_address(peer.ip(), forwarded);
    // Behind a trusted proxy, the client's own cap is checked here (the proxy's TCP
    // connections are not counted per address).
    let mut slots: Vec<Arc<Slot>> = slot.map(|Extension(s)| s.0).into_iter().collect();
    if client != peer.ip() {
        match state.connections.admit_forwarded(client) {
            Ok(s) => slots.push(Arc::new(s)),
            Err(refusal) => return (StatusCode::TOO_MANY_REQUESTS, refusal.to_string()).into_response(),
        }
    }
    let host = request_host(&headers);
    // The transport refuses frames far above the limit before buffering them; the hub
    // answers those just above it with a `too-large` error.
    let cap = state.max_message_bytes.saturating_mul(2).max(1024);
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        // Signaling messages are small: modest buffers keep the memory per connection low.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| crate::ws::serve_socket(socket, state, client, slots, host))
}

async fn index() -> Response {
    serve_asset("index.html")
}

/// `/watch/{room}[/{participant}]`: the WHEP player page (`web/watch.html`).
async fn watch() -> Response {
    serve_asset("watch.html")
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

/// The class names of the running detector, indexed by class id (COCO-80 without media),
/// so the web client keeps no copy of its own.
async fn labels(State(state): State<Arc<AppState>>) -> Json<Vec<String>> {
    Json(match &state.media {
        Some(m) => m.detector.labels().to_vec(),
        None => callsight_vision::labels::coco80(),
    })
}

/// `ok` for anyone; the counts and the media leg's state only for a local caller (loopback,
/// and not relayed by a proxy) or one that shows `--health-key-file`'s key as
/// `Authorization: Bearer KEY`.
async fn healthz(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    // With shared rooms, a node that cannot reach Redis takes no new joins: "degraded".
    let status = if state.cluster.as_ref().is_some_and(|c| !c.up()) { "degraded" } else { "ok" };
    if !may_see_details(peer, &headers, state.health_key.as_deref()) {
        return Json(json!({ "status": status }));
    }
    let (connections, rooms) = state.counts();
    let media = state.media.as_ref().map(|m| json!({ "detector": m.detector.info(), "stats": m.hub.stats() }));
    let redis = state.cluster.as_ref().map(|c| c.health());
    Json(json!({
        "status": status, "connections": connections, "rooms": rooms, "media": media,
        "stun": state.stun.as_deref(), "redis": redis
    }))
}

/// Prometheus metrics, for the callers that may see `/healthz`'s details.
async fn metrics(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !may_see_details(peer, &headers, state.health_key.as_deref()) {
        return (StatusCode::FORBIDDEN, "metrics are for local callers or the health key\n").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode()).into_response()
}

fn may_see_details(peer: SocketAddr, headers: &HeaderMap, key: Option<&[u8]>) -> bool {
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
    if peer.ip().is_loopback() && !proxied {
        return true;
    }
    let shown =
        headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")).map(<[u8]>::trim_ascii);
    match (key, shown) {
        (Some(key), Some(shown)) => bool::from(key.ct_eq(shown)),
        _ => false,
    }
}

/// What the page needs before joining. Its ICE servers are STUN only: TURN credentials
/// go to joined participants only (in `joined`), so this URL is no open relay.
async fn config(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Json<serde_json::Value> {
    let ice_servers = state.ice.public(request_host(&headers).as_deref());
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

/// An origin as compared: lower case, without a trailing slash.
pub fn normalise_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a `/ws` request may proceed: no `Origin` (not a browser: nothing to protect,
/// as a browser always sends one), an `Origin` whose host and port are the `Host` the
/// request was sent to (the page came from this server, as Gorilla's and `ws`'s
/// same-origin checks do it — the scheme is not compared, a TLS-terminating proxy hides
/// it), or one listed with `--allowed-origin`. `Origin: null` is refused.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = normalise_origin(origin);
    if allowed.contains(&origin) {
        return true;
    }
    let Ok(uri) = origin.parse::<Uri>() else { return false };
    let (Some(authority), Some(host)) = (uri.authority(), headers.get(header::HOST)) else { return false };
    let Ok(host) = host.to_str() else { return false };
    matches!(uri.scheme_str(), Some("http" | "https")) && authority.as_str().eq_ignore_ascii_case(host.trim())
}

/// The host part of the `Host` header, if it looks like a host name or IP literal.
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    let authority: axum::http::uri::Authority = headers.get(header::HOST)?.to_str().ok()?.parse().ok()?;
    let host = authority.host();
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    ok.then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host_or_be_allowed() {
        let headers = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        let allowed = vec![normalise_origin("https://App.example.org/")];
        let ok = |o: Option<&str>, host: &str| origin_allowed(&headers(o, host), &allowed);
        assert!(ok(None, "callsight.example:8443"), "non-browser clients");
        assert!(ok(Some("https://callsight.example:8443"), "callsight.example:8443"));
        assert!(ok(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(ok(Some("https://app.example.org"), "callsight.example"), "allowed by flag");
        assert!(!ok(Some("https://evil.example"), "callsight.example"));
        assert!(!ok(Some("https://callsight.example.evil.example"), "callsight.example"));
        assert!(!ok(Some("https://callsight.example:9999"), "callsight.example:8443"), "other port");
        assert!(!ok(Some("null"), "callsight.example"));
        assert!(!ok(Some("file://callsight.example"), "callsight.example"));
    }

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

    #[test]
    fn health_details_need_a_local_caller_or_the_key() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let none = HeaderMap::new();
        assert!(may_see_details(local, &none, None));
        assert!(!may_see_details(remote, &none, None));
        assert!(!may_see_details(remote, &none, Some(b"k3y")));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer k3y".parse().unwrap());
        assert!(may_see_details(remote, &bearer, Some(b"k3y")));
        assert!(!may_see_details(remote, &bearer, Some(b"k3y2")));
        assert!(!may_see_details(remote, &bearer, None));
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert!(!may_see_details(local, &proxied, None), "a proxy on loopback relays strangers");
    }
}

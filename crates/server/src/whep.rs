//! WHEP viewing (WebRTC-HTTP Egress Protocol): a player (a wall screen, a recorder, the
//! `/watch` page) receives one participant's video and audio with one HTTP request:
//! `POST /whep/{room}/{participant}` carries its offer (receive-only m-lines), the
//! `201 Created` the answer and the session's `Location`; `DELETE` on that ends it.
//! `POST /whep/{room}` shows the room's earliest publisher present (the next one when it
//! leaves).
//!
//! The media is the SFU's forwarding (RTP timestamps unchanged). A data channel the
//! player opens with the label `detections` carries the shown participant's
//! `detections` messages, exactly as the WebSocket carries them, so boxes can be matched
//! to frames by RTP timestamp.
//!
//! A viewer is not a participant: nobody sees it join, it takes no seat, it publishes
//! nothing. Authorisation is like WHIP's (`crate::whip`): a room token with the subscribe
//! right (`--require-token`), else the room's view key (another key than the ingest key:
//! a watch link never lets anyone publish).

use crate::ice_patch::IceSession;
use crate::state::AppState;
use crate::whip::{bearer, ice_links, key_matches, new_session_id, refuse, unauthorised, Places};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use callsight_media::{MediaError, ParticipantKey};
use callsight_signal::{ErrorCode, PeerId, RoomId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;

/// The WHEP limits (flags of `callsight serve`). The offer size and the answer timeout
/// are WHIP's (`--max-whip-body-bytes`, `--whip-answer-timeout`).
#[derive(clap::Args, Clone, Debug)]
pub struct WhepArgs {
    /// WHEP sessions at most, all rooms together (beyond: `503`). Each is also a media
    /// session (`--max-media-sessions`).
    #[arg(long, env = "CALLSIGHT_MAX_WHEP_SESSIONS", default_value_t = 32)]
    pub max_whep_sessions: usize,
}

/// The WHEP sessions of this server.
pub struct Whep {
    /// Media session keys and ICE sessions by session id (the last segment of their `Location`).
    sessions: Mutex<HashMap<String, (ParticipantKey, IceSession)>>,
    places: Places,
}

impl Whep {
    pub fn new(args: &WhepArgs) -> Self {
        Whep { sessions: Mutex::new(HashMap::new()), places: Places::new(args.max_whep_sessions) }
    }

    /// Live WHEP sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ParticipantKey, IceSession)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/whep/{room}", post(view_room).options(crate::whip::preflight))
        .route("/whep/{room}/{participant}", post(view_participant).options(crate::whip::preflight))
        .route(
            "/whep/{room}/sessions/{session}",
            axum::routing::delete(end).patch(patch).options(crate::whip::preflight),
        )
        .layer(DefaultBodyLimit::max(state.whip.max_body_bytes()))
        .layer(axum::middleware::map_response(crate::whip::cors))
}

async fn view_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    view(state, room, None, uri, headers, body).await
}

async fn view_participant(
    State(state): State<Arc<AppState>>,
    Path((room, participant)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    view(state, room, Some(participant), uri, headers, body).await
}

/// Checks the request (content type, room, key or token, participant, codecs, places),
/// then asks the media leg for the viewer session.
async fn view(
    state: Arc<AppState>,
    room: String,
    participant: Option<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (media, offer, room_id) = match crate::whip::offer_request(&state, &room, &headers, &body) {
        Ok(checked) => checked,
        Err((status, why)) => return refuse(status, why),
    };
    if let Some(refused) = unauthorised_viewer(&state, &room_id, bearer(&headers)) {
        return refused;
    }
    if let Some(redirect) = crate::whip::elsewhere(&state, &room_id, &uri).await {
        return redirect;
    }
    let peer = match participant.as_deref().map(PeerId::parse) {
        Some(None) => return refuse(StatusCode::NOT_FOUND, "no such participant in this room"),
        Some(Some(p)) => Some(p),
        None => None,
    };
    if !state.has_member(&room_id, peer.as_ref()) {
        let what = if peer.is_some() { "no such participant in this room" } else { "nobody is in this room" };
        return refuse(StatusCode::NOT_FOUND, what);
    }
    if let Err(why) = crate::whip::check_codecs(offer) {
        return refuse(StatusCode::NOT_ACCEPTABLE, why);
    }
    let whep = &state.whep;
    let Some(place) = whep.places.reserve() else {
        return whep.places.refusal("WHEP");
    };

    let id = new_session_id();
    let key = ParticipantKey { room: room.clone(), participant: format!("whep:{id}") };
    // Subscribed before the session exists: a session that dies at once is seen.
    let mut closed = media.hub.closed_sessions();
    let viewed = media.hub.view(key.clone(), offer, peer.as_ref().map(|p| p.to_string()));
    let answer = match tokio::time::timeout(state.whip.answer_timeout(), viewed).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return media_refusal(e),
        Err(_) => {
            // The session may still come: make sure it does not outlive the refusal.
            media.hub.unpublish(&key);
            return refuse(StatusCode::GATEWAY_TIMEOUT, "no answer from the media leg in time");
        }
    };
    let host = crate::http::request_host(&headers);
    let ice = state.ice.for_participant(&key.participant, host.as_deref(), std::time::SystemTime::now());
    let ice_session = IceSession::new(offer);
    whep.lock().insert(id.clone(), (key.clone(), ice_session.clone()));
    tracing::info!(room = %callsight_signal::redact::room_tag(&room), viewer = %id, "whep session started");
    let task_state = state.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        let _place = place;
        loop {
            match closed.recv().await {
                Ok(k) if k == key => break,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => tracing::warn!("whep session missed {n} media session ends"),
                Err(RecvError::Closed) => break,
            }
        }
        task_state.whep.lock().remove(&task_id);
        tracing::info!(viewer = %task_id, "whep session ended");
    });

    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&format!("/whep/{room}/sessions/{id}")) {
        h.insert(header::LOCATION, v);
    }
    crate::ice_patch::advertise(h, &ice_session);
    for link in ice_links(&ice) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    r
}

/// The refusal of a viewer that shows neither a room token that grants subscribing in
/// this room nor (without tokens) the room's view key; `None` = authorised.
fn unauthorised_viewer(state: &AppState, room: &RoomId, shown: Option<&str>) -> Option<Response> {
    if !state.whip.require_token() {
        let key = state.whip.view_key(room.as_str()).unwrap_or_default();
        return (!key_matches(shown, &key))
            .then(|| unauthorised("wrong or missing view key: Authorization: Bearer <the room's view key>"));
    }
    let Some(token) = shown else {
        return Some(unauthorised("this server requires a room token: Authorization: Bearer <token>"));
    };
    match state.grant_for(room, token) {
        Ok(grant) if grant.can_subscribe => None,
        Ok(_) => Some(refuse(StatusCode::FORBIDDEN, "the room token does not grant subscribing")),
        Err(r) if r.code == ErrorCode::Forbidden => Some(refuse(StatusCode::FORBIDDEN, r.message)),
        Err(r) => Some(unauthorised(&r.message)),
    }
}

/// The HTTP status of the media leg's refusal of a viewer's offer.
fn media_refusal(e: MediaError) -> Response {
    match e {
        MediaError::TooManySessions(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        MediaError::Rejected(ref why) if why.contains("H.264") => {
            refuse(StatusCode::NOT_ACCEPTABLE, format!("{e}; accepted: {}", crate::whip::ACCEPTED_CODECS))
        }
        MediaError::BadOffer(_) | MediaError::Rejected(_) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        _ => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `DELETE /whep/{room}/sessions/{session}`: the viewer's media session is freed.
/// The session URL (128 random bits) is the capability, as for WHIP.
async fn end(State(state): State<Arc<AppState>>, Path((room, id)): Path<(String, String)>) -> Response {
    let key = {
        let mut sessions = state.whep.lock();
        match sessions.get(&id) {
            Some((k, _)) if k.room == room => sessions.remove(&id),
            _ => None,
        }
    };
    match (key, &state.media) {
        (Some((key, _)), Some(media)) => {
            media.hub.unpublish(&key);
            StatusCode::OK.into_response()
        }
        _ => refuse(StatusCode::NOT_FOUND, "no such WHEP session"),
    }
}

/// `PATCH /whep/{room}/sessions/{session}` ([`crate::ice_patch`]): the player trickles
/// its candidates or restarts ICE, under WHIP's limits.
async fn patch(
    State(state): State<Arc<AppState>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let found = state.whep.lock().get(&id).filter(|(k, _)| k.room == room).cloned();
    let Some((key, ice)) = found else {
        return refuse(StatusCode::NOT_FOUND, "no such WHEP session");
    };
    let (media, limits) = (state.media.as_ref().map(|m| &m.hub), state.whip.patch_limits());
    let (response, patched) = crate::ice_patch::patch(media, key, &ice, limits, &headers, &body).await;
    if let (Some(patched), Some((_, ice))) = (patched, state.whep.lock().get_mut(&id)) {
        ice.record(patched);
    }
    response
}

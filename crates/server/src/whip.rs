//! WHIP ingest (RFC 9725): an encoder (OBS, GStreamer, ffmpeg, a camera box) publishes
//! into a room with one HTTP request: `POST /whip/{room}` carries its SDP offer, the
//! `201 Created` its answer and the session's `Location`; `DELETE` on that ends it.
//!
//! The stream joins the room as a participant of its own, exactly like a browser that
//! publishes: the signaling hub admits it (room capacity, token grants), it appears in
//! `peer-joined`, its video is forwarded to every subscriber and analysed. Only its
//! signaling connection is virtual: its outbox is drained by the session's task here, and
//! the participant leaves when the media session ends (DELETE, idle, ICE/DTLS failure).
//!
//! Authentication: with `--require-token`, `Authorization: Bearer <room token>` (the
//! JWT a browser would join with); without, the room's ingest key (HMAC of the room with
//! the server's state-dir key, shown to the room's members in `joined`).

use crate::cluster::Located;
use crate::ice_patch::IceSession;
use crate::outbox::{outbox, Outbound, OutboxReceiver};
use crate::state::{AppState, Media};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use callsight_media::ParticipantKey;
use callsight_signal::protocol::Join;
use callsight_signal::{ClientMessage, ConnId, ErrorCode, IceServer, ResumeKey, RoomId, ServerMessage};
use hmac::{Hmac, KeyInit, Mac};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast::error::RecvError;

/// What a refusal of a codec says is accepted.
pub const ACCEPTED_CODECS: &str = "video H264 (constrained baseline or baseline profile, packetization-mode=1) \
     and audio Opus; VP8, VP9 and AV1 are not accepted";

/// Domain separation of the ingest key (no other MAC of the state-dir key equals it).
const INGEST_KEY_CONTEXT: &[u8] = b"callsight whip ingest key v1";
/// Domain separation of the view key (WHEP, `crate::whep`): it lets a player watch, never publish.
const VIEW_KEY_CONTEXT: &[u8] = b"callsight whep view key v1";

/// The WHIP limits (flags of `callsight serve`).
#[derive(clap::Args, Clone, Debug)]
pub struct WhipArgs {
    /// WHIP sessions at most, all rooms together (beyond: `503`).
    #[arg(long, env = "CALLSIGHT_MAX_WHIP_SESSIONS", default_value_t = 16)]
    pub max_whip_sessions: usize,
    /// Largest WHIP/WHEP request body (an SDP offer) in bytes (beyond: `413`).
    #[arg(long, env = "CALLSIGHT_MAX_WHIP_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_whip_body_bytes: usize,
    /// Seconds a WHIP request waits for the room's admission and the media leg's answer
    /// (beyond: `504`, nothing kept).
    #[arg(long, env = "CALLSIGHT_WHIP_ANSWER_TIMEOUT", default_value_t = 10.0)]
    pub whip_answer_timeout: f64,
    /// Remote ICE candidates a WHIP session takes by `PATCH` (trickle ICE) per ICE session,
    /// its offer's not counted (beyond: `422`; an ICE restart starts a new count).
    #[arg(long, env = "CALLSIGHT_MAX_WHIP_TRICKLE_CANDIDATES", default_value_t = 32)]
    pub max_whip_trickle_candidates: usize,
}

/// One live WHIP session.
struct Session {
    room: String,
    conn: ConnId,
    participant: String,
    /// Its current ICE session (`PATCH`).
    ice: IceSession,
}

/// The WHIP sessions of this server, and how they are authorised.
pub struct Whip {
    key: [u8; 32],
    require_token: bool,
    max_body_bytes: usize,
    answer_timeout: Duration,
    max_trickle_candidates: usize,
    /// Sessions by their id (the last segment of their `Location`).
    sessions: Mutex<HashMap<String, Session>>,
    /// Sessions live or being set up (what `max_whip_sessions` caps).
    places: Places,
}

/// Sessions live or being set up, at most `max` (`--max-whip-sessions`, `--max-whep-sessions`).
pub(crate) struct Places {
    active: Arc<AtomicUsize>,
    pub max: usize,
}

/// A place among [`Places`], given back when dropped.
pub(crate) struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Places {
    pub fn new(max: usize) -> Self {
        Places { active: Arc::new(AtomicUsize::new(0)), max }
    }

    /// A place, or `None` when all `max` are taken.
    pub fn reserve(&self) -> Option<Place> {
        let before = self.active.fetch_add(1, Relaxed);
        let place = Place(self.active.clone());
        (before < self.max).then_some(place)
    }

    /// The `503` for a request beyond `max` (`what`: "WHIP", "WHEP").
    pub fn refusal(&self, what: &str) -> Response {
        let mut r = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this server has its maximum of {} {what} sessions", self.max),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        r
    }
}

impl Whip {
    pub fn new(args: &WhipArgs, require_token: bool, key: &ResumeKey) -> Self {
        Whip {
            key: *key.as_bytes(),
            require_token,
            max_body_bytes: args.max_whip_body_bytes,
            answer_timeout: crate::config::secs(args.whip_answer_timeout),
            max_trickle_candidates: args.max_whip_trickle_candidates,
            sessions: Mutex::new(HashMap::new()),
            places: Places::new(args.max_whip_sessions),
        }
    }

    /// Largest WHIP/WHEP offer (`--max-whip-body-bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How long a WHIP/WHEP request waits for its answer (`--whip-answer-timeout`).
    pub fn answer_timeout(&self) -> Duration {
        self.answer_timeout
    }

    /// What a WHIP or WHEP `PATCH` is held to.
    pub fn patch_limits(&self) -> crate::ice_patch::PatchLimits {
        crate::ice_patch::PatchLimits {
            max_candidates: self.max_trickle_candidates,
            answer_timeout: self.answer_timeout,
        }
    }

    /// Tokens are required (`--require-token`): WHIP and WHEP take a room token, no key.
    pub fn require_token(&self) -> bool {
        self.require_token
    }

    /// The room's ingest key (`None` when tokens are required: the token is the key).
    /// HMAC-SHA256 of the room with the state-dir key: stable across restarts, nothing stored.
    pub fn ingest_key(&self, room: &str) -> Option<String> {
        self.room_key(INGEST_KEY_CONTEXT, room)
    }

    /// The room's view key for WHEP players (`None` when tokens are required), like the
    /// ingest key but of another context: it lets a player watch, never publish.
    pub fn view_key(&self, room: &str) -> Option<String> {
        self.room_key(VIEW_KEY_CONTEXT, room)
    }

    fn room_key(&self, context: &[u8], room: &str) -> Option<String> {
        if self.require_token {
            return None;
        }
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [context, room.as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Live WHIP sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `shown` (a bearer value) is `key`, in constant time.
pub(crate) fn key_matches(shown: Option<&str>, key: &str) -> bool {
    shown.is_some_and(|s| bool::from(s.as_bytes().ct_eq(key.as_bytes())))
}

pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let limit = state.whip.max_body_bytes;
    Router::new()
        .route("/whip/{room}", post(publish).options(preflight))
        .route("/whip/{room}/{session}", axum::routing::delete(end).patch(patch).options(preflight))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(cors))
}

/// CORS on every WHIP response: encoders in browsers (and web tools) may call it from
/// any origin; authorisation is the bearer key, never a cookie.
pub(crate) async fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, Link, ETag, Accept-Patch"));
    response
}

pub(crate) async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

#[derive(serde::Deserialize)]
struct PublishQuery {
    name: Option<String>,
}

pub(crate) fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    let why = why.into();
    tracing::debug!(%status, "whip refused: {why}");
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response()
}

pub(crate) fn unauthorised(why: &str) -> Response {
    let mut r = refuse(StatusCode::UNAUTHORIZED, why);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `Authorization: Bearer X` → `X`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, value) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
}

pub(crate) fn is_sdp(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
}

/// The checks every WHIP and WHEP offer passes first, in this order: a media leg
/// (`503`), `Content-Type: application/sdp` (`415`), UTF-8 (`400`), a valid room name
/// (`404`). Out: the media leg, the offer text and the room; or the refusal.
pub(crate) fn offer_request<'a>(
    state: &'a AppState,
    room: &str,
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<(&'a Media, &'a str, RoomId), (StatusCode, &'static str)> {
    let Some(media) = &state.media else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "this server runs without the media leg (--no-media)"));
    };
    if !is_sdp(headers) {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "the offer must be sent as Content-Type: application/sdp"));
    }
    let Ok(offer) = std::str::from_utf8(body) else {
        return Err((StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"));
    };
    let Some(room) = RoomId::parse(room) else {
        return Err((StatusCode::NOT_FOUND, "no such room: not a valid room name (letters, digits, '-' and '_')"));
    };
    Ok((media, offer, room))
}

/// With `--redis`, where a WHIP or WHEP request for `room` belongs: `None` when the
/// room's media runs here (or Redis cannot say: calls go on here); else a `307` to the
/// node that runs it (its `--public-url`, the same path and query), or `503` when that
/// node has no public URL.
pub(crate) async fn elsewhere(state: &AppState, room: &RoomId, uri: &Uri) -> Option<Response> {
    let cluster = state.cluster.as_ref()?;
    match cluster.locate(room).await {
        Located::Here => None,
        Located::Elsewhere { url: Some(url), .. } => {
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            let mut r = refuse(StatusCode::TEMPORARY_REDIRECT, "this room's media runs on another node");
            if let Ok(v) = HeaderValue::from_str(&format!("{url}{path}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Some(r)
        }
        Located::Elsewhere { node, url: None } => Some(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this room's media runs on node {node}, which has no --public-url to redirect to"),
        )),
    }
}

/// `POST /whip/{room}`: the offer in, the answer and the session's `Location` out.
async fn publish(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Query(query): Query<PublishQuery>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (media, offer, room_id) = match offer_request(&state, &room, &headers, &body) {
        Ok(checked) => checked,
        Err((status, why)) => return refuse(status, why),
    };
    let whip = &state.whip;
    let token = match (whip.require_token, bearer(&headers)) {
        (true, None) => return unauthorised("this server requires a room token: Authorization: Bearer <token>"),
        (true, Some(t)) => Some(t.to_owned()),
        (false, shown) => {
            if !key_matches(shown, &whip.ingest_key(&room).unwrap_or_default()) {
                return unauthorised("wrong or missing ingest key: Authorization: Bearer <the room's ingest key>");
            }
            None
        }
    };
    if let Err(why) = check_codecs(offer) {
        return refuse(StatusCode::NOT_ACCEPTABLE, why);
    }
    if let Some(redirect) = elsewhere(&state, &room_id, &uri).await {
        return redirect;
    }
    let Some(place) = whip.places.reserve() else {
        return whip.places.refusal("WHIP");
    };

    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = state.connections.client_address(peer.ip(), forwarded);
    let host = crate::http::request_host(&headers);
    // Subscribed before anything is published: a session that dies at once is seen.
    let mut closed = media.hub.closed_sessions();
    let (tx, mut rx) = outbox(state.max_outbox_bytes);
    let conn = state.connect(tx, client, host.clone());
    let name = query.name.or_else(|| token.is_none().then(|| "WHIP".to_owned()));
    let join = Join { room: room.clone(), name, token, ..Join::default() };
    let admitted = async {
        state.handle_client(conn, ClientMessage::Join(join));
        let id = match next_reply(&mut rx).await? {
            ServerMessage::Joined { id, ice_servers, .. } => (id, ice_servers),
            other => return Err(refusal(other)),
        };
        state.handle_client(conn, ClientMessage::Publish { sdp: offer.to_owned(), subscribe: false, analyse: true });
        match next_reply(&mut rx).await? {
            ServerMessage::PublishAnswer { sdp } => Ok((id, sdp)),
            other => Err(refusal(other)),
        }
    };
    let ((participant, ice_servers), answer) = match tokio::time::timeout(whip.answer_timeout, admitted).await {
        Ok(Ok(done)) => done,
        Ok(Err(response)) => {
            state.disconnect(conn);
            return response;
        }
        Err(_) => {
            state.disconnect(conn);
            return refuse(StatusCode::GATEWAY_TIMEOUT, "no answer from the media leg in time");
        }
    };

    let id = new_session_id();
    let ice = IceSession::new(offer);
    let session = Session { room: room.clone(), conn, participant: participant.to_string(), ice: ice.clone() };
    whip.lock().insert(id.clone(), session);
    let key = ParticipantKey { room: room.clone(), participant: participant.to_string() };
    tracing::info!(room = %callsight_signal::redact::room_tag(&room), %participant, "whip session started");
    let task_state = state.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        let _place = place;
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    // Disconnected (DELETE) or dropped by the hub.
                    None | Some(Outbound::Close(_)) => break,
                    // What the room says to this participant has no reader.
                    Some(Outbound::Text(_)) => {}
                },
                ended = closed.recv() => match ended {
                    Ok(k) if k == key => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => tracing::warn!("whip session missed {n} media session ends"),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        if task_state.whip.lock().remove(&task_id).is_some() {
            task_state.disconnect(conn);
        }
        tracing::info!(participant = %key.participant, "whip session ended");
    });

    let location = format!("/whip/{room}/{id}");
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    crate::ice_patch::advertise(h, &ice);
    for link in ice_links(&ice_servers) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    r
}

/// `DELETE /whip/{room}/{session}`: the participant leaves, its media session ends.
/// The session URL is the capability (128 random bits), as RFC 9725 allows.
async fn end(State(state): State<Arc<AppState>>, Path((room, id)): Path<(String, String)>) -> Response {
    let session = {
        let mut sessions = state.whip.lock();
        match sessions.get(&id) {
            Some(s) if s.room == room => sessions.remove(&id),
            _ => None,
        }
    };
    match session {
        Some(s) => {
            state.disconnect(s.conn);
            StatusCode::OK.into_response()
        }
        None => refuse(StatusCode::NOT_FOUND, "no such WHIP session"),
    }
}

/// `PATCH /whip/{room}/{session}` ([`crate::ice_patch`]): trickle ICE and ICE restarts.
async fn patch(
    State(state): State<Arc<AppState>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let whip = &state.whip;
    let Some((participant, ice)) =
        whip.lock().get(&id).and_then(|s| (s.room == room).then(|| (s.participant.clone(), s.ice.clone())))
    else {
        return refuse(StatusCode::NOT_FOUND, "no such WHIP session");
    };
    let key = ParticipantKey { room: room.clone(), participant };
    let media = state.media.as_ref().map(|m| &m.hub);
    let (response, patched) = crate::ice_patch::patch(media, key, &ice, whip.patch_limits(), &headers, &body).await;
    if let (Some(patched), Some(s)) = (patched, whip.lock().get_mut(&id)) {
        s.ice.record(patched);
    }
    response
}

/// The next reply to this participant that answers its request (joined, answer, error).
async fn next_reply(rx: &mut OutboxReceiver) -> Result<ServerMessage, Response> {
    loop {
        match rx.recv().await {
            None | Some(Outbound::Close(_)) => {
                return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "the room closed the connection"))
            }
            Some(Outbound::Text(text)) => {
                let reply = serde_json::from_str::<ServerMessage>(&text);
                if let Ok(
                    m @ (ServerMessage::Joined { .. }
                    | ServerMessage::PublishAnswer { .. }
                    | ServerMessage::Error { .. }),
                ) = reply
                {
                    return Ok(m);
                }
            }
        }
    }
}

/// The HTTP status of the hub's or the media leg's refusal.
fn refusal(msg: ServerMessage) -> Response {
    let ServerMessage::Error { code, message } = msg else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "unexpected reply");
    };
    let status = match code {
        ErrorCode::TokenRequired | ErrorCode::TokenInvalid | ErrorCode::TokenExpired => {
            return unauthorised(&message);
        }
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RoomFull => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::BadRoom | ErrorCode::BadName | ErrorCode::BadMessage | ErrorCode::TooLarge => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::MediaUnavailable if message.contains("maximum") || message.contains("too many") => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::MediaUnavailable if message.contains("H.264") => {
            return refuse(StatusCode::NOT_ACCEPTABLE, format!("{message}; accepted: {ACCEPTED_CODECS}"));
        }
        ErrorCode::MediaUnavailable => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, message)
}

/// Refuses an offer whose sending video m-lines offer no H.264 (only VP8/VP9/AV1...),
/// naming what is accepted. The media leg checks the rest of the offer.
pub fn check_codecs(offer: &str) -> Result<(), String> {
    let mut video_lines = 0usize;
    let mut offered: Vec<String> = Vec::new();
    let mut h264 = false;
    let mut in_video = false;
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split(' ');
            in_video = fields.next() == Some("video") && fields.next() != Some("0");
            video_lines += usize::from(in_video);
        } else if in_video {
            if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
                let codec = rtpmap.split_once(' ').map(|(_, c)| c).unwrap_or("");
                let name = codec.split('/').next().unwrap_or("").to_ascii_uppercase();
                h264 |= name == "H264";
                if !offered.contains(&name) && !["RTX", "RED", "ULPFEC", "FLEXFEC-03"].contains(&name.as_str()) {
                    offered.push(name);
                }
            }
        }
    }
    if video_lines == 0 {
        return Err(format!("the offer has no video m-line; accepted: {ACCEPTED_CODECS}"));
    }
    if !h264 {
        return Err(format!("video offered as {}; accepted: {ACCEPTED_CODECS}", offered.join(", ")));
    }
    Ok(())
}

/// `Link` headers for the ICE servers (RFC 9725 §4.6).
pub(crate) fn ice_links(servers: &[IceServer]) -> Vec<String> {
    let mut links = Vec::new();
    for s in servers {
        for url in &s.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                link.push_str(&format!("; username=\"{u}\"; credential=\"{c}\"; credential-type=\"password\""));
            }
            links.push(link);
        }
    }
    links
}

/// 128 random bits, base64url: the session URL is its own capability.
pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H264: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 rtx/90000\r\n";

    #[test]
    fn codecs_other_than_h264_are_refused_by_name() {
        assert_eq!(check_codecs(H264), Ok(()));
        let vp8 = H264.replace("H264/90000", "VP8/90000");
        let err = check_codecs(&vp8).unwrap_err();
        assert!(err.starts_with("video offered as VP8;"), "{err}");
        assert!(err.contains("H264") && err.contains("Opus"), "{err}");
        let av1 = H264.replace("H264/90000", "AV1/90000").replace("97 rtx", "97 VP9");
        assert!(check_codecs(&av1).unwrap_err().starts_with("video offered as AV1, VP9;"));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(check_codecs(audio_only).unwrap_err().contains("no video"));
        // H.264 on an audio line does not count; a rejected (port 0) video line neither.
        let rejected = H264.replace("m=video 9", "m=video 0");
        assert!(check_codecs(&rejected).is_err());
    }

    #[test]
    fn bearer_and_content_type_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert!(!is_sdp(&h));
        h.insert(header::CONTENT_TYPE, "Application/SDP; charset=utf-8".parse().unwrap());
        assert!(is_sdp(&h));
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_sdp(&h));
    }

    #[test]
    fn ingest_keys_differ_per_room_and_vanish_with_tokens() {
        let args = WhipArgs {
            max_whip_sessions: 1,
            max_whip_body_bytes: 1,
            whip_answer_timeout: 1.0,
            max_whip_trickle_candidates: 1,
        };
        let key = ResumeKey::random();
        let open = Whip::new(&args, false, &key);
        let a = open.ingest_key("room-a").unwrap();
        assert_eq!(a.len(), 43);
        assert_eq!(open.ingest_key("room-a").unwrap(), a, "stable");
        assert_ne!(open.ingest_key("room-b").unwrap(), a);
        assert_ne!(Whip::new(&args, false, &ResumeKey::random()).ingest_key("room-a").unwrap(), a);
        assert_eq!(Whip::new(&args, true, &key).ingest_key("room-a"), None);
        // Places: one, then refused, then free again.
        let p = open.places.reserve().expect("first place");
        assert!(open.places.reserve().is_none());
        drop(p);
        assert!(open.places.reserve().is_some());
        assert_ne!(open.view_key("room-a").unwrap(), a, "viewing and publishing have different keys");
    }
}

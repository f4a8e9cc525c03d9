//! `PATCH` on a WHIP or WHEP session (RFC 9725 §4.3; WHEP players do the same): trickle
//! ICE (`204`, the candidates added) and ICE restarts (`200`, the server's new credentials
//! and candidates as an `application/trickle-ice-sdpfrag`, a new `ETag`). A refused
//! `PATCH` leaves the session as it was.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use callsight_media::{MediaError, MediaHub, ParticipantKey};
use std::time::Duration;

/// The media type of a `PATCH` body (RFC 8840).
pub const TRICKLE_ICE_SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// A session's current ICE session, as `PATCH` needs it.
#[derive(Clone, Debug)]
pub struct IceSession {
    /// The offer it was made from (an ICE restart re-offers it, new credentials in).
    pub offer: String,
    /// The client's current ICE username fragment.
    pub ufrag: String,
    /// Its entity-tag (quoted), new on each ICE restart.
    pub etag: String,
    /// Candidates trickled into it.
    pub trickled: usize,
}

impl IceSession {
    pub fn new(offer: &str) -> Self {
        let ufrag = first_value(offer, "a=ice-ufrag:").unwrap_or_default().to_owned();
        IceSession { offer: offer.to_owned(), ufrag, etag: new_etag(), trickled: 0 }
    }

    /// Takes in what a `PATCH` did (trickled candidates count only while their ICE
    /// session is still the current one).
    pub fn record(&mut self, patched: Patched) {
        match patched {
            Patched::Trickled { etag, added } if etag == self.etag => self.trickled += added,
            Patched::Trickled { .. } => {}
            Patched::Restarted(next) => *self = next,
        }
    }
}

/// What a `PATCH` did, for the caller's record of the session.
pub enum Patched {
    /// This many candidates joined the ICE session whose tag was `etag`.
    Trickled { etag: String, added: usize },
    /// A new ICE session replaced the old one.
    Restarted(IceSession),
}

/// The limits a `PATCH` is held to (WHIP's flags serve WHEP too).
#[derive(Clone, Copy)]
pub struct PatchLimits {
    /// Trickled candidates per ICE session (`--max-whip-trickle-candidates`).
    pub max_candidates: usize,
    /// How long the media leg may take (`--whip-answer-timeout`).
    pub answer_timeout: Duration,
}

/// What a `PATCH` asks for, by its `If-Match` (RFC 9725 §4.3.1).
#[derive(Debug, PartialEq, Eq)]
enum PatchKind {
    Trickle,
    Restart,
}

/// `If-Match: *` restarts ICE; the current entity-tag trickles candidates into the current
/// ICE session (or restarts it when the fragment brings other credentials, as RFC 9725
/// §4.3.3 says). Missing: `428`; another tag (an older ICE session's): `412`.
fn patch_kind(
    if_match: Option<&str>,
    etag: &str,
    frag_ufrag: Option<&str>,
    ufrag: &str,
) -> Result<PatchKind, (StatusCode, &'static str)> {
    let Some(tags) = if_match else {
        return Err((
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match is required: the session's ETag (trickle ICE) or * (ICE restart)",
        ));
    };
    let tags: Vec<&str> = tags.split(',').map(str::trim).collect();
    if tags.contains(&"*") {
        return Ok(PatchKind::Restart);
    }
    if !tags.contains(&etag) {
        return Err((StatusCode::PRECONDITION_FAILED, "If-Match does not name the current ICE session"));
    }
    Ok(if frag_ufrag.is_some_and(|u| u != ufrag) { PatchKind::Restart } else { PatchKind::Trickle })
}

/// Carries out a `PATCH` of session `key` (its ICE session `ice`) on the media leg
/// (`None`: the server runs without one, 503): the response, and what changed (nothing
/// when refused).
pub async fn patch(
    media: Option<&MediaHub>,
    key: ParticipantKey,
    ice: &IceSession,
    limits: PatchLimits,
    headers: &HeaderMap,
    body: &[u8],
) -> (Response, Option<Patched>) {
    let refuse = |status, why: String| (crate::whip::refuse(status, why), None);
    let Some(media) = media else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "this server runs without the media leg (--no-media)".into());
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(TRICKLE_ICE_SDPFRAG)) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("a PATCH body must be {TRICKLE_ICE_SDPFRAG}"));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return refuse(StatusCode::BAD_REQUEST, "the fragment is not UTF-8 text".into());
    };
    let frag = match crate::sdpfrag::parse(text) {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed SDP fragment: {e}")),
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let kind = match patch_kind(if_match, &ice.etag, frag.ufrag.as_deref(), &ice.ufrag) {
        Ok(k) => k,
        Err((status, why)) => return refuse(status, why.into()),
    };
    let max = limits.max_candidates;
    let taken = if kind == PatchKind::Restart { 0 } else { ice.trickled };
    if taken + frag.candidates.len() > max {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("more than {max} trickled candidates in one ICE session (--max-whip-trickle-candidates)"),
        );
    }
    match kind {
        PatchKind::Trickle => match in_time(limits, media.add_remote_candidates(key, frag.candidates)).await {
            Ok(added) => {
                (StatusCode::NO_CONTENT.into_response(), Some(Patched::Trickled { etag: ice.etag.clone(), added }))
            }
            Err(e) => (patch_refusal(e), None),
        },
        PatchKind::Restart => {
            let (Some(new_ufrag), Some(pwd)) = (frag.ufrag, frag.pwd) else {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "an ICE restart needs the new a=ice-ufrag and a=ice-pwd".into(),
                );
            };
            if new_ufrag == ice.ufrag {
                return refuse(StatusCode::UNPROCESSABLE_ENTITY, "an ICE restart needs a new a=ice-ufrag".into());
            }
            let restart = crate::sdpfrag::with_ice(&ice.offer, &new_ufrag, &pwd, &frag.candidates);
            let answer = match in_time(limits, media.renegotiate(key, &restart)).await {
                Ok(a) => a,
                Err(e) => return (patch_refusal(e), None),
            };
            let next =
                IceSession { offer: restart, ufrag: new_ufrag, etag: new_etag(), trickled: frag.candidates.len() };
            let mut r = (StatusCode::OK, crate::sdpfrag::frag_of(&answer)).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TRICKLE_ICE_SDPFRAG));
            if let Ok(v) = HeaderValue::from_str(&next.etag) {
                h.insert(header::ETAG, v);
            }
            (r, Some(Patched::Restarted(next)))
        }
    }
}

/// The headers of a `201 Created` that say `PATCH` works: the ICE session's `ETag` and
/// `Accept-Patch`.
pub fn advertise(h: &mut HeaderMap, ice: &IceSession) {
    if let Ok(v) = HeaderValue::from_str(&ice.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE_ICE_SDPFRAG));
}

/// The media leg's reply within the answer timeout (else `Err(None)`).
async fn in_time<T>(
    limits: PatchLimits,
    reply: impl std::future::Future<Output = Result<T, MediaError>>,
) -> Result<T, Option<MediaError>> {
    match tokio::time::timeout(limits.answer_timeout, reply).await {
        Ok(r) => r.map_err(Some),
        Err(_) => Err(None),
    }
}

/// The status of a `PATCH` the media leg refused (or did not answer in time).
fn patch_refusal(e: Option<MediaError>) -> Response {
    use crate::whip::refuse;
    let Some(e) = e else {
        return refuse(StatusCode::GATEWAY_TIMEOUT, "no answer from the media leg in time");
    };
    match e {
        MediaError::BadOffer(why) => refuse(StatusCode::BAD_REQUEST, why),
        MediaError::Rejected(why) if why == "no media session" => {
            refuse(StatusCode::NOT_FOUND, "the session's media has ended")
        }
        MediaError::Rejected(why) => refuse(StatusCode::UNPROCESSABLE_ENTITY, why),
        other => refuse(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

/// The first value of an SDP line starting with `prefix` (e.g. `a=ice-ufrag:`).
fn first_value<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| l.strip_prefix(prefix))
}

/// A strong entity-tag for an ICE session: 96 random bits, quoted.
fn new_etag() -> String {
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("\"{}\"", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_picks_trickle_or_restart_or_refuses() {
        let kind = |if_match, frag_ufrag| patch_kind(if_match, "\"abc\"", frag_ufrag, "EsAw").map_err(|(s, _)| s);
        assert_eq!(kind(None, None), Err(StatusCode::PRECONDITION_REQUIRED));
        assert_eq!(kind(Some("\"old\""), None), Err(StatusCode::PRECONDITION_FAILED));
        assert_eq!(kind(Some("abc"), None), Err(StatusCode::PRECONDITION_FAILED), "the tag is quoted");
        assert_eq!(kind(Some("\"abc\""), None), Ok(PatchKind::Trickle));
        assert_eq!(kind(Some("\"x\", \"abc\""), Some("EsAw")), Ok(PatchKind::Trickle));
        assert_eq!(kind(Some("\"abc\""), Some("ysXw")), Ok(PatchKind::Restart), "new credentials restart ICE");
        assert_eq!(kind(Some("*"), Some("ysXw")), Ok(PatchKind::Restart));
    }

    #[test]
    fn trickles_count_only_in_their_own_ice_session() {
        let mut ice = IceSession::new("v=0\r\na=ice-ufrag:EsAw\r\n");
        assert_eq!(ice.ufrag, "EsAw");
        let first = ice.etag.clone();
        ice.record(Patched::Trickled { etag: first.clone(), added: 2 });
        assert_eq!(ice.trickled, 2);
        let next = IceSession { offer: "v=0".into(), ufrag: "ysXw".into(), etag: new_etag(), trickled: 1 };
        ice.record(Patched::Restarted(next));
        assert_ne!(ice.etag, first);
        // A trickle that raced the restart belonged to the old ICE session.
        ice.record(Patched::Trickled { etag: first, added: 5 });
        assert_eq!((ice.ufrag.as_str(), ice.trickled), ("ysXw", 1));
    }
}

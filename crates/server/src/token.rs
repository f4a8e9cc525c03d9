//! Room access tokens (`--require-token`): JWTs signed with HS256, shaped like LiveKit's
//! access tokens — `sub` is the participant's identity, `name` its display name, `exp`
//! the expiry, and the `video` grant names the room and the rights (`roomJoin`,
//! `canPublish`, `canSubscribe`). [`TokenAdmission`] checks them on `join`;
//! [`mint`] makes them (`callsight token`).

use callsight_signal::{Admission, ErrorCode, Grant, Refusal, RoomId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the token secret comes from (or `--token-secret-file`).
pub const SECRET_ENV: &str = "CALLSIGHT_TOKEN_SECRET";

/// Seconds of clock difference tolerated on `exp` and `nbf` (another host may mint).
pub const LEEWAY_SECS: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Claims {
    /// The participant's identity.
    pub sub: String,
    /// Display name; the identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    pub video: VideoGrant,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    pub room: String,
    #[serde(default)]
    pub room_join: bool,
    #[serde(default)]
    pub can_publish: bool,
    #[serde(default)]
    pub can_subscribe: bool,
}

/// Signs `claims` with `secret` (HS256).
pub fn mint(secret: &[u8], claims: &Claims) -> anyhow::Result<String> {
    let key = EncodingKey::from_secret(secret)?;
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)?)
}

/// Claims for `identity` in `room` with every right, valid for `ttl` from `now`.
pub fn claims(room: &str, identity: &str, name: Option<&str>, ttl: Duration, now: SystemTime) -> Claims {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Claims {
        sub: identity.to_owned(),
        name: name.map(str::to_owned),
        exp: now.saturating_add(ttl.as_secs()),
        nbf: Some(now.saturating_sub(LEEWAY_SECS)),
        iat: Some(now),
        video: VideoGrant { room: room.to_owned(), room_join: true, can_publish: true, can_subscribe: true },
    }
}

/// Admits a join only with a valid token for that room.
pub struct TokenAdmission {
    key: DecodingKey,
    validation: Validation,
}

impl TokenAdmission {
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(TokenAdmission { key: DecodingKey::from_secret(secret)?, validation })
    }

    /// The token's claims if its signature and times are good.
    pub fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map(|data| data.claims).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => refuse(ErrorCode::TokenExpired, "the room token has expired".into()),
            ErrorKind::ImmatureSignature => refuse(ErrorCode::TokenInvalid, "the room token is not valid yet".into()),
            ErrorKind::InvalidSignature => {
                refuse(ErrorCode::TokenInvalid, "the room token's signature is wrong".into())
            }
            _ => refuse(ErrorCode::TokenInvalid, format!("not a valid room token: {e}")),
        })
    }
}

impl Admission for TokenAdmission {
    fn admit(&self, room: &RoomId, token: Option<&str>) -> Result<Grant, Refusal> {
        let Some(token) = token else {
            return Err(Refusal {
                code: ErrorCode::TokenRequired,
                message: "this server admits only with a room token (open the link you were given)".into(),
            });
        };
        let claims = self.verify(token)?;
        let forbidden = |message: &str| Err(Refusal { code: ErrorCode::Forbidden, message: message.into() });
        if claims.video.room != room.as_str() {
            return forbidden("the room token is for another room");
        }
        if !claims.video.room_join {
            return forbidden("the room token does not grant joining");
        }
        Ok(Grant {
            name: Some(claims.name.unwrap_or(claims.sub)),
            can_publish: claims.video.can_publish,
            can_subscribe: claims.video.can_subscribe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_name_the_participant() {
        let room = RoomId::parse("room-token-01").unwrap();
        let c = claims(room.as_str(), "ada", Some("Ada L."), Duration::from_secs(60), SystemTime::now());
        let token = mint(b"s3cret", &c).unwrap();
        let grant = TokenAdmission::new(b"s3cret").unwrap().admit(&room, Some(&token)).unwrap();
        assert_eq!(grant, Grant { name: Some("Ada L.".into()), can_publish: true, can_subscribe: true });
        let refused = TokenAdmission::new(b"other").unwrap().admit(&room, Some(&token)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TokenInvalid);
        let other_room = RoomId::parse("room-token-02").unwrap();
        assert_eq!(
            TokenAdmission::new(b"s3cret").unwrap().admit(&other_room, Some(&token)).unwrap_err().code,
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let a = TokenAdmission::new(b"k").unwrap();
        let room = RoomId::parse("room-token-01").unwrap();
        for bad in ["", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", &"x".repeat(10_000)] {
            assert_eq!(a.admit(&room, Some(bad)).unwrap_err().code, ErrorCode::TokenInvalid, "{bad:.20}");
        }
    }
}

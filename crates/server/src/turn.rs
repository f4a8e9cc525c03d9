//! Time-limited TURN credentials, the "TURN REST API" scheme that coturn implements as
//! `use-auth-secret`: the username is `EXPIRY_UNIX_TIME:participant`, the password
//! `base64(HMAC-SHA1(shared secret, username))`. The TURN server checks both without
//! asking us, and refuses the pair once the expiry has passed.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A TURN username and its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// Issues credentials for a TURN server that shares `secret` with us.
#[derive(Clone)]
pub struct TurnRest {
    secret: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for TurnRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRest").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl TurnRest {
    pub fn new(secret: Vec<u8>, ttl: Duration) -> Self {
        TurnRest { secret, ttl }
    }

    /// A credential for `participant`, valid until `now + ttl`.
    pub fn issue(&self, participant: &str, now: SystemTime) -> Credential {
        let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default().saturating_add(self.ttl).as_secs();
        credential(&self.secret, expiry, participant)
    }
}

/// The credential for `participant` that expires at `expiry` (unix seconds).
pub fn credential(secret: &[u8], expiry: u64, participant: &str) -> Credential {
    let username = format!("{expiry}:{participant}");
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Credential { username, password }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_turn_rest_example() {
        // Computed independently with openssl:
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let c = credential(b"secret", 1_700_000_000, "alice");
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn expiry_is_now_plus_ttl() {
        let t = TurnRest::new(b"k".to_vec(), Duration::from_secs(3600));
        let c = t.issue("p", UNIX_EPOCH + Duration::from_secs(1000));
        assert!(c.username.starts_with("4600:p"), "{c:?}");
    }
}

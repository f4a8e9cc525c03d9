//! Security headers on every response.
//!
//! The Content-Security-Policy allows exactly what the client in `web/` uses: its own
//! scripts (ES modules, no inline script), its own stylesheet (no inline styles), images
//! from itself and `data:` URLs (the icons in `style.css`), and fetch/WebSocket to its own
//! origin (`'self'` covers `ws:`/`wss:` of the same host). Camera and peer videos are
//! `srcObject` streams, which CSP does not govern. No page may frame it (clickjacking),
//! and no URL leaves in a `Referer` (a room link is the room's secret).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Two years, the common preload value. Sent only with a real certificate (`--tls-cert`):
/// a self-signed one changes at every start, and under HSTS a browser offers no way past it.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000";

/// Adds the headers; `hsts` when serving https with a real certificate.
pub async fn secure(State(hsts): State<bool>, mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    }
    response
}

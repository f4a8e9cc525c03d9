//! Security headers on every response.
//!
//! The Content-Security-Policy allows exactly what the client in `web/` uses: its own
//! scripts (ES modules, no inline script), its own stylesheet (no inline styles), images
//! from itself and `data:` URLs (the icons in `style.css`), and fetch/WebSocket to its own
//! origin (`'self'` covers `ws:`/`wss:` of the same host). Camera and peer videos are
//! `srcObject` streams, which CSP does not govern. No page may frame it (clickjacking),
//! and no URL leaves in a `Referer` (a room link is the room's secret). With several
//! nodes, `connect-src` also names the other nodes' `--public-url` origins: the `/watch`
//! page's WHEP request may be redirected to the node that runs the room's media.

use crate::cluster::Cluster;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use std::sync::Arc;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Two years, the common preload value. Sent only with a real certificate (`--tls-cert`):
/// a self-signed one changes at every start, and under HSTS a browser offers no way past it.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000";

/// What the headers depend on.
#[derive(Clone)]
pub struct Policy {
    /// Serving https with a real certificate.
    pub hsts: bool,
    /// Several nodes: the others' origins join `connect-src`.
    pub cluster: Option<Arc<Cluster>>,
}

/// The policy with `origins` (each `scheme://host[:port]`) allowed for fetches too.
pub fn csp_with(origins: &[String]) -> String {
    let extra: String = origins.iter().map(|o| format!(" {o}")).collect();
    CONTENT_SECURITY_POLICY.replace("connect-src 'self';", &format!("connect-src 'self'{extra};"))
}

/// Adds the headers.
pub async fn secure(State(policy): State<Policy>, mut response: Response) -> Response {
    let hsts = policy.hsts;
    let origins = policy.cluster.as_ref().map(|c| c.peer_origins()).unwrap_or_default();
    let csp = match origins.is_empty() {
        true => HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        false => HeaderValue::from_str(&csp_with(&origins))
            .unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_nodes_join_connect_src_only() {
        let csp = csp_with(&["https://node-2.example.org".into(), "http://10.0.0.3:8080".into()]);
        assert!(
            csp.contains("connect-src 'self' https://node-2.example.org http://10.0.0.3:8080; object-src"),
            "{csp}"
        );
        assert_eq!(csp.replace(" https://node-2.example.org http://10.0.0.3:8080", ""), CONTENT_SECURITY_POLICY);
    }
}

//! Security headers on every response, read by a real HTTP client over TCP (and over TLS
//! with a real certificate, where HSTS is added).

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of header `name` (case-insensitive) in a raw HTTP response.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn assert_secure(response: &str, path: &str) {
    let csp = header(response, "content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP\n{response}"));
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for d in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(directives.contains(&d), "{path}: CSP lacks {d:?}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
    assert_eq!(header(response, "referrer-policy"), Some("no-referrer"), "{path}");
    assert_eq!(header(response, "x-content-type-options"), Some("nosniff"), "{path}");
    assert_eq!(header(response, "x-frame-options"), Some("DENY"), "{path}");
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_plain_http_no_hsts() {
    let addr = start(&[]).await;
    for path in ["/", "/r/room-headers-1", "/app.js", "/style.css", "/api/config", "/healthz", "/no-such-file"] {
        let response = http_get(addr, path).await;
        assert!(response.starts_with("HTTP/1.1 "), "{response}");
        assert_secure(&response, path);
        assert_eq!(header(&response, "strict-transport-security"), None, "{path}: HSTS on plain http");
    }
}

#[tokio::test]
async fn https_with_a_real_certificate_adds_hsts() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("callsight-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let running = start_server(&[
        "--no-stun",
        "--no-media",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ])
    .await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let response = https_get(running.http_addr, Arc::new(config), "/").await;
    assert_secure(&response, "/ over https");
    let hsts = header(&response, "strict-transport-security").expect("HSTS under TLS");
    let max_age: u64 = hsts.strip_prefix("max-age=").and_then(|v| v.split(';').next()?.parse().ok()).unwrap();
    assert!(max_age >= 31_536_000, "{hsts}");
}

async fn https_get(addr: SocketAddr, config: Arc<rustls::ClientConfig>, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server may end TLS without close_notify after `Connection: close`; keep what came.
    let _ = tokio::time::timeout(REPLY_DEADLINE, tls.read_to_end(&mut buf)).await.expect("response in time");
    String::from_utf8_lossy(&buf).into_owned()
}

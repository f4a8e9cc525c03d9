//! The accept loop: every TCP connection passes [`ConnectionGate`] (connection caps) before
//! anything is read from it, gets its TLS handshake and each request's headers within
//! the header-read timeout, and speaks HTTP/1.1 (with WebSocket upgrades) to the router.
//!
//! `axum::serve` has none of these knobs, so the loop drives hyper's HTTP/1 connection
//! directly; the router is unchanged. HTTP/2 is not offered: the client needs HTTP/1.1
//! for its WebSocket anyway, and one protocol is one set of limits.

use crate::connections::{ConnectionGate, Slot};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// The connection slot an HTTP request came in on; a WebSocket keeps it for its life.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<Slot>);

/// Serves `router` on `listener` until the listener fails.
pub async fn run(
    listener: TcpListener,
    router: Router,
    gate: Arc<ConnectionGate>,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_read_timeout: Duration,
) -> anyhow::Result<()> {
    let tls = tls.map(|config| {
        // HTTP/1.1 only (see the module docs).
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: give the others time to close
                // instead of spinning on the error.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match gate.admit_tcp(peer.ip()) {
            Ok(slot) => Arc::new(slot),
            Err(refusal) => {
                tracing::debug!(%peer, "connection refused: {refusal}");
                continue; // dropping the stream closes it
            }
        };
        // Small signaling frames must not wait for Nagle's algorithm (40 ms stalls).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        tokio::spawn(connection(tcp, peer, slot, router.clone(), tls.clone(), header_read_timeout));
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    router: Router,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
) {
    let slot = ConnectionSlot(slot);
    match tls {
        None => http(tcp, peer, slot, router, header_read_timeout).await,
        Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => http(stream, peer, slot, router, header_read_timeout).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn http<S>(io: S, peer: SocketAddr, slot: ConnectionSlot, router: Router, header_read_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(slot.clone());
        let mut router = router.clone();
        async move { router.call(req.map(Body::new)).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).with_upgrades().await {
        tracing::debug!(%peer, "http connection: {e}");
    }
}

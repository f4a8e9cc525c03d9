//! A STUN Binding server (RFC 5389 §7, §10): it tells each browser the address its
//! packets come from, so ICE can offer server-reflexive candidates.
//!
//! The answer is computed by the pure [`binding_response`]; the UDP loop only moves
//! bytes. Tests check it with an independent STUN implementation (`stun_codec`).
//!
//! A reply is larger than its request and UDP sources are easily forged, so each source
//! address gets a token bucket ([`SourceLimiter`]): no one can aim more than
//! `--stun-rate` replies a second at an address through us.

use crate::source_limit::{SourceLimiter, SourceLimits};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;
use tokio::net::UdpSocket;

const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Largest datagram read; a Binding request is tens of bytes.
const MAX_DATAGRAM: usize = 1500;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message (bad leading bits or magic cookie)")]
    NotStun,
    #[error("length field {0} does not match the datagram")]
    BadLength(usize),
    #[error("message type {0:#06x} is not a Binding request")]
    NotBindingRequest(u16),
}

/// The success response to a Binding request from `from`.
pub fn binding_response(request: &[u8], from: SocketAddr) -> Result<Vec<u8>, StunError> {
    if request.len() < HEADER_LEN {
        return Err(StunError::TooShort);
    }
    let msg_type = u16::from_be_bytes([request[0], request[1]]);
    let length = usize::from(u16::from_be_bytes([request[2], request[3]]));
    let cookie = u32::from_be_bytes([request[4], request[5], request[6], request[7]]);
    if msg_type & 0xC000 != 0 || cookie != MAGIC_COOKIE {
        return Err(StunError::NotStun);
    }
    if length % 4 != 0 || HEADER_LEN + length != request.len() {
        return Err(StunError::BadLength(length));
    }
    if msg_type != BINDING_REQUEST {
        return Err(StunError::NotBindingRequest(msg_type));
    }
    let transaction_id = &request[8..HEADER_LEN];

    let mut value = vec![0u8];
    let port = from.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match from.ip() {
        IpAddr::V4(ip) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            value.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
            key.extend_from_slice(transaction_id);
            value.extend(ip.octets().iter().zip(&key).map(|(a, k)| a ^ k));
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + value.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction_id);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    Ok(out)
}

/// What the STUN server did with the datagrams it read (shown in `/healthz`).
#[derive(Debug, Default, Serialize)]
pub struct StunCounters {
    /// Binding requests answered.
    pub answered: AtomicU64,
    /// Binding requests not answered: their source was over `--stun-rate`.
    pub rate_limited: AtomicU64,
    /// Datagrams that were not Binding requests.
    pub ignored: AtomicU64,
}

/// A running STUN server.
pub struct StunServer {
    pub addr: SocketAddr,
    pub counters: Arc<StunCounters>,
}

/// Binds `addr` and answers Binding requests, within `limits` per source, until the
/// process ends.
pub async fn spawn(addr: SocketAddr, limits: SourceLimits) -> std::io::Result<StunServer> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    tracing::info!("STUN listening on udp {local}");
    let counters = Arc::new(StunCounters::default());
    let count = counters.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut limiter = SourceLimiter::new(limits);
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                Err(e) => {
                    tracing::debug!("stun recv: {e}");
                    continue;
                }
            };
            match binding_response(&buf[..n], from) {
                Ok(_) if !limiter.allow(from.ip(), Instant::now()) => {
                    count.rate_limited.fetch_add(1, Relaxed);
                    tracing::trace!("stun: {from} is over its rate; not answering")
                }
                Ok(reply) => {
                    count.answered.fetch_add(1, Relaxed);
                    if let Err(e) = socket.send_to(&reply, from).await {
                        tracing::debug!("stun send to {from}: {e}");
                    }
                }
                Err(e) => {
                    count.ignored.fetch_add(1, Relaxed);
                    tracing::trace!("stun: ignoring datagram from {from}: {e}")
                }
            }
        }
    });
    Ok(StunServer { addr: local, counters })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        let mut r = vec![0x00, 0x01, 0x00, 0x00];
        r.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        r.extend_from_slice(&[7u8; 12]);
        r
    }

    #[test]
    fn rejects_what_is_not_a_binding_request() {
        let from: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert_eq!(binding_response(&[0; 5], from), Err(StunError::TooShort));
        let mut bad_cookie = request();
        bad_cookie[4] = 0;
        assert_eq!(binding_response(&bad_cookie, from), Err(StunError::NotStun));
        let mut long = request();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(binding_response(&long, from), Err(StunError::BadLength(0)));
        let mut indication = request();
        indication[1] = 0x11;
        assert_eq!(binding_response(&indication, from), Err(StunError::NotBindingRequest(0x0011)));
    }

    #[test]
    fn response_echoes_the_transaction_id() {
        let from: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let resp = binding_response(&request(), from).unwrap();
        assert_eq!(&resp[8..20], &[7u8; 12]);
        assert_eq!(resp.len(), 20 + 4 + 20);
    }
}

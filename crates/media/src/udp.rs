//! The UDP side: binds the media port, reads datagrams and routes them, sends what the
//! sessions transmit. Nothing here knows a session; it only knows which remote addresses
//! belong to one ([`Routes`], kept by the driver).
//!
//! Routing happens on the socket tasks, before any queue: datagrams from known remote
//! addresses go to the media queue; from unknown addresses only what looks like a STUN
//! message (the ICE checks that start a session) goes to a separate, smaller queue; the
//! rest is counted and dropped at once. A flood of junk to the media port therefore
//! never sits in front of real media.
//!
//! Host candidates: with an unspecified bind IP, one socket per candidate IP is bound on
//! the same port (so each datagram's destination address is known exactly, which ICE
//! needs). The default candidate IPs are 127.0.0.1 and the address of the interface that
//! holds the default route (found by `connect`ing a UDP socket to a TEST-NET address,
//! which sends nothing).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::error::MediaError;
use crate::stats::Counters;

/// Larger than any datagram str0m or a browser sends (MTU ~1200–1500).
const RECV_BUF: usize = 2048;
/// RFC 5389 magic cookie, bytes 4..8 of every STUN message.
const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// One received datagram.
pub(crate) struct Datagram {
    pub local: SocketAddr,
    pub source: SocketAddr,
    pub data: Vec<u8>,
    pub at: Instant,
}

/// Remote addresses that belong to a session (reference-counted: a remote may briefly
/// belong to an old and a new session of the same client).
#[derive(Clone, Default)]
pub(crate) struct Routes(Arc<RwLock<HashMap<SocketAddr, u32>>>);

impl Routes {
    pub(crate) fn add(&self, addr: SocketAddr) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()).entry(addr).or_insert(0) += 1;
    }

    pub(crate) fn remove(&self, addr: SocketAddr) {
        let mut m = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                m.remove(&addr);
            }
        }
    }

    fn contains(&self, addr: &SocketAddr) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains_key(addr)
    }
}

/// A STUN message header (RFC 5389): type's top bits 0, length a multiple of 4 that
/// matches the datagram, the magic cookie.
pub(crate) fn looks_like_stun(d: &[u8]) -> bool {
    d.len() >= 20
        && d[0] & 0xc0 == 0
        && d[4..8] == STUN_COOKIE
        && usize::from(u16::from_be_bytes([d[2], d[3]])) == d.len() - 20
}

/// The queues the socket tasks fill.
pub(crate) struct Inbound {
    pub media: mpsc::Receiver<Datagram>,
    pub stun: mpsc::Receiver<Datagram>,
}

/// The bound sockets, for sending.
pub(crate) struct Sockets {
    sockets: Vec<Arc<UdpSocket>>,
    local_addrs: Vec<SocketAddr>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl Sockets {
    /// Binds one socket per candidate IP (all on one port) and starts their readers.
    pub(crate) async fn bind(
        bind: SocketAddr,
        candidate_ips: &[IpAddr],
        queues: (usize, usize),
        buffer_bytes: usize,
        routes: Routes,
        counters: Arc<Counters>,
    ) -> Result<(Sockets, Inbound), MediaError> {
        let ips: Vec<IpAddr> = if bind.ip().is_unspecified() {
            if candidate_ips.is_empty() {
                discover_ips()
            } else {
                candidate_ips.to_vec()
            }
        } else {
            vec![bind.ip()]
        };
        let mut sockets = Vec::new();
        let mut port = bind.port();
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            let sock = UdpSocket::bind(addr).await.map_err(|source| MediaError::Bind { addr, source })?;
            port = sock.local_addr()?.port();
            if buffer_bytes > 0 {
                set_buffers(&sock, buffer_bytes);
            }
            sockets.push(Arc::new(sock));
        }
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr()).collect::<Result<_, _>>()?;
        let (media_tx, media) = mpsc::channel(queues.0.max(1));
        let (stun_tx, stun) = mpsc::channel(queues.1.max(1));
        let send_dropped = counters.clone();
        let readers = sockets
            .iter()
            .zip(&local_addrs)
            .map(|(sock, local)| {
                let router = Router {
                    local: *local,
                    routes: routes.clone(),
                    media: media_tx.clone(),
                    stun: stun_tx.clone(),
                    counters: counters.clone(),
                };
                tokio::spawn(router.run(sock.clone()))
            })
            .collect();
        Ok((Sockets { sockets, local_addrs, readers, counters: send_dropped }, Inbound { media, stun }))
    }

    pub(crate) fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Sends from the socket bound to `source` (the first one if none matches). A full
    /// send buffer is loss, which WebRTC recovers from; it is counted.
    pub(crate) fn send(&self, source: SocketAddr, dest: SocketAddr, data: &[u8]) {
        let sock = self.local_addrs.iter().position(|a| *a == source).unwrap_or(0);
        if let Some(sock) = self.sockets.get(sock) {
            if let Err(e) = sock.try_send_to(data, dest) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    Counters::inc(&self.counters.datagrams_send_dropped);
                }
                tracing::trace!(%dest, "udp send: {e}");
            }
        }
    }
}

/// Asks for `bytes` of kernel receive and send buffer; warns when the kernel gives less
/// (Linux reports twice what it grants, for its own bookkeeping).
fn set_buffers(sock: &UdpSocket, bytes: usize) {
    let s = socket2::SockRef::from(sock);
    let _ = s.set_recv_buffer_size(bytes);
    let _ = s.set_send_buffer_size(bytes);
    let got = (s.recv_buffer_size().unwrap_or(0) / 2, s.send_buffer_size().unwrap_or(0) / 2);
    if got.0 < bytes || got.1 < bytes {
        tracing::warn!(
            asked = bytes,
            receive = got.0,
            send = got.1,
            "media socket buffers capped by the kernel: raise net.core.rmem_max and net.core.wmem_max (sysctl) for rooms of many people"
        );
    }
}

/// One socket's reader: classifies every datagram before it is queued.
struct Router {
    local: SocketAddr,
    routes: Routes,
    media: mpsc::Sender<Datagram>,
    stun: mpsc::Sender<Datagram>,
    counters: Arc<Counters>,
}

impl Router {
    async fn run(self, sock: Arc<UdpSocket>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, source)) => {
                    if !self.route(source, &buf[..n]) {
                        return;
                    }
                }
                // E.g. ICMP port unreachable surfacing as ECONNREFUSED: not fatal for a server.
                Err(e) => tracing::debug!(local = %self.local, "udp recv: {e}"),
            }
        }
    }

    /// False once the driver is gone.
    fn route(&self, source: SocketAddr, data: &[u8]) -> bool {
        let queue = if self.routes.contains(&source) {
            &self.media
        } else if looks_like_stun(data) {
            &self.stun
        } else {
            Counters::inc(&self.counters.garbage_packets);
            return true;
        };
        let d = Datagram { local: self.local, source, data: data.to_vec(), at: Instant::now() };
        match queue.try_send(d) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Counters::inc(&self.counters.datagrams_dropped);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// 127.0.0.1 plus the interface address of the default route, if any.
fn discover_ips() -> Vec<IpAddr> {
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|_| s))
        .and_then(|s| s.local_addr());
    if let Ok(addr) = probe {
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            ips.push(addr.ip());
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_header_check() {
        // A binding request with no attributes.
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend([7u8; 12]);
        assert!(looks_like_stun(&req));
        let mut with_attr = req.clone();
        with_attr[3] = 4;
        assert!(!looks_like_stun(&with_attr), "length must match");
        with_attr.extend([0, 0, 0, 0]);
        assert!(looks_like_stun(&with_attr));
        let mut rtp = req.clone();
        rtp[0] = 0x80;
        assert!(!looks_like_stun(&rtp));
        let mut no_cookie = req.clone();
        no_cookie[4] = 0;
        assert!(!looks_like_stun(&no_cookie));
        assert!(!looks_like_stun(&req[..19]));
    }

    #[test]
    fn routes_are_counted_per_owner() {
        let r = Routes::default();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        r.add(a);
        r.add(a);
        r.remove(a);
        assert!(r.contains(&a), "still owned by the second session");
        r.remove(a);
        assert!(!r.contains(&a));
        r.remove(a);
    }

    #[tokio::test]
    async fn media_sockets_get_the_buffers_asked_for_up_to_the_kernel_cap() {
        let cap = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let (Some(rmax), Some(wmax)) = (cap("rmem_max"), cap("wmem_max")) else { return };
        let asked = 1 << 20;
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let counters = Arc::new(Counters::default());
        let (sockets, _inbound) = Sockets::bind(bind, &[], (8, 8), asked, Routes::default(), counters).await.unwrap();
        let s = socket2::SockRef::from(sockets.sockets[0].as_ref());
        // Linux reports twice the granted size.
        assert!(
            s.recv_buffer_size().unwrap() / 2 >= asked.min(rmax),
            "receive buffer {}",
            s.recv_buffer_size().unwrap()
        );
        assert!(s.send_buffer_size().unwrap() / 2 >= asked.min(wmax), "send buffer {}", s.send_buffer_size().unwrap());
    }
}

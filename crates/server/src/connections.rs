//! Who may hold a connection: caps on connections in total and per client address,
//! and the client address itself (from `X-Forwarded-For` only when the peer is a proxy
//! we trust).
//!
//! A [`Slot`] is one admitted connection; dropping it frees the place. The HTTP
//! connection holds one from accept on, and a WebSocket upgraded from it keeps it for
//! its whole life. IPv6 clients are counted per /64, the block one host usually holds.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server holds its maximum of {0} connections")]
    Total(usize),
    #[error("this address holds its maximum of {0} connections")]
    PerAddress(usize),
}

/// Connection caps (0 = no cap).
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub trusted_proxies: Vec<IpNet>,
}

pub struct ConnectionGate {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    refused: u64,
}

/// One admitted connection; the place is freed on drop.
pub struct Slot {
    gate: Arc<ConnectionGate>,
    total: bool,
    address: Option<IpAddr>,
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionGate { limits, counts: Mutex::default() })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = bucket_v4(peer);
        self.limits.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// A TCP connection from `peer`: counted in the total, and per address unless the
    /// peer is a trusted proxy (its clients are counted at the WebSocket, by
    /// [`ConnectionGate::admit_forwarded`]).
    pub fn admit_tcp(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let per_address = !self.is_trusted_proxy(peer);
        self.admit(true, per_address.then(|| bucket(peer)))
    }

    /// A client behind a trusted proxy, known by its `X-Forwarded-For` address.
    pub fn admit_forwarded(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        self.admit(false, Some(bucket(client)))
    }

    fn admit(self: &Arc<Self>, total: bool, address: Option<IpAddr>) -> Result<Slot, Refusal> {
        let mut c = self.counts();
        let max_total = self.limits.max_connections;
        if total && max_total > 0 && c.total >= max_total {
            c.refused += 1;
            return Err(Refusal::Total(max_total));
        }
        let max_addr = self.limits.max_per_address;
        if let Some(a) = address {
            let held = c.per_address.get(&a).copied().unwrap_or(0);
            if max_addr > 0 && held >= max_addr {
                c.refused += 1;
                return Err(Refusal::PerAddress(max_addr));
            }
            c.per_address.insert(a, held + 1);
        }
        if total {
            c.total += 1;
        }
        Ok(Slot { gate: self.clone(), total, address })
    }

    /// (connections held, connections refused so far)
    pub fn stats(&self) -> (usize, u64) {
        let c = self.counts();
        (c.total, c.refused)
    }

    /// The client's address: the peer's, or — when the peer is a trusted proxy — the
    /// last address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else { return peer };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted_proxy(ip) {
                        break;
                    }
                }
                // An unparsable hop: trust nothing further left of it.
                Err(_) => break,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) compare as IPv4.
fn bucket_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.gate.counts();
        if self.total {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(a) = self.address {
            if let Some(n) = c.per_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(total: usize, per: usize, proxies: &[&str]) -> Arc<ConnectionGate> {
        ConnectionGate::new(ConnectionLimits {
            max_connections: total,
            max_per_address: per,
            trusted_proxies: proxies.iter().map(|p| crate::config::parse_net(p).unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_total_and_per_address_and_frees_on_drop() {
        let a = gate(3, 2, &[]);
        let s1 = a.admit_tcp(ip("10.0.0.1")).unwrap();
        let _s2 = a.admit_tcp(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit_tcp(ip("10.0.0.1")).err(), Some(Refusal::PerAddress(2)));
        let _s3 = a.admit_tcp(ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit_tcp(ip("10.0.0.3")).err(), Some(Refusal::Total(3)));
        drop(s1);
        let _s4 = a.admit_tcp(ip("10.0.0.1")).unwrap();
        assert_eq!(a.stats(), (3, 2));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a = gate(0, 1, &[]);
        let _s = a.admit_tcp(ip("2001:db8:1:2::1")).unwrap();
        assert!(a.admit_tcp(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert!(a.admit_tcp(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = a.admit_tcp(ip("192.0.2.1")).unwrap();
        assert!(a.admit_tcp(ip("::ffff:192.0.2.1")).is_err());
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let a = gate(0, 0, &["10.1.0.0/16", "127.0.0.1"]);
        let xff = Some("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(a.client_address(ip("127.0.0.1"), xff), ip("198.51.100.7"), "rightmost untrusted hop");
        assert_eq!(a.client_address(ip("192.0.2.5"), xff), ip("192.0.2.5"), "untrusted peer: header ignored");
        assert_eq!(a.client_address(ip("127.0.0.1"), None), ip("127.0.0.1"));
        assert_eq!(a.client_address(ip("127.0.0.1"), Some("junk, 198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(a.client_address(ip("127.0.0.1"), Some("garbage")), ip("127.0.0.1"));
        // A proxy's own connections are not capped per address; its clients are.
        let a = gate(0, 1, &["127.0.0.1"]);
        let _p1 = a.admit_tcp(ip("127.0.0.1")).unwrap();
        let _p2 = a.admit_tcp(ip("127.0.0.1")).unwrap();
        let _c = a.admit_forwarded(ip("198.51.100.7")).unwrap();
        assert!(a.admit_forwarded(ip("198.51.100.7")).is_err());
    }
}

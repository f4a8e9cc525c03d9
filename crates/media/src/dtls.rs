//! The DTLS handshake of the server's sessions with `--dtls openssl`: OpenSSL's, behind
//! str0m's `DtlsProvider` interface, in place of str0m's default DTLS (dimpl, `--dtls dimpl`). The rest of the
//! session's crypto (SRTP, STUN's HMAC, hashes, the certificate) stays str0m's default.
//!
//! Why: dimpl asks the client for an ECDSA certificate only (its `CertificateRequest`
//! names `ecdsa_sign` and ECDSA signature algorithms; it has no RSA). A client whose DTLS
//! certificate is RSA then sends an empty `Certificate`, and dimpl ends the handshake with
//! `handshake_failure` (alert 40). GStreamer's `webrtcbin` before 1.28 (Debian 12 ships
//! 1.22) makes an RSA-2048 certificate, as other OpenSSL-based WebRTC stacks may: such WHIP
//! encoders and WHEP players could not connect. OpenSSL's DTLS 1.2 requests and verifies
//! RSA and ECDSA certificates alike, and still requires one (`FAIL_IF_NO_PEER_CERT`); str0m
//! checks it against the SDP fingerprint as before (`PeerCert`). The server's own
//! certificate stays ECDSA P-256, so str0m (dimpl) clients and browsers connect as before.
//! (str0m's own OpenSSL backend crate was not usable: none on the registry matches this
//! str0m's crypto interface.)
//!
//! Sans-IO like the rest of the session: datagrams in ([`DtlsInstance::handle_packet`]),
//! datagrams and events out ([`DtlsInstance::poll_output`]); OpenSSL reads and writes an
//! in-memory [`Wire`], one datagram per read or write.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use foreign_types_shared::ForeignTypeRef;
use openssl::pkey::PKey;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use str0m::config::CryptoProvider;
use str0m::crypto::dtls::{DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion};
use str0m::crypto::dtls::{KeyingMaterial, ProtocolVersion, SrtpProfile};
use str0m::crypto::CryptoError;

use crate::types::DtlsStack;

/// The crypto provider given to each session's `Rtc` (one of each per process).
pub(crate) fn provider(stack: DtlsStack) -> Arc<CryptoProvider> {
    static OPENSSL: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DIMPL: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    match stack {
        DtlsStack::OpenSsl => OPENSSL
            .get_or_init(|| {
                Arc::new(CryptoProvider { dtls_provider: &OpenSslDtls, ..str0m::crypto::from_feature_flags() })
            })
            .clone(),
        DtlsStack::Dimpl => DIMPL.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags())).clone(),
    }
}

/// ECDHE only; ECDSA suites for our own certificate, RSA ones for a peer that is the DTLS
/// server with an RSA certificate.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA";
/// The SRTP profiles str0m implements, preferred first.
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_128_GCM:SRTP_AEAD_AES_256_GCM:SRTP_AES128_CM_SHA1_80";
/// RFC 5764 §4.2.
const SRTP_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// MTU when str0m gives none.
const DEFAULT_MTU: usize = 1150;
/// Datagrams waiting for OpenSSL at most (it takes each at once; this only bounds a flood).
const MAX_QUEUED: usize = 64;
/// How often an unfinished handshake is looked at (OpenSSL keeps its own retransmission
/// timer; this is when we ask it whether it ran out).
const HANDSHAKE_TICK: Duration = Duration::from_millis(100);
/// `DTLS_CTRL_HANDLE_TIMEOUT` (ssl.h): `DTLSv1_handle_timeout`, a macro the bindings lack.
const DTLS_CTRL_HANDLE_TIMEOUT: std::ffi::c_int = 74;

#[derive(Debug)]
struct OpenSslDtls;

impl DtlsProvider for OpenSslDtls {
    /// str0m's default: ECDSA P-256, self-signed.
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        if !matches!(version, DtlsVersion::Dtls12) {
            return Err(CryptoError::Other(format!("OpenSSL DTLS here speaks DTLS 1.2 only, not {version}")));
        }
        let ssl = new_ssl(cert, mtu.unwrap_or(DEFAULT_MTU)).map_err(|e| CryptoError::Other(e.to_string()))?;
        Ok(Box::new(Dtls::new(ssl, now)))
    }
}

fn new_ssl(cert: &DtlsCert, mtu: usize) -> Result<Ssl, openssl::error::ErrorStack> {
    let mut ctx = SslContextBuilder::new(SslMethod::dtls())?;
    ctx.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    ctx.set_cipher_list(CIPHERS)?;
    ctx.set_tlsext_use_srtp(SRTP_PROFILES)?;
    // Any certificate, but one is required: str0m compares it with the SDP fingerprint.
    ctx.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, |_, _| true);
    let (x509, key) = (X509::from_der(&cert.certificate)?, PKey::private_key_from_der(&cert.private_key)?);
    ctx.set_certificate(&x509)?;
    ctx.set_private_key(&key)?;
    ctx.check_private_key()?;
    ctx.set_options(SslOptions::NO_QUERY_MTU | SslOptions::SINGLE_ECDH_USE | SslOptions::NO_TICKET);
    let mut ssl = Ssl::new(&ctx.build())?;
    ssl.set_mtu(mtu as u32)?;
    Ok(ssl)
}

/// What OpenSSL reads and writes: one datagram per call.
#[derive(Debug, Default)]
struct Wire {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the instance has to tell str0m, in this order after the handshake:
/// the peer's certificate, the SRTP keys, connected.
#[derive(Debug)]
enum Event {
    PeerCert(Vec<u8>),
    Keys(KeyingMaterial, SrtpProfile),
    Connected,
    Data(Vec<u8>),
    CloseNotify,
}

/// One session's DTLS.
#[derive(Debug)]
struct Dtls {
    /// Until the role is known.
    ssl: Option<Ssl>,
    stream: Option<SslStream<Wire>>,
    events: VecDeque<Event>,
    connected: bool,
    closing: bool,
    now: Instant,
}

fn failed(what: &str, e: impl std::fmt::Display) -> DtlsImplError {
    tracing::debug!("DTLS (OpenSSL) {what}: {e}");
    DtlsImplError::ConnectionClosed
}

impl Dtls {
    fn new(ssl: Ssl, now: Instant) -> Dtls {
        Dtls { ssl: Some(ssl), stream: None, events: VecDeque::new(), connected: false, closing: false, now }
    }

    /// Lets OpenSSL take what arrived: the handshake, then application data.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        if !self.connected {
            match stream.do_handshake() {
                Ok(()) => {
                    self.connected = true;
                    let ssl = stream.ssl();
                    let cert = ssl.peer_certificate().ok_or_else(|| failed("handshake", "no peer certificate"))?;
                    let der = cert.to_der().map_err(|e| failed("peer certificate", e))?;
                    let id = ssl.selected_srtp_profile().map(|p| p.id());
                    let profile = match id {
                        Some(SrtpProfileId::SRTP_AES128_CM_SHA1_80) => SrtpProfile::AES128_CM_SHA1_80,
                        Some(SrtpProfileId::SRTP_AEAD_AES_128_GCM) => SrtpProfile::AEAD_AES_128_GCM,
                        Some(SrtpProfileId::SRTP_AEAD_AES_256_GCM) => SrtpProfile::AEAD_AES_256_GCM,
                        other => return Err(failed("SRTP profile", format!("{other:?} negotiated"))),
                    };
                    let mut keys = vec![0u8; profile.keying_material_len()];
                    ssl.export_keying_material(&mut keys, SRTP_LABEL, None)
                        .map_err(|e| failed("keying material", e))?;
                    self.events.push_back(Event::PeerCert(der));
                    self.events.push_back(Event::Keys(KeyingMaterial::new(&keys), profile));
                    self.events.push_back(Event::Connected);
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => return Ok(()),
                Err(e) => return Err(failed("handshake", e)),
            }
        }
        let mut buf = [0u8; 2048];
        loop {
            match stream.ssl_read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.events.push_back(Event::Data(buf[..n].to_vec())),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.events.push_back(Event::CloseNotify);
                    return Ok(());
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => return Ok(()),
                Err(e) => return Err(failed("read", e)),
            }
        }
    }
}

impl DtlsInstance for Dtls {
    fn set_active(&mut self, active: bool) {
        let Some(mut ssl) = self.ssl.take() else { return };
        if active {
            ssl.set_connect_state();
        } else {
            ssl.set_accept_state();
        }
        match SslStream::new(ssl, Wire::default()) {
            Ok(s) => self.stream = Some(s),
            Err(e) => {
                failed("setup", e);
                return;
            }
        }
        // The client speaks first (ClientHello).
        if let Err(e) = self.drive() {
            tracing::debug!("DTLS start: {e}");
        }
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        let wire = stream.get_mut();
        if wire.incoming.len() >= MAX_QUEUED {
            wire.incoming.pop_front();
        }
        wire.incoming.push_back(packet.to_vec());
        self.drive()
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let copy = |buf: &'a mut [u8], data: &[u8]| -> Result<&'a [u8], usize> {
            let out = buf.get_mut(..data.len()).ok_or(data.len())?;
            out.copy_from_slice(data);
            Ok(out)
        };
        if let Some(wire) = self.stream.as_mut().map(|s| s.get_mut()) {
            if let Some(d) = wire.outgoing.pop_front() {
                return match copy(buf, &d) {
                    Ok(p) => DtlsOutput::Packet(p),
                    Err(needed) => {
                        wire.outgoing.push_front(d);
                        DtlsOutput::BufferTooSmall { needed }
                    }
                };
            }
        }
        if let Some(e) = self.events.pop_front() {
            let out = match &e {
                Event::PeerCert(der) => copy(buf, der).map(DtlsOutput::PeerCert),
                Event::Data(d) => copy(buf, d).map(DtlsOutput::ApplicationData),
                Event::Keys(k, p) => Ok(DtlsOutput::KeyingMaterial(KeyingMaterial::new(k), *p)),
                Event::Connected => Ok(DtlsOutput::Connected),
                Event::CloseNotify => Ok(DtlsOutput::CloseNotify),
            };
            return match out {
                Ok(o) => o,
                Err(needed) => {
                    self.events.push_front(e);
                    DtlsOutput::BufferTooSmall { needed }
                }
            };
        }
        let next = if self.stream.is_some() && !self.connected { HANDSHAKE_TICK } else { Duration::from_secs(3600) };
        DtlsOutput::Timeout(self.now + next)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.now = now;
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        if self.connected {
            return Ok(());
        }
        // Retransmits the last flight if OpenSSL's own timer ran out (a no-op otherwise).
        // SAFETY: the pointer is the live SSL of `stream`; the control takes no argument.
        let r =
            unsafe { openssl_sys::SSL_ctrl(stream.ssl().as_ptr(), DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut()) };
        if r < 0 {
            return Err(failed("retransmission", "too many timeouts"));
        }
        self.drive()
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        let Some(stream) = self.stream.as_mut().filter(|_| self.connected && !self.closing) else { return Ok(0) };
        if data.is_empty() {
            return Ok(0);
        }
        match stream.ssl_write(data) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(0),
            Err(e) => Err(failed("write", e)),
        }
    }

    fn is_active(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| !s.ssl().is_server())
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.connected.then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.closing && !self.is_closed()
    }

    fn is_closed(&self) -> bool {
        self.closing && self.stream.as_ref().is_none_or(|s| s.get_ref().outgoing.is_empty())
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.closing = true;
        if let Some(stream) = self.stream.as_mut().filter(|_| self.connected) {
            // Sends close_notify; the peer's answer is not waited for.
            let _ = stream.shutdown();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;

    /// A self-signed RSA-2048 certificate, as GStreamer < 1.28 makes one.
    fn rsa_cert() -> DtlsCert {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "gst").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        DtlsCert { certificate: b.build().to_der().unwrap(), private_key: key.private_key_to_der().unwrap() }
    }

    /// An event reported (its name) with its bytes.
    type Seen = Vec<(String, Vec<u8>)>;

    /// Everything one side has to say: datagrams and events.
    fn drain(d: &mut dyn DtlsInstance) -> (Vec<Vec<u8>>, Seen) {
        let (mut packets, mut events) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 4096];
        loop {
            match d.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => packets.push(p.to_vec()),
                DtlsOutput::Timeout(_) => return (packets, events),
                DtlsOutput::PeerCert(c) => events.push(("cert".into(), c.to_vec())),
                DtlsOutput::KeyingMaterial(k, p) => events.push((format!("keys {p:?}"), k.to_vec())),
                DtlsOutput::Connected => events.push(("connected".into(), Vec::new())),
                DtlsOutput::ApplicationData(a) => events.push(("data".into(), a.to_vec())),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Runs the handshake between two instances in memory; returns what each reported.
    fn handshake(client: &mut dyn DtlsInstance, server: &mut dyn DtlsInstance) -> (Seen, Seen) {
        server.set_active(false);
        client.set_active(true);
        let (mut seen_c, mut seen_s) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let (to_s, ev) = drain(client);
            seen_c.extend(ev);
            for p in &to_s {
                server.handle_packet(p).expect("server takes the client's flight");
            }
            let (to_c, ev) = drain(server);
            seen_s.extend(ev);
            for p in &to_c {
                client.handle_packet(p).expect("client takes the server's flight");
            }
            if to_s.is_empty() && to_c.is_empty() {
                break;
            }
        }
        (seen_c, seen_s)
    }

    #[test]
    fn an_rsa_client_certificate_is_taken_and_both_sides_get_the_same_keys() {
        let now = Instant::now();
        let server_cert = OpenSslDtls.generate_certificate().unwrap();
        let client_cert = rsa_cert();
        let mut server = OpenSslDtls.new_dtls(&server_cert, now, DtlsVersion::Dtls12, None).unwrap();
        let mut client = OpenSslDtls.new_dtls(&client_cert, now, DtlsVersion::Dtls12, None).unwrap();
        let (c, s) = handshake(client.as_mut(), server.as_mut());
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s), ["cert", "keys AEAD_AES_128_GCM", "connected"], "server events");
        assert_eq!(names(&c), ["cert", "keys AEAD_AES_128_GCM", "connected"], "client events");
        assert_eq!(s[0].1, client_cert.certificate, "the server saw the client's RSA certificate");
        assert_eq!(c[0].1, server_cert.certificate);
        assert_eq!(s[1].1, c[1].1, "the same SRTP keying material");
        assert!(server.protocol_version().is_some() && !server.is_active() && client.is_active());

        // Application data both ways (SCTP rides on it).
        assert_eq!(client.send_application_data(b"hello").unwrap(), 5);
        let (packets, _) = drain(client.as_mut());
        for p in &packets {
            server.handle_packet(p).unwrap();
        }
        let (_, ev) = drain(server.as_mut());
        assert_eq!(ev, [("data".to_owned(), b"hello".to_vec())]);
    }

    #[test]
    fn a_client_without_a_certificate_is_refused() {
        // OpenSSL's client with no certificate at all: the server must not connect.
        let now = Instant::now();
        let server_cert = OpenSslDtls.generate_certificate().unwrap();
        let mut server = OpenSslDtls.new_dtls(&server_cert, now, DtlsVersion::Dtls12, None).unwrap();
        let mut ctx = SslContextBuilder::new(SslMethod::dtls()).unwrap();
        ctx.set_tlsext_use_srtp(SRTP_PROFILES).unwrap();
        ctx.set_verify(SslVerifyMode::NONE);
        ctx.set_options(SslOptions::NO_QUERY_MTU);
        let mut ssl = Ssl::new(&ctx.build()).unwrap();
        ssl.set_mtu(1150).unwrap();
        let mut client = Dtls::new(ssl, now);
        server.set_active(false);
        client.set_active(true);
        let mut refused = false;
        for _ in 0..10 {
            let (to_s, _) = drain(&mut client);
            for p in &to_s {
                refused |= server.handle_packet(p).is_err();
            }
            let (to_c, ev) = drain(server.as_mut());
            assert!(ev.is_empty(), "the server reported {ev:?}");
            for p in &to_c {
                let _ = client.handle_packet(p);
            }
            if to_s.is_empty() && to_c.is_empty() {
                break;
            }
        }
        assert!(refused, "the handshake fails on the server");
    }
}

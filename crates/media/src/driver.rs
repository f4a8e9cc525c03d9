//! One tokio task drives every publishing session (sans-IO str0m `Rtc`s) over one UDP
//! port: datagrams are routed to the session whose `Rtc::accepts` them, timers are the
//! earliest `Output::Timeout` of all sessions. Media data goes to the per-track decoder
//! threads; nothing slow runs here.
//!
//! Host candidates: with an unspecified bind IP, one socket per candidate IP is bound on
//! the same port (so each datagram's destination address is known exactly, which ICE
//! needs). The default candidate IPs are 127.0.0.1 and the address of the interface that
//! holds the default route (found by `connect`ing a UDP socket to a TEST-NET address,
//! which sends nothing).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::capture::CaptureClock;
use crate::decode::{self, Au, DecoderCtx};
use crate::hub::{MediaConfig, PublisherKey};
use crate::scheduler::{Scheduler, TrackMeta};
use crate::stats::Counters;
use crate::MediaError;

/// RTP header extension id for abs-capture-time (free in str0m's standard map).
pub const ABS_CAPTURE_TIME_ID: u8 = 9;
/// How often idle / dead sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Larger than any datagram str0m or a browser sends (MTU ~1200–1500).
const RECV_BUF: usize = 2048;

pub(crate) enum Command {
    Publish { key: PublisherKey, offer: String, reply: oneshot::Sender<Result<String, MediaError>> },
    Unpublish { key: PublisherKey },
    Keyframe { key: PublisherKey, session: u64, mid: Mid },
    Shutdown,
}

struct Datagram {
    local: SocketAddr,
    source: SocketAddr,
    data: Vec<u8>,
    at: Instant,
}

struct TrackIn {
    tx: SyncSender<Au>,
    clock: CaptureClock,
    overflowed: bool,
    last_keyframe_request: Option<Instant>,
}

struct Session {
    id: u64,
    rtc: Rtc,
    next_timeout: Instant,
    last_rx: Instant,
    tracks: HashMap<Mid, TrackIn>,
}

/// Everything but the session map, so a session can be borrowed beside it.
struct Shared {
    config: MediaConfig,
    counters: Arc<Counters>,
    scheduler: Arc<Scheduler>,
    lifecycle: Arc<watch::Sender<u64>>,
    sockets: Vec<Arc<UdpSocket>>,
    local_addrs: Vec<SocketAddr>,
    cmd: mpsc::WeakUnboundedSender<Command>,
    next_id: u64,
}

/// Binds the sockets and spawns the driver; returns its command channel and addresses.
pub(crate) async fn start(
    config: MediaConfig,
    counters: Arc<Counters>,
    scheduler: Arc<Scheduler>,
    lifecycle: watch::Sender<u64>,
) -> Result<(mpsc::UnboundedSender<Command>, Vec<SocketAddr>), MediaError> {
    // str0m needs a process-wide crypto provider; installing it twice is harmless.
    str0m::crypto::from_feature_flags().install_process_default();

    let bind = config.udp_bind;
    let ips: Vec<IpAddr> = if bind.ip().is_unspecified() {
        if config.candidate_ips.is_empty() {
            discover_ips()
        } else {
            config.candidate_ips.clone()
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
        sockets.push(Arc::new(sock));
    }
    let local_addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr()).collect::<Result<_, _>>()?;

    let (dg_tx, dg_rx) = mpsc::channel::<Datagram>(1024);
    let mut readers = Vec::new();
    for (sock, local) in sockets.iter().zip(&local_addrs) {
        readers.push(tokio::spawn(read_loop(sock.clone(), *local, dg_tx.clone())));
    }
    drop(dg_tx);

    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        config,
        counters,
        scheduler,
        lifecycle: Arc::new(lifecycle),
        sockets,
        local_addrs: local_addrs.clone(),
        cmd: cmd_tx.downgrade(),
        next_id: 1,
    };
    let driver = Driver { shared, sessions: HashMap::new() };
    tokio::spawn(async move {
        driver.run(cmd_rx, dg_rx).await;
        for r in readers {
            r.abort();
        }
    });
    Ok((cmd_tx, local_addrs))
}

async fn read_loop(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Datagram>) {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, source)) => {
                let d = Datagram { local, source, data: buf[..n].to_vec(), at: Instant::now() };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            // E.g. ICMP port unreachable surfacing as ECONNREFUSED: not fatal for a server.
            Err(e) => tracing::debug!(%local, "udp recv: {e}"),
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

struct Driver {
    shared: Shared,
    sessions: HashMap<PublisherKey, Session>,
}

impl Driver {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Command>, mut dg_rx: mpsc::Receiver<Datagram>) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let deadline = self.sessions.values().map(|s| s.next_timeout).fold(next_sweep, Instant::min);
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.command(c),
                },
                d = dg_rx.recv() => match d {
                    None => break,
                    Some(d) => self.datagram(d),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.timeouts(now);
                    if now >= next_sweep {
                        self.sweep(now);
                        next_sweep = now + SWEEP_EVERY;
                    }
                }
            }
        }
        let keys: Vec<_> = self.sessions.keys().cloned().collect();
        for k in keys {
            self.close(&k, "media hub stopped");
        }
        tracing::debug!("media driver stopped");
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Publish { key, offer, reply } => {
                let r = self.publish(key, &offer);
                let _ = reply.send(r);
            }
            Command::Unpublish { key } => self.close(&key, "unpublished"),
            Command::Keyframe { key, session, mid } => {
                let Some(s) = self.sessions.get_mut(&key) else { return };
                if s.id != session {
                    return;
                }
                if self.shared.request_keyframe(s, mid) && !self.shared.drain(&key, s) {
                    self.close(&key, "session failed");
                }
            }
            Command::Shutdown => {}
        }
    }

    fn publish(&mut self, key: PublisherKey, offer: &str) -> Result<String, MediaError> {
        let cfg = &self.shared.config;
        if offer.len() > cfg.max_offer_bytes {
            return Err(MediaError::BadOffer(format!("{} bytes, limit {}", offer.len(), cfg.max_offer_bytes)));
        }
        if !self.sessions.contains_key(&key) && self.sessions.len() >= cfg.max_sessions {
            return Err(MediaError::TooManySessions(cfg.max_sessions));
        }
        let now = Instant::now();
        let local_addrs = self.shared.local_addrs.clone();
        // SDP comes from the network: a parser panic must become an error, not a crash.
        let made = catch_unwind(AssertUnwindSafe(|| -> Result<(Rtc, String), MediaError> {
            let offer = SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
            let mut rtc = Rtc::builder()
                .clear_codecs()
                .enable_h264(true)
                .set_extension(ABS_CAPTURE_TIME_ID, Extension::AbsoluteCaptureTime)
                .build(now);
            for addr in &local_addrs {
                let c = Candidate::host(*addr, "udp").map_err(|e| MediaError::Rtc(e.to_string()))?;
                rtc.add_local_candidate(c);
            }
            let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
            Ok((rtc, answer.to_sdp_string()))
        }));
        let (rtc, answer) = made.map_err(|_| MediaError::BadOffer("unparseable SDP".into()))??;
        if !has_h264_video(&answer) {
            return Err(MediaError::Rejected(
                "no video m-line with H.264 (constrained baseline, packetization-mode=1)".into(),
            ));
        }
        self.close(&key, "republished");
        let id = self.shared.next_id();
        let mut session = Session { id, rtc, next_timeout: now, last_rx: now, tracks: HashMap::new() };
        let alive = self.shared.drain(&key, &mut session);
        if !alive {
            return Err(MediaError::Rtc("session failed at start".into()));
        }
        tracing::info!(room = %callsight_signal::redact::room_tag(&key.room), participant = %key.participant, session = id, "publish accepted");
        self.sessions.insert(key, session);
        self.shared.counters.sessions.fetch_add(1, Relaxed);
        self.shared.bump();
        Ok(answer)
    }

    fn close(&mut self, key: &PublisherKey, why: &str) {
        let Some(mut s) = self.sessions.remove(key) else { return };
        s.rtc.disconnect();
        // Flush what disconnect queued (DTLS close); the session is gone either way.
        let _ = self.shared.drain(key, &mut s);
        // Dropping the senders ends the decoder threads, which free their scheduler slots.
        drop(s);
        self.shared.counters.sessions.fetch_sub(1, Relaxed);
        self.shared.bump();
        tracing::info!(room = %callsight_signal::redact::room_tag(&key.room), participant = %key.participant, "media session closed: {why}");
    }

    fn datagram(&mut self, d: Datagram) {
        let Ok(contents) = d.data.as_slice().try_into() else {
            Counters::inc(&self.shared.counters.garbage_packets);
            return;
        };
        let input =
            Input::Receive(d.at, Receive { proto: Protocol::Udp, source: d.source, destination: d.local, contents });
        let key = self.sessions.iter().find(|(_, s)| s.rtc.accepts(&input)).map(|(k, _)| k.clone());
        let Some(key) = key else {
            Counters::inc(&self.shared.counters.garbage_packets);
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else { return };
        s.last_rx = d.at;
        if let Err(e) = s.rtc.handle_input(input) {
            // A bad packet for a live session: log it, keep the session.
            tracing::debug!(participant = %key.participant, "input rejected: {e}");
            Counters::inc(&self.shared.counters.garbage_packets);
        }
        if !self.shared.drain(&key, s) {
            self.close(&key, "session ended");
        }
    }

    fn timeouts(&mut self, now: Instant) {
        let due: Vec<PublisherKey> =
            self.sessions.iter().filter(|(_, s)| s.next_timeout <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            let Some(s) = self.sessions.get_mut(&key) else { continue };
            let ok = s.rtc.handle_input(Input::Timeout(now)).is_ok() && self.shared.drain(&key, s);
            if !ok {
                self.close(&key, "session ended");
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.shared.config.idle_timeout;
        let dead: Vec<PublisherKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.rtc.is_alive() || now.saturating_duration_since(s.last_rx) > idle)
            .map(|(k, _)| k.clone())
            .collect();
        for key in dead {
            self.close(&key, "idle or disconnected");
        }
    }
}

impl Shared {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn bump(&self) {
        self.lifecycle.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Polls a session until it waits for time or input. False: the session is over.
    fn drain(&mut self, key: &PublisherKey, s: &mut Session) -> bool {
        loop {
            match s.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    s.next_timeout = t;
                    return true;
                }
                Ok(Output::Transmit(t)) => self.transmit(t.source, t.destination, &t.contents),
                Ok(Output::Event(e)) => match e {
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return false,
                    Event::MediaData(d) => self.media(key, s, d),
                    Event::Connected => {
                        tracing::debug!(participant = %key.participant, "media session connected")
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(participant = %key.participant, "rtc failed: {e}");
                    return false;
                }
            }
        }
    }

    fn transmit(&self, source: SocketAddr, dest: SocketAddr, data: &[u8]) {
        let sock = self
            .sockets
            .iter()
            .zip(&self.local_addrs)
            .find(|(_, a)| **a == source)
            .map(|(s, _)| s)
            .or(self.sockets.first());
        if let Some(sock) = sock {
            // UDP: a full send buffer is loss, which WebRTC recovers from.
            if let Err(e) = sock.try_send_to(data, dest) {
                tracing::trace!(%dest, "udp send: {e}");
            }
        }
    }

    fn media(&mut self, key: &PublisherKey, s: &mut Session, d: MediaData) {
        Counters::inc(&self.counters.received);
        if d.params.spec().codec != Codec::H264 {
            Counters::inc(&self.counters.dropped);
            return;
        }
        if !s.tracks.contains_key(&d.mid) {
            match self.new_track(key, s.id, d.mid) {
                Some(t) => {
                    s.tracks.insert(d.mid, t);
                }
                None => {
                    Counters::inc(&self.counters.dropped);
                    return;
                }
            }
        }
        let Some(track) = s.tracks.get_mut(&d.mid) else { return };
        let stamp = d.ext_vals.abs_capture_time.map(|a| a.capture_time);
        let au = Au {
            data: d.data.clone(),
            rtp_timestamp: d.time.numer() as u32,
            capture_time: track.clock.frame(d.time.numer(), stamp),
            arrival: d.network_time,
            discontinuity: !d.contiguous || track.overflowed,
        };
        match track.tx.try_send(au) {
            Ok(()) => track.overflowed = false,
            Err(TrySendError::Full(_)) => {
                // The decoder fell behind: drop, and restart from a keyframe.
                Counters::inc(&self.counters.dropped);
                track.overflowed = true;
            }
            Err(TrySendError::Disconnected(_)) => Counters::inc(&self.counters.dropped),
        }
    }

    fn new_track(&mut self, key: &PublisherKey, session: u64, mid: Mid) -> Option<TrackIn> {
        let id = self.next_id();
        let (tx, rx) = sync_channel(self.config.decode_queue.max(1));
        self.scheduler.add_track(
            id,
            TrackMeta { room: key.room.clone(), participant: key.participant.clone(), track: mid.to_string() },
        );
        self.counters.decoders.fetch_add(1, Relaxed);
        let cmd = self.cmd.clone();
        let kf_key = key.clone();
        let lifecycle = self.lifecycle.clone();
        let ctx = DecoderCtx {
            track_id: id,
            scheduler: self.scheduler.clone(),
            counters: self.counters.clone(),
            max_pixels: self.config.max_pixels,
            max_dimension: self.config.max_dimension,
            request_keyframe: Box::new(move || {
                if let Some(cmd) = cmd.upgrade() {
                    let _ = cmd.send(Command::Keyframe { key: kf_key.clone(), session, mid });
                }
            }),
            on_exit: Box::new(move || lifecycle.send_modify(|v| *v = v.wrapping_add(1))),
        };
        if let Err(e) = decode::spawn(ctx, rx) {
            tracing::error!("cannot start decoder thread: {e}");
            self.scheduler.remove_track(id);
            self.counters.decoders.fetch_sub(1, Relaxed);
            return None;
        }
        self.bump();
        tracing::debug!(participant = %key.participant, %mid, track = id, "new video track");
        Some(TrackIn { tx, clock: CaptureClock::default(), overflowed: false, last_keyframe_request: None })
    }

    /// Rate-limited PLI (or FIR). True when a request was queued.
    fn request_keyframe(&mut self, s: &mut Session, mid: Mid) -> bool {
        let Some(track) = s.tracks.get_mut(&mid) else { return false };
        let now = Instant::now();
        if track.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t) < self.config.keyframe_interval)
        {
            return false;
        }
        let Some(mut w) = s.rtc.writer(mid) else { return false };
        let kind = if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        match w.request_keyframe(None, kind) {
            Ok(()) => {
                track.last_keyframe_request = Some(now);
                Counters::inc(&self.counters.keyframe_requests);
                true
            }
            Err(e) => {
                tracing::debug!(%mid, "keyframe request not possible: {e}");
                false
            }
        }
    }
}

/// The answer keeps (port ≠ 0) a video m-line with H.264.
fn has_h264_video(answer: &str) -> bool {
    answer.split("\nm=").skip(1).any(|section| {
        let mut fields = section.split_whitespace();
        fields.next() == Some("video")
            && fields.next().is_some_and(|port| port != "0")
            && section.contains("H264/90000")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_check() {
        let ok = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";
        assert!(has_h264_video(ok));
        let rejected = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";
        assert!(!has_h264_video(rejected));
        let vp8 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(!has_h264_video(vp8));
        assert!(!has_h264_video("garbage"));
    }
}

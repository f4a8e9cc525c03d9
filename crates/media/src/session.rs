//! [`Session`]: one participant's WebRTC session, owning its str0m `Rtc` and its
//! behaviour, sans-IO like str0m itself: datagrams and timeouts go in through
//! [`Session::handle_input`], and [`Session::poll_output`] gives back what to send,
//! when to wake up, and the published video frames. No sockets, no clocks, no threads:
//! the unit tests below drive it with str0m's own client `Rtc` in memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::Transmit;
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

use crate::capture::CaptureClock;
use crate::contain::contain;
use crate::error::MediaError;
use crate::offer::limit_video_lines;
use crate::types::{AccessUnit, MediaConfig, ParticipantKey, ABS_CAPTURE_TIME_ID};

/// Remote addresses one session accepts datagrams from at most (ICE candidates of one peer).
const MAX_REMOTES: usize = 8;

/// What a session wants done next.
pub(crate) enum SessionOutput {
    /// Send this datagram.
    Transmit(Transmit),
    /// Nothing more until [`Session::next_timeout`] (or new input).
    Timeout,
    /// A whole H.264 access unit of a published video track.
    Video { mid: Mid, au: AccessUnit },
    /// Media that is not published H.264 video (counted and dropped).
    Ignored,
    /// The session is over (ICE disconnected, DTLS closed, str0m failed).
    Closed(String),
}

struct VideoIn {
    clock: CaptureClock,
    last_keyframe_request: Option<Instant>,
}

/// The answer to a publish offer and the session it created.
pub(crate) struct Accepted {
    pub session: Session,
    pub answer: String,
    /// Video m-lines refused beyond the per-publish cap.
    pub rejected_tracks: usize,
}

pub(crate) struct Session {
    key: ParticipantKey,
    id: u64,
    rtc: Rtc,
    next_timeout: Instant,
    last_rx: Instant,
    remotes: Vec<SocketAddr>,
    video: HashMap<Mid, VideoIn>,
    keyframe_interval: Duration,
}

impl Session {
    /// Answers a publish offer (send-only H.264 video, anything else is ignored).
    pub(crate) fn accept(
        key: ParticipantKey,
        id: u64,
        offer: &str,
        config: &MediaConfig,
        local_addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<Accepted, MediaError> {
        if offer.len() > config.max_offer_bytes {
            return Err(MediaError::BadOffer(format!("{} bytes, limit {}", offer.len(), config.max_offer_bytes)));
        }
        let (offer, rejected_tracks) = limit_video_lines(offer, config.max_tracks_per_publish);
        // SDP comes from the network: a parser panic must become an error, not a crash.
        let made = contain(|| -> Result<(Rtc, String), MediaError> {
            let offer = SdpOffer::from_sdp_string(&offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
            let mut rtc = Rtc::builder()
                .clear_codecs()
                .enable_h264(true)
                .set_extension(ABS_CAPTURE_TIME_ID, Extension::AbsoluteCaptureTime)
                .build(now);
            for addr in local_addrs {
                let c = Candidate::host(*addr, "udp").map_err(|e| MediaError::Rtc(e.to_string()))?;
                rtc.add_local_candidate(c);
            }
            let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
            Ok((rtc, answer.to_sdp_string()))
        });
        let (rtc, answer) = made.map_err(|_| MediaError::BadOffer("unparseable SDP".into()))??;
        if !has_h264_video(&answer) {
            return Err(MediaError::Rejected(
                "no video m-line with H.264 (constrained baseline, packetization-mode=1)".into(),
            ));
        }
        let session = Session {
            key,
            id,
            rtc,
            next_timeout: now,
            last_rx: now,
            remotes: Vec::new(),
            video: HashMap::new(),
            keyframe_interval: config.keyframe_interval,
        };
        Ok(Accepted { session, answer, rejected_tracks })
    }

    pub(crate) fn key(&self) -> &ParticipantKey {
        &self.key
    }

    /// Unique per session (a republish gets a new one).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn next_timeout(&self) -> Instant {
        self.next_timeout
    }

    /// Remote addresses this session has accepted datagrams from.
    pub(crate) fn remotes(&self) -> &[SocketAddr] {
        &self.remotes
    }

    /// True when `input` belongs to this session (ICE credentials, or a known remote).
    pub(crate) fn accepts(&self, input: &Input) -> bool {
        self.rtc.accepts(input)
    }

    /// Alive, and heard from within `idle`.
    pub(crate) fn is_live(&self, now: Instant, idle: Duration) -> bool {
        self.rtc.is_alive() && now.saturating_duration_since(self.last_rx) <= idle
    }

    /// A datagram or a timeout. An error rejects that input only; the session goes on.
    pub(crate) fn handle_input(&mut self, input: Input) -> Result<(), RtcError> {
        if let Input::Receive(at, r) = &input {
            self.last_rx = *at;
            if !self.remotes.contains(&r.source) && self.remotes.len() < MAX_REMOTES {
                self.remotes.push(r.source);
            }
        }
        self.rtc.handle_input(input)
    }

    /// The next thing to do; call until it returns `Timeout` or `Closed`.
    pub(crate) fn poll_output(&mut self) -> SessionOutput {
        match self.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                self.next_timeout = t;
                SessionOutput::Timeout
            }
            Ok(Output::Transmit(t)) => SessionOutput::Transmit(t),
            Ok(Output::Event(e)) => match e {
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    SessionOutput::Closed("ICE disconnected".into())
                }
                Event::MediaData(d) => self.media(d),
                Event::Connected => {
                    tracing::debug!(participant = %self.key.participant, session = self.id, "media session connected");
                    self.poll_output()
                }
                _ => self.poll_output(),
            },
            Err(e) => SessionOutput::Closed(format!("rtc failed: {e}")),
        }
    }

    fn media(&mut self, d: MediaData) -> SessionOutput {
        let is_video = self.rtc.media(d.mid).is_some_and(|m| m.kind() == MediaKind::Video);
        if !is_video || d.params.spec().codec != Codec::H264 {
            return SessionOutput::Ignored;
        }
        let track = self
            .video
            .entry(d.mid)
            .or_insert_with(|| VideoIn { clock: CaptureClock::default(), last_keyframe_request: None });
        let stamp = d.ext_vals.abs_capture_time.map(|a| a.capture_time);
        let au = AccessUnit {
            data: d.data,
            rtp_timestamp: d.time.numer() as u32,
            capture_time: track.clock.frame(d.time.numer(), stamp),
            arrival: d.network_time,
            discontinuity: !d.contiguous,
        };
        SessionOutput::Video { mid: d.mid, au }
    }

    /// Asks the publisher of `mid` for a keyframe (PLI, else FIR), at most once per
    /// `keyframe_interval`. True when a request was queued (poll the output to send it).
    pub(crate) fn request_keyframe(&mut self, mid: Mid, now: Instant) -> bool {
        let Some(track) = self.video.get_mut(&mid) else { return false };
        if track.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t) < self.keyframe_interval) {
            return false;
        }
        let Some(mut w) = self.rtc.writer(mid) else { return false };
        let kind = if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        match w.request_keyframe(None, kind) {
            Ok(()) => {
                track.last_keyframe_request = Some(now);
                true
            }
            Err(e) => {
                tracing::debug!(%mid, "keyframe request not possible: {e}");
                false
            }
        }
    }

    /// Starts closing (DTLS close alert); poll the output once more to send it.
    pub(crate) fn disconnect(&mut self) {
        self.rtc.disconnect();
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
    use std::sync::Arc;

    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaTime};
    use str0m::net::{Protocol, Receive};

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

    const CLIENT: &str = "10.0.0.1:5000";
    const SERVER: &str = "10.0.0.2:6000";

    /// str0m's own client and our server session, wired by an in-memory "network" on a
    /// simulated clock.
    struct Pair {
        client: Rtc,
        server: Session,
        now: Instant,
        client_timeout: Instant,
        video: Vec<(Mid, AccessUnit)>,
        keyframe_requests: usize,
        client_connected: bool,
        closed: Option<String>,
    }

    impl Pair {
        fn new(video_lines: usize, config: &MediaConfig) -> (Pair, Vec<Mid>, usize) {
            str0m::crypto::from_feature_flags().install_process_default();
            let now = Instant::now();
            let mut client = Rtc::builder().clear_codecs().enable_h264(true).build(now);
            client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
            let mut change = client.sdp_api();
            let mids: Vec<Mid> = (0..video_lines)
                .map(|_| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None))
                .collect();
            let (offer, pending) = change.apply().expect("an offer");
            let key = ParticipantKey { room: "r".into(), participant: "p".into() };
            let acc = Session::accept(key, 1, &offer.to_sdp_string(), config, &[SERVER.parse().unwrap()], now)
                .expect("offer accepted");
            let answer = SdpAnswer::from_sdp_string(&acc.answer).expect("answer parses");
            client.sdp_api().accept_answer(pending, answer).expect("answer accepted");
            let pair = Pair {
                client,
                server: acc.session,
                now,
                client_timeout: now,
                video: Vec::new(),
                keyframe_requests: 0,
                client_connected: false,
                closed: None,
            };
            (pair, mids, acc.rejected_tracks)
        }

        /// Polls both sides and carries datagrams across until both wait for time.
        fn exchange(&mut self) {
            for _ in 0..1000 {
                let mut to_server = Vec::new();
                let mut to_client = Vec::new();
                loop {
                    match self.client.poll_output().expect("client rtc") {
                        Output::Timeout(t) => {
                            self.client_timeout = t;
                            break;
                        }
                        Output::Transmit(t) => to_server.push(t.contents.to_vec()),
                        Output::Event(Event::Connected) => self.client_connected = true,
                        Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                        Output::Event(_) => {}
                    }
                }
                loop {
                    match self.server.poll_output() {
                        SessionOutput::Timeout => break,
                        SessionOutput::Transmit(t) => {
                            assert_eq!(t.source, SERVER.parse().unwrap());
                            to_client.push(t.contents.to_vec())
                        }
                        SessionOutput::Video { mid, au } => self.video.push((mid, au)),
                        SessionOutput::Ignored => {}
                        SessionOutput::Closed(why) => {
                            self.closed = Some(why);
                            return;
                        }
                    }
                }
                if to_server.is_empty() && to_client.is_empty() {
                    return;
                }
                for d in to_server {
                    let input = receive(self.now, CLIENT, SERVER, &d);
                    assert!(self.server.accepts(&input), "server session accepts its client's datagram");
                    self.server.handle_input(input).expect("server input");
                }
                for d in to_client {
                    self.client.handle_input(receive(self.now, SERVER, CLIENT, &d)).expect("client input");
                }
            }
            panic!("no quiet point after 1000 rounds");
        }

        /// Advances the simulated clock to the next timeout of either side.
        fn tick(&mut self) {
            let next = self.client_timeout.min(self.server.next_timeout()).max(self.now);
            self.now = next.min(self.now + Duration::from_millis(50)).max(self.now + Duration::from_millis(1));
            self.client.handle_input(Input::Timeout(self.now)).expect("client timeout");
            self.server.handle_input(Input::Timeout(self.now)).expect("server timeout");
            self.exchange();
        }

        fn connect(&mut self) {
            self.exchange();
            for _ in 0..500 {
                if self.client_connected {
                    return;
                }
                self.tick();
            }
            panic!("not connected after 500 ticks");
        }
    }

    fn receive<'a>(at: Instant, from: &str, to: &str, data: &'a [u8]) -> Input<'a> {
        Input::Receive(
            at,
            Receive {
                proto: Protocol::Udp,
                source: from.parse().unwrap(),
                destination: to.parse().unwrap(),
                contents: data.try_into().expect("a datagram str0m understands"),
            },
        )
    }

    /// A tiny Annex-B "keyframe": SPS, PPS and an IDR slice header (str0m does not decode it).
    fn keyframe(n: u8) -> Vec<u8> {
        vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, n, 1, 2, 3]
    }

    #[test]
    fn session_receives_frames_with_the_sent_rtp_timestamps_and_asks_for_keyframes() {
        let (mut p, mids, rejected) = Pair::new(1, &MediaConfig::default());
        assert_eq!(rejected, 0);
        p.connect();
        assert!(!p.server.remotes().is_empty());
        let mid = mids[0];
        let pt = p.client.writer(mid).unwrap().payload_params().next().unwrap().pt();
        let sent: Vec<u32> = vec![4_294_960_000, 4_294_963_000, 1_704, 4_704];
        for (i, ts) in sent.iter().enumerate() {
            let w = p.client.writer(mid).expect("writer");
            w.write(pt, p.now, MediaTime::from_90khz(*ts as u64), Arc::<[u8]>::from(keyframe(i as u8))).expect("write");
            p.tick();
        }
        for _ in 0..10 {
            p.tick();
        }
        let got: Vec<u32> = p.video.iter().map(|(_, au)| au.rtp_timestamp).collect();
        assert_eq!(got, sent, "every frame, with the publisher's RTP timestamps (across the wrap)");
        assert!(p.video.iter().all(|(m, _)| *m == mid));
        assert_eq!(&*p.video[1].1.data, &keyframe(1)[..], "the access unit arrives as sent");

        let now = p.now;
        assert!(p.server.request_keyframe(mid, now));
        assert!(!p.server.request_keyframe(mid, now), "rate-limited within keyframe_interval");
        for _ in 0..5 {
            p.tick();
        }
        assert_eq!(p.keyframe_requests, 1, "the PLI reached the publisher");

        p.server.disconnect();
        p.exchange();
        assert!(p.closed.is_some() || !p.server.is_live(p.now, Duration::from_secs(30)));
    }

    #[test]
    fn video_lines_beyond_the_cap_are_rejected_in_the_answer() {
        let config = MediaConfig { max_tracks_per_publish: 1, ..MediaConfig::default() };
        let (mut p, mids, rejected) = Pair::new(3, &config);
        assert_eq!(rejected, 2);
        p.connect();
        assert_eq!(mids.len(), 3);
        // The client may still write on the rejected mids: nothing of it arrives.
        for (i, mid) in mids.iter().enumerate() {
            if let Some(w) = p.client.writer(*mid) {
                let pt = w.payload_params().next().map(|p| p.pt());
                if let Some(pt) = pt {
                    let _ = w.write(pt, p.now, MediaTime::from_90khz(1000 + i as u64), Arc::<[u8]>::from(keyframe(0)));
                }
            }
        }
        for _ in 0..10 {
            p.tick();
        }
        let got: Vec<Mid> = p.video.iter().map(|(m, _)| *m).collect();
        assert_eq!(got, vec![mids[0]], "only the first video track is published");
    }
}

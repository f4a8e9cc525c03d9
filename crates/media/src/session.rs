//! [`Session`]: one participant's WebRTC session, owning its str0m `Rtc` and its
//! behaviour, sans-IO like str0m itself: datagrams and timeouts go in through
//! [`Session::handle_input`], and [`Session::poll_output`] gives back what to send,
//! when to wake up, the media the participant publishes, the tracks it starts to
//! publish, keyframe requests for tracks it receives, and renegotiation offers.
//! No sockets, no clocks, no threads: the unit tests below drive it with str0m's own
//! client `Rtc` in memory.
//!
//! Forwarding (SFU): the participant publishes on the m-lines of its own offer; every
//! track of another participant it subscribes to gets a send-only m-line that the
//! session adds by a server offer (`SessionOutput::Offer`, answered through
//! [`Session::accept_answer`]), once connected and one offer at a time. An offer left
//! unanswered for `offer_timeout` (the participant lost it, or its answer was lost) is
//! offered again, unchanged: the same SDP answers it whether or not the participant had
//! applied it; an answer that does not answer the outstanding offer (a late second answer
//! to a repeated one) is ignored. Media is written
//! frame by frame with the publisher's RTP timestamp unchanged; str0m does the
//! per-leg RTP (own SSRCs and sequence numbers, NACK/RTX, receiver and sender reports,
//! TWCC feedback for the publisher's bandwidth estimation).
//!
//! Bandwidth: a subscribing session estimates its participant's downlink (str0m's
//! send-side BWE on the TWCC feedback of the forwarded streams, when
//! `downlink_bwe_start_kbps` > 0) and takes REMB its participant sends for a forwarded
//! track; [`Session::downlink_limits`] shares them out per forwarded video track, and the
//! driver tells each publisher the smallest of its subscribers' shares by REMB
//! ([`Session::limit_publisher`]), so the publisher's encoder adapts to them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::net::Transmit;
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

use crate::capture::CaptureClock;
use crate::contain::contain;
use crate::error::MediaError;
use crate::offer::{answers, limit_video_lines, mlines, sending_lines, MLine};
use crate::simulcast::{pick, Admit, Choice, LayerFrame, LayerInfo, Layers};
use crate::sps::{check_access_unit, SpsLimits};
use crate::types::{AccessUnit, MediaConfig, ParticipantKey, SubscribedTrack, ABS_CAPTURE_TIME_ID};

/// Remote addresses one session accepts datagrams from at most (ICE candidates of one peer).
const MAX_REMOTES: usize = 8;

/// What a forwarded Opus track takes of a downlink estimate before the video tracks share
/// the rest (Opus at its usual rates plus headers).
const AUDIO_SHARE: Bitrate = Bitrate::kbps(48);

/// A forwarded video track whose publisher sent nothing for this long takes no share of
/// its subscriber's downlink.
const LIVE_FOR: Duration = Duration::from_secs(2);

/// The downlink estimator probes up to this much more than the wanted layers' bitrates.
const PROBE_HEADROOM: f64 = 1.5;

/// A published track, named across sessions: the publishing session and its mid there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TrackRef {
    pub session: u64,
    pub mid: Mid,
}

/// One frame of a published track (video access unit or audio packet).
pub(crate) struct InMedia {
    pub kind: MediaKind,
    pub params: PayloadParams,
    /// The publisher's RTP time (extended), passed on unchanged when forwarding.
    pub time: MediaTime,
    /// Audio level (−dBov) and voice activity the publisher sent, if any.
    pub audio_level: Option<(i8, bool)>,
    pub au: AccessUnit,
    /// A simulcast layer's frame (`time` is then on the track's reference timeline).
    pub layer: Option<LayerFrame>,
}

/// What a session wants done next.
pub(crate) enum SessionOutput {
    /// Send this datagram.
    Transmit(Transmit),
    /// Nothing more until [`Session::next_timeout`] (or new input).
    Timeout,
    /// The participant started publishing a track (a receiving m-line of its offer).
    Published { mid: Mid, kind: MediaKind },
    /// One frame of a published track.
    Media { mid: Mid, media: InMedia },
    /// The participant asks for a keyframe of a track it receives (of this simulcast
    /// layer; `None`: the track's only one, or the one the detector decodes).
    KeyframeWanted(TrackRef, Option<Rid>),
    /// The participant stopped publishing a track (its m-line stopped or turned away
    /// from sending in a renegotiation).
    Unpublished { mid: Mid },
    /// A renegotiation offer for the participant (send it over signalling; the answer
    /// comes back through [`Session::accept_answer`]) and what it will receive after it.
    /// `repeated`: the outstanding offer again, unanswered for `offer_timeout`.
    Offer { sdp: String, tracks: Vec<SubscribedTrack>, repeated: bool },
    /// The session is over (ICE disconnected, DTLS closed, str0m failed).
    Closed(String),
}

/// One forwarded track on its way to this session's participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutState {
    /// Wanted; goes into the next offer.
    ToOpen,
    /// In an offer that awaits its answer.
    Negotiating(Mid),
    /// Negotiated: media flows.
    Open(Mid),
    /// Its publisher left; stopped in the next offer.
    ToStop(Mid),
    /// Stopped in an offer that awaits its answer.
    Stopping(Mid),
}

struct TrackOut {
    source: TrackRef,
    kind: MediaKind,
    /// The publisher's participant id (the stream id the subscriber sees in `msid`).
    stream_id: String,
    state: OutState,
    /// The tile it is shown in (device pixels; `track-settings`); `None` = not told.
    tile: Option<(u32, u32)>,
    /// The simulcast layer forwarded.
    choice: Choice,
    /// Not forwarded while its tile is hidden (non-simulcast video); a keyframe is asked
    /// for when it shows again.
    paused: bool,
    /// When its publisher last sent a frame (a track that sends nothing takes no share
    /// of the downlink).
    last_frame: Option<Instant>,
    /// Its simulcast layers, as of its latest frame.
    layers: Option<Arc<[LayerInfo]>>,
}

/// A WHEP viewer: receives one participant's tracks on the receiving m-lines of its own
/// offer (no renegotiation), and that participant's detections on its `detections` channel.
struct Viewer {
    /// The participant shown; `None` = the room's earliest publisher present, the next
    /// one when it leaves.
    follows: Option<String>,
    /// The m-lines the server sends on (the viewer's receiving lines), by kind.
    slots: Vec<(Mid, MediaKind)>,
    /// The data channel the viewer opened with the label [`DETECTIONS_CHANNEL`].
    channel: Option<ChannelId>,
}

/// The label of a WHEP viewer's data channel that carries detections.
pub(crate) const DETECTIONS_CHANNEL: &str = "detections";

/// Our renegotiation offer that awaits the participant's answer.
struct Outstanding {
    pending: SdpPendingOffer,
    sdp: String,
    tracks: Vec<SubscribedTrack>,
    /// Its m-lines: an answer to it has the same.
    lines: Vec<MLine>,
    /// When it is offered again if still unanswered.
    deadline: Instant,
}

struct VideoIn {
    clock: CaptureClock,
    /// When a keyframe was last asked for, per simulcast layer (`None`: no rid).
    last_keyframe_request: Vec<(Option<Rid>, Instant)>,
    layers: Layers,
    /// The layer the detector decoded last.
    detected: Option<Rid>,
}

impl VideoIn {
    fn new(detect_width: u32) -> Self {
        VideoIn {
            clock: CaptureClock::default(),
            last_keyframe_request: Vec::new(),
            layers: Layers::new(detect_width),
            detected: None,
        }
    }
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
    /// Receives other participants' tracks (else publish-only, as before forwarding).
    subscriber: bool,
    /// False for a receive-only participant: its offers must not send media.
    may_publish: bool,
    connected: bool,
    tracks_out: Vec<TrackOut>,
    pending: Option<Outstanding>,
    /// The latest time an input carried (str0m's notion of now).
    now: Instant,
    offer_timeout: Duration,
    /// Mids the participant publishes on.
    published: Vec<Mid>,
    /// Of those, the ones its offer sends in simulcast layers.
    simulcast: Vec<Mid>,
    /// Forwarded video tracks that just opened here: their publishers are asked for a keyframe.
    keyframes_wanted: Vec<(TrackRef, Option<Rid>)>,
    max_offer_bytes: usize,
    /// For the sizes of simulcast layers (SPS of their keyframes).
    sps_limits: SpsLimits,
    /// The detector's input width: it decodes the smallest simulcast layer this wide.
    detect_width: u32,
    max_tracks_per_publish: usize,
    /// Set for a WHEP viewer session (see [`Session::accept_viewer`]).
    viewer: Option<Viewer>,
    /// The participant's downlink as str0m's BWE estimates it (TWCC feedback).
    downlink: Option<Bitrate>,
    /// REMB the participant sent for forwarded tracks, by the mid here.
    remb_in: HashMap<Mid, Bitrate>,
}

impl Session {
    /// Answers a publish offer (H.264 video and Opus audio; video m-lines beyond the cap
    /// are rejected). A `subscriber` session also receives the room's other tracks.
    pub(crate) fn accept(
        key: ParticipantKey,
        id: u64,
        subscriber: bool,
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
            let mut builder = Rtc::builder()
                .set_crypto_provider(crate::dtls::provider(config.dtls))
                .clear_codecs()
                .enable_h264(true)
                .enable_opus(true, false)
                .set_extension(ABS_CAPTURE_TIME_ID, Extension::AbsoluteCaptureTime);
            if subscriber && config.downlink_bwe_start_kbps > 0 {
                // Estimates the participant's downlink from the TWCC feedback of what it receives.
                builder = builder.enable_bwe(Some(Bitrate::kbps(config.downlink_bwe_start_kbps)));
            }
            let mut rtc = builder.build(now);
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
            subscriber,
            may_publish: true,
            connected: false,
            tracks_out: Vec::new(),
            pending: None,
            now,
            offer_timeout: config.offer_timeout,
            published: Vec::new(),
            simulcast: Vec::new(),
            keyframes_wanted: Vec::new(),
            max_offer_bytes: config.max_offer_bytes,
            sps_limits: config.sps_limits.clone(),
            detect_width: config.simulcast_detect_width,
            max_tracks_per_publish: config.max_tracks_per_publish,
            viewer: None,
            downlink: None,
            remb_in: HashMap::new(),
        };
        Ok(Accepted { session, answer, rejected_tracks })
    }

    /// Answers the offer of a participant that may not publish: refused when one of its
    /// m-lines would send media; it receives the room's other tracks.
    pub(crate) fn accept_receive_only(
        key: ParticipantKey,
        id: u64,
        offer: &str,
        config: &MediaConfig,
        local_addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<Accepted, MediaError> {
        refuse_sending(offer)?;
        let mut acc = Session::accept(key, id, true, offer, config, local_addrs, now)?;
        acc.session.may_publish = false;
        Ok(acc)
    }

    /// Answers a WHEP viewer's offer (its receiving m-lines get the tracks of `follows`,
    /// or of the room's earliest publisher). A viewer publishes nothing and is never
    /// offered anything: what it receives is fixed by its own offer.
    pub(crate) fn accept_viewer(
        key: ParticipantKey,
        id: u64,
        follows: Option<String>,
        offer: &str,
        config: &MediaConfig,
        local_addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<Accepted, MediaError> {
        let mut acc = Session::accept(key, id, true, offer, config, local_addrs, now)?;
        acc.session.viewer = Some(Viewer { follows, slots: Vec::new(), channel: None });
        Ok(acc)
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
        if let Input::Timeout(at) = &input {
            self.now = self.now.max(*at);
        }
        if let Input::Receive(at, r) = &input {
            self.now = self.now.max(*at);
            self.last_rx = *at;
            if !self.remotes.contains(&r.source) && self.remotes.len() < MAX_REMOTES {
                self.remotes.push(r.source);
            }
        }
        self.rtc.handle_input(input)
    }

    /// The next thing to do; call until it returns `Timeout` or `Closed`.
    pub(crate) fn poll_output(&mut self) -> SessionOutput {
        if let Some((src, rid)) = self.keyframes_wanted.pop() {
            return SessionOutput::KeyframeWanted(src, rid);
        }
        loop {
            let out = match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    if let Some(again) = self.overdue_offer() {
                        return again;
                    }
                    // Quiet: the moment to renegotiate, if anything changed.
                    if let Some((sdp, tracks)) = self.negotiate() {
                        return SessionOutput::Offer { sdp, tracks, repeated: false };
                    }
                    self.next_timeout = self.pending.as_ref().map_or(t, |p| t.min(p.deadline));
                    return SessionOutput::Timeout;
                }
                Ok(Output::Transmit(t)) => return SessionOutput::Transmit(t),
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => return SessionOutput::Closed(format!("rtc failed: {e}")),
            };
            if let Some(out) = out {
                return out;
            }
        }
    }

    fn event(&mut self, e: Event) -> Option<SessionOutput> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                Some(SessionOutput::Closed("ICE disconnected".into()))
            }
            Event::Connected => {
                tracing::debug!(participant = %self.key.participant, session = self.id, "media session connected");
                self.connected = true;
                if self.viewer.is_some() {
                    // What it was given before it could receive: start it at a keyframe.
                    self.keyframes_wanted.extend(self.open_video().into_iter().map(|t| (t, None)));
                }
                None
            }
            Event::MediaAdded(m) if self.viewer.is_some() => {
                if let Some(v) = &mut self.viewer {
                    if m.direction.is_sending() {
                        v.slots.push((m.mid, m.kind));
                    }
                }
                self.assign();
                None
            }
            Event::ChannelOpen(id, label) if label == DETECTIONS_CHANNEL => {
                if let Some(v) = &mut self.viewer {
                    v.channel = Some(id);
                }
                None
            }
            Event::ChannelClose(id) => {
                if let Some(v) = self.viewer.as_mut().filter(|v| v.channel == Some(id)) {
                    v.channel = None;
                }
                None
            }
            // A viewer publishes nothing, whatever its offer said.
            Event::MediaData(_) if self.viewer.is_some() => None,
            // A receiving m-line of the participant's own offer: it publishes there.
            Event::MediaAdded(m) if m.direction.is_receiving() && self.may_publish && !self.is_forwarded(m.mid) => {
                self.published.push(m.mid);
                if m.simulcast.is_some() {
                    // Known from the offer, before any frame: no REMB may ever cap it.
                    self.simulcast.push(m.mid);
                }
                Some(SessionOutput::Published { mid: m.mid, kind: m.kind })
            }
            Event::MediaChanged(m) if !m.direction.is_receiving() && self.published.contains(&m.mid) => {
                self.published.retain(|p| *p != m.mid);
                self.simulcast.retain(|p| *p != m.mid);
                Some(SessionOutput::Unpublished { mid: m.mid })
            }
            Event::MediaData(d) => self.media(d),
            Event::KeyframeRequest(r) => self
                .tracks_out
                .iter()
                .find(|t| t.state == OutState::Open(r.mid))
                .map(|t| SessionOutput::KeyframeWanted(t.source, t.choice.current())),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.downlink = Some(estimate);
                None
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, mid }) => {
                // Only for what is forwarded here: the map stays as small as the m-lines.
                if self.is_forwarded(mid) {
                    self.remb_in.insert(mid, estimate);
                }
                None
            }
            _ => None,
        }
    }

    fn is_forwarded(&self, mid: Mid) -> bool {
        self.tracks_out.iter().any(|t| match t.state {
            OutState::Negotiating(m) | OutState::Open(m) | OutState::ToStop(m) | OutState::Stopping(m) => m == mid,
            OutState::ToOpen => false,
        })
    }

    fn media(&mut self, d: MediaData) -> Option<SessionOutput> {
        let kind = self.rtc.media(d.mid).map(|m| m.kind())?;
        let keyframe = d.rid.is_some() && d.is_keyframe();
        let mut au = AccessUnit {
            data: d.data,
            rtp_timestamp: d.time.numer() as u32,
            rtp_time: d.time.numer(),
            capture_time: None,
            arrival: d.network_time,
            discontinuity: !d.contiguous,
        };
        let mut time = d.time;
        let mut layer = None;
        if kind == MediaKind::Video && d.params.spec().codec == Codec::H264 {
            let track = self.video.entry(d.mid).or_insert_with(|| VideoIn::new(self.detect_width));
            if let Some(rid) = d.rid {
                let size = keyframe
                    .then(|| check_access_unit(&au.data, &self.sps_limits).ok().flatten())
                    .flatten()
                    .map(|i| (i.width, i.height));
                let sender = d.last_sender_info.map(|i| (i.ntp_time, i.rtp_time.numer() as u32));
                let (mapped, frame) =
                    track.layers.frame(rid, d.time.numer(), sender, size, keyframe, au.data.len(), self.now)?;
                time = MediaTime::new(mapped, d.time.frequency());
                au.rtp_time = mapped;
                au.rtp_timestamp = mapped as u32;
                if frame.detect && track.detected != Some(rid) {
                    // The detector moves to this layer: its decoder starts over at a keyframe.
                    track.detected = Some(rid);
                    au.discontinuity = true;
                    if !keyframe {
                        self.keyframes_wanted.push((TrackRef { session: self.id, mid: d.mid }, Some(rid)));
                    }
                }
                layer = Some(frame);
            }
            let stamp = d.ext_vals.abs_capture_time.map(|a| a.capture_time);
            au.capture_time = track.clock.frame(time.numer(), stamp);
        }
        // The publisher's audio level (RFC 6464) goes on with its packets: subscribers show
        // who is talking from it.
        let audio_level = d.ext_vals.audio_level.map(|l| (l, d.ext_vals.voice_activity.unwrap_or(false)));
        let media = InMedia { kind, params: d.params, time, audio_level, au, layer };
        Some(SessionOutput::Media { mid: d.mid, media })
    }

    /// Starts forwarding `source` (a track of participant `stream_id`) to this participant;
    /// the m-line is added by the next offer. No-op for a publish-only session.
    pub(crate) fn subscribe(&mut self, source: TrackRef, kind: MediaKind, stream_id: &str) {
        if !self.subscriber || self.tracks_out.iter().any(|t| t.source == source) {
            return;
        }
        if let Some(Viewer { follows: Some(p), .. }) = &self.viewer {
            if p != stream_id {
                return;
            }
        }
        self.tracks_out.push(TrackOut {
            source,
            kind,
            stream_id: stream_id.to_owned(),
            state: OutState::ToOpen,
            tile: None,
            choice: Choice::default(),
            paused: false,
            last_frame: None,
            layers: None,
        });
        self.assign();
    }

    /// The participant a viewer shows (whose tracks are open on its m-lines).
    fn shown(&self) -> Option<&str> {
        self.tracks_out.iter().find(|t| matches!(t.state, OutState::Open(_))).map(|t| t.stream_id.as_str())
    }

    /// Video tracks open here (forwarded, negotiated).
    fn open_video(&self) -> Vec<TrackRef> {
        let open = |t: &&TrackOut| matches!(t.state, OutState::Open(_)) && t.kind == MediaKind::Video;
        self.tracks_out.iter().filter(open).map(|t| t.source).collect()
    }

    /// A viewer: puts the shown participant's waiting tracks on free m-lines of their kind.
    /// The shown participant is the one already shown, else the followed one, else the
    /// earliest publisher (lowest session id) with a waiting track.
    fn assign(&mut self) {
        let Some(v) = &self.viewer else { return };
        let waiting = |t: &&TrackOut| t.state == OutState::ToOpen;
        let shown = self
            .shown()
            .or(v.follows.as_deref())
            .or_else(|| self.tracks_out.iter().filter(waiting).min_by_key(|t| t.source.session).map(|t| &*t.stream_id))
            .map(str::to_owned);
        let Some(shown) = shown else { return };
        let slots = v.slots.clone();
        for i in 0..self.tracks_out.len() {
            let t = &self.tracks_out[i];
            if t.state != OutState::ToOpen || t.stream_id != shown {
                continue;
            }
            let taken = |mid: Mid| self.tracks_out.iter().any(|o| o.state == OutState::Open(mid));
            let Some((mid, _)) = slots.iter().find(|(m, k)| *k == t.kind && !taken(*m)) else { continue };
            let t = &mut self.tracks_out[i];
            t.state = OutState::Open(*mid);
            if t.kind == MediaKind::Video && self.connected {
                self.keyframes_wanted.push((t.source, None));
            }
        }
    }

    /// A viewer: sends `text` (a `detections` message) on its detections channel when it
    /// shows `participant`. False when nothing was written (no channel, another
    /// participant shown, the channel's buffer full).
    pub(crate) fn send_detections(&mut self, participant: &str, text: &str) -> bool {
        let Some(id) = self.viewer.as_ref().and_then(|v| v.channel) else { return false };
        if self.shown() != Some(participant) {
            return false;
        }
        let Some(mut channel) = self.rtc.channel(id) else { return false };
        matches!(channel.write(false, text.as_bytes()), Ok(true))
    }

    /// Stops forwarding every track of session `publisher` (it left).
    pub(crate) fn unsubscribe_session(&mut self, publisher: u64) {
        self.unsubscribe(|src| src.session == publisher);
    }

    /// Stops forwarding one track (its publisher stopped it).
    pub(crate) fn unsubscribe_track(&mut self, source: TrackRef) {
        self.unsubscribe(|src| src == source);
    }

    fn unsubscribe(&mut self, gone: impl Fn(TrackRef) -> bool) {
        if self.viewer.is_some() {
            // Its m-lines stay; another track of the shown participant may fill them.
            self.tracks_out.retain(|t| !gone(t.source));
            return self.assign();
        }
        self.tracks_out.retain_mut(|t| {
            if !gone(t.source) {
                return true;
            }
            match t.state {
                OutState::ToOpen => return false,
                OutState::Negotiating(m) | OutState::Open(m) => t.state = OutState::ToStop(m),
                OutState::ToStop(_) | OutState::Stopping(_) => {}
            }
            true
        });
    }

    /// Mids of the forwarded tracks that are negotiated (media flows).
    #[cfg(test)]
    fn forwarding(&self) -> impl Iterator<Item = (TrackRef, Mid)> + '_ {
        self.tracks_out.iter().filter_map(|t| match t.state {
            OutState::Open(m) => Some((t.source, m)),
            _ => None,
        })
    }

    /// An offer for what changed, when connected and no other offer is outstanding.
    fn negotiate(&mut self) -> Option<(String, Vec<SubscribedTrack>)> {
        if !self.connected || self.pending.is_some() || self.viewer.is_some() {
            return None;
        }
        if !self.tracks_out.iter().any(|t| matches!(t.state, OutState::ToOpen | OutState::ToStop(_))) {
            return None;
        }
        let mut change = self.rtc.sdp_api();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let track_id = Some(t.source.mid.to_string());
                    let mid = change.add_media(t.kind, Direction::SendOnly, Some(t.stream_id.clone()), track_id, None);
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::Stopping(mid);
                }
                _ => {}
            }
        }
        let (offer, pending) = change.apply()?;
        let tracks: Vec<SubscribedTrack> = self
            .tracks_out
            .iter()
            .filter_map(|t| match t.state {
                OutState::Negotiating(m) | OutState::Open(m) => Some(SubscribedTrack {
                    mid: m.to_string(),
                    participant: t.stream_id.clone(),
                    track: t.source.mid.to_string(),
                    kind: if t.kind == MediaKind::Audio { "audio" } else { "video" }.to_owned(),
                }),
                _ => None,
            })
            .collect();
        let sdp = offer.to_sdp_string();
        let deadline = self.now + self.offer_timeout;
        self.pending =
            Some(Outstanding { pending, lines: mlines(&sdp), sdp: sdp.clone(), tracks: tracks.clone(), deadline });
        Some((sdp, tracks))
    }

    /// The outstanding offer again when it went unanswered for `offer_timeout`: the
    /// participant lost it (then applies it now), or applied it and its answer was lost
    /// (then applying the same offer again changes nothing and answers it again).
    fn overdue_offer(&mut self) -> Option<SessionOutput> {
        let p = self.pending.as_mut().filter(|p| self.now >= p.deadline)?;
        p.deadline = self.now + self.offer_timeout;
        Some(SessionOutput::Offer { sdp: p.sdp.clone(), tracks: p.tracks.clone(), repeated: true })
    }

    /// A renegotiation offer from the participant (it adds or stops its own tracks).
    /// Perfect negotiation with the server as the polite side: an offer of ours that
    /// crossed it is dropped (str0m voids it) and what it carried goes into the next one.
    pub(crate) fn accept_offer(&mut self, sdp: &str) -> Result<String, MediaError> {
        if sdp.len() > self.max_offer_bytes {
            return Err(MediaError::BadOffer(format!("{} bytes, limit {}", sdp.len(), self.max_offer_bytes)));
        }
        if !self.may_publish {
            refuse_sending(sdp)?;
        }
        let (sdp, _) = limit_video_lines(sdp, self.max_tracks_per_publish);
        let offer = contain(|| SdpOffer::from_sdp_string(&sdp))
            .map_err(|_| MediaError::BadOffer("unparseable SDP".into()))?
            .map_err(|e| MediaError::BadOffer(e.to_string()))?;
        if self.pending.take().is_some() {
            self.void_offer();
        }
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
        Ok(answer.to_sdp_string())
    }

    /// Our outstanding offer is void: what it carried goes into the next one.
    fn void_offer(&mut self) {
        for t in &mut self.tracks_out {
            match t.state {
                OutState::Negotiating(_) => t.state = OutState::ToOpen,
                OutState::Stopping(m) => t.state = OutState::ToStop(m),
                _ => {}
            }
        }
    }

    /// The participant's answer to our outstanding offer. `Ok(false)`: ignored, because
    /// no offer is outstanding or the answer's m-lines do not answer it — a late answer
    /// to an offer that was answered or offered again already (see `overdue_offer`).
    pub(crate) fn accept_answer(&mut self, sdp: &str) -> Result<bool, MediaError> {
        if sdp.len() > self.max_offer_bytes {
            return Err(MediaError::BadOffer(format!("{} bytes, limit {}", sdp.len(), self.max_offer_bytes)));
        }
        if !self.pending.as_ref().is_some_and(|p| answers(&p.lines, &mlines(sdp))) {
            return Ok(false);
        }
        let Some(Outstanding { pending, .. }) = self.pending.take() else { return Ok(false) };
        // SDP comes from the network: a parser panic must become an error, not a crash.
        let answer = contain(|| SdpAnswer::from_sdp_string(sdp))
            .map_err(|_| MediaError::BadOffer("unparseable SDP".into()))
            .and_then(|a| a.map_err(|e| MediaError::BadOffer(e.to_string())));
        let accepted = answer.and_then(|a| {
            self.rtc.sdp_api().accept_answer(pending, a).map_err(|e| MediaError::Rejected(e.to_string()))
        });
        match accepted {
            Ok(()) => {
                for t in &mut self.tracks_out {
                    if let OutState::Negotiating(m) = t.state {
                        t.state = OutState::Open(m);
                        // A new subscriber can only start decoding at a keyframe.
                        if t.kind == MediaKind::Video {
                            self.keyframes_wanted.push((t.source, None));
                        }
                    }
                }
                self.tracks_out.retain(|t| !matches!(t.state, OutState::Stopping(_)));
                Ok(true)
            }
            Err(e) => {
                self.void_offer();
                Err(e)
            }
        }
    }

    /// Writes one frame of `source` to this participant, RTP time unchanged (of a
    /// simulcast track: the layer chosen for this participant, on the track's reference
    /// timeline). False when nothing was written and nothing else is to be sent: the
    /// track is not forwarded here (yet), its tile is hidden, the frame is of another
    /// layer, or str0m refused it.
    pub(crate) fn forward(&mut self, source: TrackRef, media: &InMedia) -> bool {
        let Some(i) = self.tracks_out.iter().position(|t| t.source == source && matches!(t.state, OutState::Open(_)))
        else {
            return false;
        };
        let OutState::Open(mid) = self.tracks_out[i].state else { return false };
        if media.kind == MediaKind::Video {
            let limit = self.video_limit(mid).map(|b| b.as_u64());
            let now = self.now;
            let t = &mut self.tracks_out[i];
            t.last_frame = Some(now);
            if let Some(frame) = &media.layer {
                if !t.layers.as_ref().is_some_and(|l| Arc::ptr_eq(l, &frame.layers)) {
                    t.layers = Some(frame.layers.clone());
                }
            }
            let hidden = t.tile.is_some_and(|(w, h)| w == 0 || h == 0);
            let write = match &media.layer {
                Some(frame) => match t.choice.admit(frame, t.tile, limit) {
                    Admit::Write => true,
                    Admit::Drop => false,
                    Admit::DropAskKeyframe(rid) => {
                        self.keyframes_wanted.push((source, Some(rid)));
                        return true;
                    }
                    Admit::WriteAskKeyframe(rid) => {
                        self.keyframes_wanted.push((source, Some(rid)));
                        true
                    }
                },
                None if hidden => {
                    t.paused = true;
                    false
                }
                None if t.paused => {
                    // Shown again: it starts at a keyframe.
                    t.paused = false;
                    self.keyframes_wanted.push((source, None));
                    true
                }
                None => true,
            };
            if !write {
                return false;
            }
        }
        let Some(writer) = self.rtc.writer(mid) else { return false };
        let Some(pt) = writer.match_params(media.params) else { return false };
        let writer = match media.audio_level {
            Some((level, voice)) => writer.audio_level(level, voice),
            None => writer,
        };
        match writer.write(pt, media.au.arrival, media.time, media.au.data.clone()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%mid, "forward write failed: {e}");
                false
            }
        }
    }

    /// The tile a forwarded video track is shown in (`mid` on this participant's
    /// connection; device pixels, 0×0 = hidden): it picks the simulcast layer, and a hidden
    /// track is not forwarded. False when no forwarded track has that mid.
    pub(crate) fn track_settings(&mut self, mid: &str, width: u32, height: u32) -> bool {
        let Some(t) = self.tracks_out.iter_mut().find(|t| match t.state {
            OutState::Negotiating(m) | OutState::Open(m) => &*m == mid,
            _ => false,
        }) else {
            return false;
        };
        t.tile = Some((width, height));
        true
    }

    /// Asks the publisher of `mid` for a keyframe (PLI, else FIR) of layer `rid` (`None`:
    /// of a simulcast track, the layer the detector decodes), at most once per
    /// `keyframe_interval` and layer. True when a request was queued (poll the output to
    /// send it).
    pub(crate) fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>, now: Instant) -> bool {
        let Some(track) = self.video.get_mut(&mid) else { return false };
        let rid = rid.or_else(|| track.layers.detect_rid());
        let last = track.last_keyframe_request.iter().find(|(r, _)| *r == rid).map(|(_, t)| *t);
        if last.is_some_and(|t| now.saturating_duration_since(t) < self.keyframe_interval) {
            return false;
        }
        let Some(mut w) = self.rtc.writer(mid) else { return false };
        let kind = if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        match w.request_keyframe(rid, kind) {
            Ok(()) => {
                track.last_keyframe_request.retain(|(r, _)| *r != rid);
                track.last_keyframe_request.push((rid, now));
                true
            }
            Err(e) => {
                tracing::debug!(%mid, "keyframe request not possible: {e}");
                false
            }
        }
    }

    /// What this participant's downlink allows each forwarded video track: its REMB for
    /// the track, and its estimated downlink (less [`AUDIO_SHARE`] per forwarded audio
    /// track) shared equally among the forwarded video tracks that are shown (a hidden
    /// tile's track is not sent); the smaller of the two when both are known. Tracks with
    /// neither, and hidden ones, are left out.
    pub(crate) fn downlink_limits(&self) -> Vec<(TrackRef, Bitrate)> {
        self.open_shown_video().filter_map(|(source, mid)| Some((source, self.video_limit(mid)?))).collect()
    }

    /// Forwarded, negotiated video tracks whose tile is not hidden and whose publisher
    /// sent a frame within [`LIVE_FOR`].
    fn open_shown_video(&self) -> impl Iterator<Item = (TrackRef, Mid)> + '_ {
        let live = |t: &&TrackOut| t.last_frame.is_some_and(|at| self.now.saturating_duration_since(at) <= LIVE_FOR);
        self.tracks_out.iter().filter(|t| t.kind == MediaKind::Video).filter(live).filter_map(|t| {
            match (t.state, t.tile) {
                (_, Some((0, _) | (_, 0))) => None,
                (OutState::Open(m), _) => Some((t.source, m)),
                _ => None,
            }
        })
    }

    /// Tells the downlink estimator what this participant's tiles would take (the layer
    /// each simulcast track's tile fits, with headroom), so it probes up to that when it
    /// sends less: without probing, an estimate made while a small layer flows never grows
    /// enough for a bigger one.
    pub(crate) fn want_downlink(&mut self) {
        let want: f64 = self
            .tracks_out
            .iter()
            .filter(|t| t.kind == MediaKind::Video && matches!(t.state, OutState::Open(_)))
            .filter_map(|t| {
                let layers = t.layers.as_ref()?;
                let rid = pick(layers, t.tile, None, None)?;
                layers.iter().find(|l| l.rid == rid).map(|l| l.bps as f64 * PROBE_HEADROOM)
            })
            .sum();
        if want > 0.0 && self.downlink.is_some() {
            self.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::from(want));
        }
    }

    /// [`Session::downlink_limits`] of the forwarded video track on `mid`.
    fn video_limit(&self, mid: Mid) -> Option<Bitrate> {
        let videos = self.open_shown_video().count();
        let audios =
            self.tracks_out.iter().filter(|t| t.kind == MediaKind::Audio && matches!(t.state, OutState::Open(_)));
        let audio = AUDIO_SHARE.as_f64() * audios.count() as f64;
        let share = self.downlink.filter(|_| videos > 0).map(|d| {
            // Never nothing: a tiny estimate still leaves each track a little.
            Bitrate::from(((d.as_f64() - audio) / videos as f64).max(AUDIO_SHARE.as_f64()))
        });
        let remb = self.remb_in.get(&mid).copied();
        match (remb, share) {
            (Some(r), Some(s)) => Some(r.min(s)),
            (r, s) => r.or(s),
        }
    }

    /// Tells the participant (by REMB on its track `mid`) to send at most `bitrate`
    /// there: what its subscribers' downlinks allow. False when it does not publish `mid`.
    /// A simulcast track is left alone: each subscriber gets the layer its downlink takes,
    /// and the publisher's own congestion control decides which layers it can send.
    pub(crate) fn limit_publisher(&mut self, mid: Mid, bitrate: Bitrate) -> bool {
        let simulcast = self.simulcast.contains(&mid) || self.video.get(&mid).is_some_and(|v| v.layers.is_simulcast());
        if !self.published.contains(&mid) || simulcast {
            return false;
        }
        match self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            Some(stream) => {
                stream.request_remb(bitrate);
                true
            }
            None => false,
        }
    }

    /// Starts closing (DTLS close alert); poll the output once more to send it.
    pub(crate) fn disconnect(&mut self) {
        self.rtc.disconnect();
    }

    /// Remote ICE candidates trickled in after the offer (a WHIP `PATCH`, RFC 9725 §4.3):
    /// each `candidate:…` value goes to str0m's ICE agent. Candidates that cannot be used
    /// here (TCP; an address that is a name, e.g. mDNS `.local`) are skipped, as the RFC
    /// asks; an unparseable one refuses them all. Returns how many were added.
    pub(crate) fn add_remote_candidates(&mut self, lines: &[String]) -> Result<usize, MediaError> {
        let mut parsed = Vec::with_capacity(lines.len());
        for line in lines {
            // candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE …:
            // a whole line whose ADDRESS is a name (nothing here resolves names) is skipped.
            let fields: Vec<&str> = line.split_whitespace().take(8).collect();
            if fields.len() == 8 && fields[4].parse::<std::net::IpAddr>().is_err() {
                continue;
            }
            let c = contain(|| Candidate::from_sdp_string(line))
                .map_err(|_| MediaError::BadOffer(format!("unparseable candidate: {line}")))?
                .map_err(|e| MediaError::BadOffer(format!("{e}: {line}")))?;
            parsed.push(c);
        }
        let mut added = 0;
        for c in parsed.into_iter().filter(|c| c.proto() == str0m::net::Protocol::Udp) {
            self.rtc.add_remote_candidate(c);
            added += 1;
        }
        Ok(added)
    }
}

/// Refuses an offer of a participant without the right to publish that would send media.
fn refuse_sending(offer: &str) -> Result<(), MediaError> {
    let sending = sending_lines(offer);
    if sending.is_empty() {
        return Ok(());
    }
    Err(MediaError::Forbidden(format!(
        "your token does not grant publishing, and the offer sends media on m-line(s) {}: \
         make them recvonly or inactive",
        sending.join(", ")
    )))
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
    use str0m::media::MediaTime;
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

    /// One participant: str0m's own client `Rtc` and its server-side [`Session`].
    struct Leg {
        client: Rtc,
        server: Session,
        client_addr: SocketAddr,
        server_addr: SocketAddr,
        client_timeout: Instant,
        connected: bool,
        video: Vec<Mid>,
        audio: Option<Mid>,
        /// What the client received: (mid, kind, RTP timestamp, payload).
        received: Vec<(Mid, MediaKind, u32, Vec<u8>)>,
        keyframe_requests: usize,
        published: Vec<(Mid, MediaKind)>,
        offers: Vec<String>,
        /// How many of `offers` repeated an unanswered one.
        repeated: usize,
        /// REMB the client received: (its sending mid, bit/s).
        remb: Vec<(Mid, u64)>,
        /// The tracks the last offer names.
        offered_tracks: Vec<SubscribedTrack>,
        /// The audio level (RFC 6464) of each received audio packet.
        audio_levels: Vec<Option<i8>>,
        closed: Option<String>,
    }

    /// Participants and the server's sessions on an in-memory network with a simulated
    /// clock; the test itself plays the driver (forwarding between sessions).
    struct Net {
        legs: Vec<Leg>,
        now: Instant,
        /// Keyframe requests subscribers sent, as the sessions reported them.
        wanted: Vec<TrackRef>,
        /// Every published frame the sessions gave out: (session, mid, RTP timestamp).
        media: Vec<(u64, Mid, u32)>,
        /// A constrained downlink: (leg, n) drops every n-th datagram to that leg's client.
        lossy: Option<(usize, usize)>,
        /// Datagrams sent towards the lossy leg's client so far.
        lossy_count: usize,
    }

    impl Net {
        fn new() -> Net {
            str0m::crypto::from_feature_flags().install_process_default();
            Net {
                legs: Vec::new(),
                now: Instant::now(),
                wanted: Vec::new(),
                media: Vec::new(),
                lossy: None,
                lossy_count: 0,
            }
        }

        /// Adds a participant offering `video` H.264 tracks and maybe one Opus track;
        /// returns its index (= its session id - 1) and how many video lines were refused.
        fn join(&mut self, video: usize, audio: bool, subscriber: bool, config: &MediaConfig) -> (usize, usize) {
            let sends = |change: &mut str0m::change::SdpApi<'_>| {
                let video: Vec<Mid> = (0..video)
                    .map(|_| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None))
                    .collect();
                let audio = audio.then(|| change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
                (video, audio)
            };
            let accept = |key, id, offer: &str, addrs: &[SocketAddr], now| {
                Session::accept(key, id, subscriber, offer, config, addrs, now)
            };
            self.join_with(sends, accept).expect("offer accepted")
        }

        /// Adds a participant whose client offers what `lines` adds and whose session
        /// `accept` makes from that offer.
        fn join_with(
            &mut self,
            lines: impl FnOnce(&mut str0m::change::SdpApi<'_>) -> (Vec<Mid>, Option<Mid>),
            accept: impl FnOnce(ParticipantKey, u64, &str, &[SocketAddr], Instant) -> Result<Accepted, MediaError>,
        ) -> Result<(usize, usize), MediaError> {
            let n = self.legs.len();
            let client_addr: SocketAddr = format!("10.0.0.{}:5000", n + 1).parse().unwrap();
            let server_addr: SocketAddr = "10.0.1.1:6000".parse().unwrap();
            let mut client = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(self.now);
            client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
            let mut change = client.sdp_api();
            let (video, audio) = lines(&mut change);
            let (offer, pending) = change.apply().expect("an offer");
            let key = ParticipantKey { room: "r".into(), participant: format!("p{n}") };
            let acc = accept(key, n as u64 + 1, &offer.to_sdp_string(), &[server_addr], self.now)?;
            let answer = SdpAnswer::from_sdp_string(&acc.answer).expect("answer parses");
            client.sdp_api().accept_answer(pending, answer).expect("answer accepted");
            self.legs.push(Leg {
                client,
                server: acc.session,
                client_addr,
                server_addr,
                client_timeout: self.now,
                connected: false,
                video,
                audio,
                received: Vec::new(),
                keyframe_requests: 0,
                published: Vec::new(),
                offers: Vec::new(),
                repeated: 0,
                remb: Vec::new(),
                offered_tracks: Vec::new(),
                audio_levels: Vec::new(),
                closed: None,
            });
            Ok((n, acc.rejected_tracks))
        }

        /// Polls everyone and carries datagrams (and forwarded frames) until all wait.
        fn exchange(&mut self) {
            for _ in 0..1000 {
                let mut moved = false;
                let mut forwards: Vec<(TrackRef, InMedia)> = Vec::new();
                for (i, leg) in self.legs.iter_mut().enumerate() {
                    let mut to_server = Vec::new();
                    loop {
                        match leg.client.poll_output().expect("client rtc") {
                            Output::Timeout(t) => {
                                leg.client_timeout = t;
                                break;
                            }
                            Output::Transmit(t) => to_server.push(t.contents.to_vec()),
                            Output::Event(Event::Connected) => leg.connected = true,
                            Output::Event(Event::KeyframeRequest(_)) => leg.keyframe_requests += 1,
                            Output::Event(Event::EgressBitrateEstimate(BweKind::Remb { estimate, mid })) => {
                                leg.remb.push((mid, estimate.as_u64()))
                            }
                            Output::Event(Event::MediaData(d)) => {
                                let kind = leg.client.media(d.mid).unwrap().kind();
                                if kind == MediaKind::Audio {
                                    leg.audio_levels.push(d.ext_vals.audio_level);
                                }
                                leg.received.push((d.mid, kind, d.time.numer() as u32, d.data.to_vec()));
                            }
                            Output::Event(_) => {}
                        }
                    }
                    let mut to_client = Vec::new();
                    if leg.closed.is_none() {
                        loop {
                            match leg.server.poll_output() {
                                SessionOutput::Timeout => break,
                                SessionOutput::Transmit(t) => {
                                    assert_eq!(t.source, leg.server_addr);
                                    to_client.push(t.contents.to_vec())
                                }
                                SessionOutput::Published { mid, kind } => leg.published.push((mid, kind)),
                                SessionOutput::Media { mid, media } => {
                                    let src = TrackRef { session: leg.server.id(), mid };
                                    self.media.push((src.session, mid, media.au.rtp_timestamp));
                                    forwards.push((src, media));
                                }
                                SessionOutput::KeyframeWanted(src, _) => self.wanted.push(src),
                                SessionOutput::Offer { sdp, tracks, repeated } => {
                                    leg.repeated += usize::from(repeated);
                                    leg.offers.push(sdp);
                                    leg.offered_tracks = tracks;
                                }
                                SessionOutput::Unpublished { mid } => leg.published.retain(|(m, _)| *m != mid),
                                SessionOutput::Closed(why) => {
                                    leg.closed = Some(why);
                                    break;
                                }
                            }
                        }
                    }
                    moved |= !to_server.is_empty() || !to_client.is_empty();
                    for d in to_server {
                        let input = receive(self.now, leg.client_addr, leg.server_addr, &d);
                        assert!(leg.server.accepts(&input), "a session accepts its own client's datagrams");
                        leg.server.handle_input(input).expect("server input");
                    }
                    for d in to_client {
                        if let Some((_, n)) = self.lossy.filter(|(l, _)| *l == i) {
                            self.lossy_count += 1;
                            if self.lossy_count.is_multiple_of(n) {
                                continue;
                            }
                        }
                        leg.client
                            .handle_input(receive(self.now, leg.server_addr, leg.client_addr, &d))
                            .expect("input");
                    }
                }
                for (src, media) in &forwards {
                    for leg in &mut self.legs {
                        moved |= leg.server.forward(*src, media);
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("no quiet point after 1000 rounds");
        }

        /// Advances the simulated clock to the next timeout (at most 20 ms).
        fn tick(&mut self) {
            let next = self.legs.iter().map(|l| l.client_timeout.min(l.server.next_timeout())).min().unwrap();
            self.now = next.clamp(self.now + Duration::from_millis(1), self.now + Duration::from_millis(20));
            for leg in &mut self.legs {
                leg.client.handle_input(Input::Timeout(self.now)).expect("client timeout");
                if leg.closed.is_none() {
                    leg.server.handle_input(Input::Timeout(self.now)).expect("server timeout");
                }
            }
            self.exchange();
        }

        fn run(&mut self, ticks: usize) {
            for _ in 0..ticks {
                self.tick();
            }
        }

        fn connect(&mut self) {
            self.exchange();
            for _ in 0..500 {
                if self.legs.iter().all(|l| l.connected) {
                    return;
                }
                self.tick();
            }
            panic!("not connected after 500 ticks");
        }

        /// Session `to` subscribes to every track session `from` publishes (as the driver does).
        fn subscribe_to(&mut self, to: usize, from: usize) {
            let (id, name) = (self.legs[from].server.id(), format!("p{from}"));
            for (mid, kind) in self.legs[from].published.clone() {
                self.legs[to].server.subscribe(TrackRef { session: id, mid }, kind, &name);
            }
        }

        /// Delivers the sessions' pending offers to their clients and the answers back.
        fn renegotiate(&mut self) {
            for leg in &mut self.legs {
                for sdp in std::mem::take(&mut leg.offers) {
                    let offer = SdpOffer::from_sdp_string(&sdp).expect("server offer parses");
                    let answer = leg.client.sdp_api().accept_offer(offer).expect("client accepts the offer");
                    leg.server.accept_answer(&answer.to_sdp_string()).expect("session accepts the answer");
                }
            }
            self.exchange();
        }

        fn send_video(&mut self, leg: usize, track: usize, ts: u32, data: Vec<u8>) {
            let l = &mut self.legs[leg];
            let mid = l.video[track];
            let w = l.client.writer(mid).expect("writer");
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::H264).unwrap().pt();
            w.write(pt, self.now, MediaTime::from_90khz(ts as u64), Arc::<[u8]>::from(data)).expect("write");
        }

        fn send_audio(&mut self, leg: usize, ts: u32, data: Vec<u8>) {
            let l = &mut self.legs[leg];
            let mid = l.audio.expect("audio track");
            let w = l.client.writer(mid).expect("writer");
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).unwrap().pt();
            let time = MediaTime::new(ts as u64, str0m::media::Frequency::FORTY_EIGHT_KHZ);
            w.audio_level(-30, true).write(pt, self.now, time, Arc::<[u8]>::from(data)).expect("write");
        }
    }

    fn receive(at: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) -> Input<'_> {
        Input::Receive(
            at,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: to,
                contents: data.try_into().expect("datagram"),
            },
        )
    }

    /// A tiny Annex-B "keyframe": SPS, PPS and an IDR slice header (str0m does not decode it).
    fn keyframe(n: u8) -> Vec<u8> {
        vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, n, 1, 2, 3]
    }

    #[test]
    fn session_receives_frames_with_the_sent_rtp_timestamps_and_asks_for_keyframes() {
        let mut net = Net::new();
        let (a, rejected) = net.join(1, false, false, &MediaConfig::default());
        assert_eq!(rejected, 0);
        net.connect();
        assert!(!net.legs[a].server.remotes().is_empty());
        let mid = net.legs[a].video[0];
        assert_eq!(net.legs[a].published, vec![(mid, MediaKind::Video)], "the offer's track is announced");
        let sent: Vec<u32> = vec![4_294_960_000, 4_294_963_000, 1_704, 4_704];
        for (i, ts) in sent.iter().enumerate() {
            net.send_video(a, 0, *ts, keyframe(i as u8));
            net.tick();
        }
        net.run(10);
        let got: Vec<u32> = net.media.iter().map(|(_, _, ts)| *ts).collect();
        assert_eq!(got, sent, "every frame, with the publisher's RTP timestamps (across the wrap)");

        let now = net.now;
        assert!(net.legs[a].server.request_keyframe(mid, None, now));
        assert!(!net.legs[a].server.request_keyframe(mid, None, now), "rate-limited within keyframe_interval");
        net.run(5);
        assert_eq!(net.legs[a].keyframe_requests, 1, "the PLI reached the publisher");
        assert!(net.legs[a].offers.is_empty(), "a publish-only session never renegotiates");
    }

    #[test]
    fn video_lines_beyond_the_cap_are_rejected_in_the_answer() {
        let config = MediaConfig { max_tracks_per_publish: 1, ..MediaConfig::default() };
        let mut net = Net::new();
        let (a, rejected) = net.join(3, false, false, &config);
        assert_eq!(rejected, 2);
        net.connect();
        let first = net.legs[a].video[0];
        assert_eq!(net.legs[a].published, vec![(first, MediaKind::Video)], "only the first video track opens");
        for track in 0..3 {
            let l = &mut net.legs[a];
            let mid = l.video[track];
            // The client may still try to write on the refused mids: nothing of it arrives.
            if let Some(w) = l.client.writer(mid) {
                let pt = w.payload_params().next().map(|p| p.pt());
                if let Some(pt) = pt {
                    let _ = w.write(
                        pt,
                        net.now,
                        MediaTime::from_90khz(1000 + track as u64),
                        Arc::<[u8]>::from(keyframe(0)),
                    );
                }
            }
        }
        net.run(10);
        let mids: Vec<Mid> = net.media.iter().map(|(_, m, _)| *m).collect();
        assert_eq!(mids, vec![first], "only the first video track is published");
    }

    #[test]
    fn tracks_are_forwarded_with_unchanged_timestamps_and_removed_when_the_publisher_leaves() {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, true, true, &cfg);
        let (b, _) = net.join(1, false, true, &cfg);
        net.connect();
        // The test plays the driver: each session subscribes to the other's tracks.
        let (a_id, b_id) = (net.legs[a].server.id(), net.legs[b].server.id());
        net.subscribe_to(b, a);
        net.subscribe_to(a, b);
        assert_eq!(net.legs[a].published.len(), 2, "a publishes video and audio");
        net.exchange();
        assert_eq!(net.legs[b].offers.len(), 1, "one offer for both of a's tracks");
        assert_eq!(net.legs[a].offers.len(), 1);
        net.renegotiate();
        assert_eq!(net.legs[b].server.forwarding().count(), 2);
        let (a_video, b_video) = (
            TrackRef { session: a_id, mid: net.legs[a].video[0] },
            TrackRef { session: b_id, mid: net.legs[b].video[0] },
        );
        let mut opened = std::mem::take(&mut net.wanted);
        opened.sort_by_key(|t| t.session);
        assert_eq!(opened, vec![a_video, b_video], "each new subscriber asks the publisher for a keyframe");

        let video_ts = [3_000_000_000u32, 3_000_003_000, 3_000_006_000];
        let audio_ts = [7_000_000u32, 7_000_960, 7_001_920];
        for i in 0..3 {
            net.send_video(a, 0, video_ts[i], keyframe(i as u8));
            net.send_audio(a, audio_ts[i], vec![0xfc, i as u8, 1, 2, 3]);
            net.send_video(b, 0, 100 + i as u32 * 3000, keyframe(9));
            net.tick();
        }
        net.run(20);
        let got = |leg: &Leg, kind: MediaKind| -> Vec<u32> {
            leg.received.iter().filter(|r| r.1 == kind).map(|r| r.2).collect()
        };
        assert_eq!(got(&net.legs[b], MediaKind::Video), video_ts, "b gets a's video, RTP timestamps unchanged");
        assert_eq!(got(&net.legs[b], MediaKind::Audio), audio_ts, "b gets a's audio, RTP timestamps unchanged");
        assert_eq!(net.legs[b].audio_levels, vec![Some(-30); 3], "with the publisher's audio level");
        let first_video = net.legs[b].received.iter().find(|r| r.1 == MediaKind::Video).unwrap();
        assert_eq!(first_video.3, keyframe(0), "payload intact");
        let tracks = &net.legs[b].offered_tracks;
        assert_eq!(tracks.len(), 2, "the offer names both forwarded tracks: {tracks:?}");
        let video = tracks.iter().find(|t| t.kind == "video").expect("a video track");
        assert_eq!((video.participant.as_str(), video.mid.clone()), ("p0", first_video.0.to_string()));
        assert_eq!(video.track, net.legs[a].video[0].to_string(), "named as the publisher publishes it");
        assert_eq!(got(&net.legs[a], MediaKind::Video), vec![100, 3100, 6100], "a gets b's video");

        // b asks for a keyframe of a's video: the session names a's track.
        let (out_mid, _) = net.legs[b].received.iter().find(|r| r.1 == MediaKind::Video).map(|r| (r.0, ())).unwrap();
        net.legs[b].client.writer(out_mid).unwrap().request_keyframe(None, KeyframeRequestKind::Pli).unwrap();
        net.run(5);
        assert_eq!(net.wanted, vec![a_video], "the subscriber's PLI names the publisher's track");

        // a leaves: b's session stops both forwarded m-lines by a new offer.
        net.legs[b].server.unsubscribe_session(a_id);
        net.exchange();
        assert_eq!(net.legs[b].offers.len(), 1);
        net.renegotiate();
        assert_eq!(net.legs[b].server.forwarding().count(), 0);
        let client = &net.legs[b].client;
        let active: Vec<Mid> = net.legs[b]
            .received
            .iter()
            .filter_map(|r| client.media(r.0))
            .filter(|m| m.direction().is_receiving() && !m.disabled())
            .map(|m| m.mid())
            .collect();
        assert!(active.is_empty(), "b's client receives nothing any more: {active:?}");
    }

    #[test]
    fn a_participant_offer_that_crosses_the_servers_wins_and_can_publish_and_unpublish() {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, false, true, &cfg);
        let (b, _) = net.join(1, false, true, &cfg);
        net.connect();
        net.subscribe_to(b, a);
        net.exchange();
        assert_eq!(net.legs[b].offers.len(), 1, "the server offers a's video to b");
        // b adds a microphone at the same moment (its own offer): the impolite side keeps
        // its offer and ignores the server's; the server answers b's and offers again.
        let crossed = net.legs[b].offers.pop().unwrap();
        let mut change = net.legs[b].client.sdp_api();
        let mic = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("b's offer");
        let answer = net.legs[b].server.accept_offer(&offer.to_sdp_string()).expect("the server answers b's offer");
        assert_eq!(net.legs[b].server.accept_answer("v=0").ok(), Some(false), "the crossed offer is void");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        net.legs[b].client.sdp_api().accept_answer(pending, answer).expect("b takes the answer");
        net.exchange();
        assert!(net.legs[b].published.contains(&(mic, MediaKind::Audio)), "b publishes its microphone");
        assert_eq!(net.legs[b].offers.len(), 1, "offered again");
        assert_ne!(net.legs[b].offers[0], crossed);
        net.renegotiate();
        assert_eq!(net.legs[b].server.forwarding().count(), 1, "b receives a's video after all");

        // b stops its microphone: the server reports the track unpublished.
        let mut change = net.legs[b].client.sdp_api();
        change.stop_media(mic);
        let (offer, pending) = change.apply().expect("b's offer");
        let answer = net.legs[b].server.accept_offer(&offer.to_sdp_string()).expect("answered");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        net.legs[b].client.sdp_api().accept_answer(pending, answer).expect("b takes the answer");
        net.exchange();
        assert!(!net.legs[b].published.iter().any(|(m, _)| *m == mic), "the microphone is unpublished");
    }

    /// The client's answer to the session's `n`-th offer (the client applies the offer).
    fn answer_of(leg: &mut Leg, n: usize) -> String {
        let offer = SdpOffer::from_sdp_string(&leg.offers[n]).expect("server offer parses");
        leg.client.sdp_api().accept_offer(offer).expect("client accepts the offer").to_sdp_string()
    }

    #[test]
    fn a_refused_answer_keeps_the_changes_for_the_next_offer() {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, false, true, &cfg);
        net.connect();
        let src = TrackRef { session: 99, mid: Mid::from("x") };
        net.legs[a].server.subscribe(src, MediaKind::Video, "someone");
        net.exchange();
        assert_eq!(net.legs[a].offers.len(), 1);
        let answer = answer_of(&mut net.legs[a], 0);
        // The answer's m-lines are right, its BUNDLE order is not: str0m refuses it.
        let group = answer.lines().find(|l| l.starts_with("a=group:BUNDLE ")).expect("a BUNDLE group").to_owned();
        let mut mids: Vec<&str> = group["a=group:BUNDLE ".len()..].split(' ').collect();
        assert!(mids.len() > 1, "{group}");
        mids.reverse();
        let bad = answer.replace(&group, &format!("a=group:BUNDLE {}", mids.join(" ")));
        assert!(net.legs[a].server.accept_answer(&bad).is_err());
        assert_eq!(net.legs[a].server.accept_answer(&answer).ok(), Some(false), "no offer outstanding any more");
        net.exchange();
        assert_eq!(net.legs[a].offers.len(), 2, "offered again");
        assert_ne!(net.legs[a].offers[1], net.legs[a].offers[0], "a new offer");
        assert_eq!(net.legs[a].repeated, 0);
    }

    #[test]
    fn an_unanswered_offer_is_offered_again_and_late_answers_are_ignored() {
        let timeout = Duration::from_millis(500);
        let cfg = MediaConfig { offer_timeout: timeout, ..MediaConfig::default() };
        let mut net = Net::new();
        let (a, _) = net.join(1, false, true, &cfg);
        net.connect();
        net.legs[a].server.subscribe(TrackRef { session: 98, mid: Mid::from("x") }, MediaKind::Video, "p8");
        net.exchange();
        assert_eq!(net.legs[a].offers.len(), 1);
        let offered = net.now;
        // The client applies the offer, but its answer is lost.
        let lost = answer_of(&mut net.legs[a], 0);
        while net.now < offered + timeout - Duration::from_millis(30) {
            net.tick();
        }
        assert_eq!(net.legs[a].offers.len(), 1, "nothing offered again before the timeout");
        while net.legs[a].offers.len() == 1 {
            assert!(net.now < offered + timeout * 2, "offered again within the timeout");
            net.tick();
        }
        assert!(net.now >= offered + timeout, "not before the timeout");
        assert_eq!(net.legs[a].offers[1], net.legs[a].offers[0], "the same offer again");
        assert_eq!(net.legs[a].repeated, 1);
        // The client had applied it: applying it again answers it again.
        let again = answer_of(&mut net.legs[a], 1);
        assert_eq!(net.legs[a].server.accept_answer(&again).ok(), Some(true), "the repeat's answer is taken");
        assert_eq!(net.legs[a].server.forwarding().count(), 1);
        assert_eq!(net.legs[a].server.accept_answer(&lost).ok(), Some(false), "the late answer is ignored");

        // A second track; the client never sees this offer at all.
        net.legs[a].server.subscribe(TrackRef { session: 99, mid: Mid::from("y") }, MediaKind::Audio, "p9");
        net.exchange();
        assert_eq!(net.legs[a].offers.len(), 3);
        assert_eq!(
            net.legs[a].server.accept_answer(&again).ok(),
            Some(false),
            "an answer to an earlier offer does not answer this one"
        );
        let offered = net.now;
        while net.legs[a].offers.len() == 3 {
            assert!(net.now < offered + timeout * 2, "offered again within the timeout");
            net.tick();
        }
        assert_eq!(net.legs[a].offers[3], net.legs[a].offers[2], "the same offer again");
        let answer = answer_of(&mut net.legs[a], 3);
        assert_eq!(net.legs[a].server.accept_answer(&answer).ok(), Some(true));
        assert_eq!(net.legs[a].server.forwarding().count(), 2, "both tracks negotiated");
        net.run(100);
        assert_eq!(net.legs[a].offers.len(), 4, "an answered offer is not offered again");
        let tracks: Vec<&str> = net.legs[a].offered_tracks.iter().map(|t| t.participant.as_str()).collect();
        assert_eq!(tracks, vec!["p8", "p9"]);
    }

    #[test]
    fn a_receive_only_participant_receives_and_may_not_send() {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, false, true, &cfg);
        let sends = |change: &mut str0m::change::SdpApi<'_>| {
            (vec![change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None)], None)
        };
        let receive_only = |key, id, offer: &str, addrs: &[SocketAddr], now| {
            Session::accept_receive_only(key, id, offer, &cfg, addrs, now)
        };
        let refused = net.join_with(sends, receive_only).expect_err("a sending offer is refused");
        assert!(matches!(&refused, MediaError::Forbidden(m) if m.contains("publishing")), "{refused}");
        let watches = |change: &mut str0m::change::SdpApi<'_>| {
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            (Vec::new(), None)
        };
        let (b, _) = net.join_with(watches, receive_only).expect("a receiving offer is taken");
        net.connect();
        assert!(net.legs[b].published.is_empty(), "b publishes nothing");
        net.subscribe_to(b, a);
        net.exchange();
        net.renegotiate();
        assert_eq!(net.legs[b].server.forwarding().count(), 1, "b receives a's video");
        for i in 0..3u32 {
            net.send_video(a, 0, 9000 + i * 3000, keyframe(i as u8));
            net.tick();
        }
        net.run(10);
        let got: Vec<u32> = net.legs[b].received.iter().map(|r| r.2).collect();
        assert_eq!(got, vec![9000, 12000, 15000]);

        // b's own renegotiation may not add a sending line either.
        let mut change = net.legs[b].client.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, _) = change.apply().expect("b's offer");
        let refused = net.legs[b].server.accept_offer(&offer.to_sdp_string()).expect_err("refused");
        assert!(matches!(refused, MediaError::Forbidden(_)), "{refused}");
    }

    #[test]
    fn a_subscribers_remb_becomes_its_limit_and_reaches_the_publisher() {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, true, true, &cfg);
        let (b, _) = net.join(1, false, true, &cfg);
        net.connect();
        let a_id = net.legs[a].server.id();
        net.subscribe_to(b, a);
        net.exchange();
        net.renegotiate();
        let a_video = TrackRef { session: a_id, mid: net.legs[a].video[0] };
        for i in 0..5u32 {
            net.send_video(a, 0, 1000 + i * 3000, keyframe(i as u8));
            net.send_audio(a, 500 + i * 960, vec![0xfc, 1, 2]);
            net.tick();
        }
        net.run(10);
        let at_b = net.legs[b].received.iter().find(|r| r.1 == MediaKind::Video).map(|r| r.0).expect("a's video at b");
        net.legs[b]
            .client
            .direct_api()
            .stream_rx_by_mid(at_b, None)
            .expect("b receives it")
            .request_remb(Bitrate::kbps(300));
        net.run(20);
        let limits = net.legs[b].server.downlink_limits();
        assert_eq!(limits.len(), 1, "a's video only (audio is not limited): {limits:?}");
        assert_eq!(limits[0].0, a_video);
        assert!(limits[0].1.as_u64() <= 300_000, "{limits:?}");
        // The driver's part: the publisher is told.
        assert!(net.legs[a].server.limit_publisher(a_video.mid, limits[0].1));
        assert!(!net.legs[a].server.limit_publisher(Mid::from("nope"), limits[0].1), "not a published mid");
        net.run(20);
        let remb = net.legs[a].remb.clone();
        assert!(!remb.is_empty(), "a got REMB");
        assert!(remb.iter().all(|(mid, bps)| *mid == a_video.mid && *bps <= 300_000), "{remb:?}");
    }

    /// Streams a's video (~750 kbit/s) to b for `secs` simulated seconds, every `drop`-th
    /// datagram to b's client lost (None: none); b's downlink limit for it at the end.
    fn downlink_limit_after(drop: Option<usize>, secs: u64) -> Option<Bitrate> {
        let cfg = MediaConfig::default();
        let mut net = Net::new();
        let (a, _) = net.join(1, false, true, &cfg);
        let (b, _) = net.join(1, false, true, &cfg);
        net.connect();
        let mid = net.legs[a].video[0];
        net.subscribe_to(b, a);
        net.exchange();
        net.renegotiate();
        net.lossy = drop.map(|n| (b, n));
        let start = net.now;
        let mut n = 0u32;
        while net.now < start + Duration::from_secs(secs) {
            if net.now >= start + Duration::from_millis(33 * n as u64) {
                let mut frame = keyframe(n as u8);
                frame.extend_from_slice(&[0x5a; 2800]);
                net.send_video(a, 0, n * 3000, frame);
                n += 1;
            }
            net.tick();
        }
        let limits = net.legs[b].server.downlink_limits();
        limits.iter().find(|(src, _)| src.mid == mid).map(|(_, l)| *l)
    }

    #[test]
    fn a_lossy_downlink_lowers_the_subscribers_limit() {
        let clean = downlink_limit_after(None, 8).expect("an estimate from TWCC feedback");
        let lossy = downlink_limit_after(Some(4), 8).expect("an estimate from TWCC feedback");
        assert!(
            lossy.as_f64() < clean.as_f64() * 0.7,
            "25% loss towards the subscriber: {lossy} vs {clean} without loss"
        );
    }
}

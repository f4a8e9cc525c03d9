//! One tokio task drives every [`Session`] over the shared UDP port: it takes routed
//! datagrams and commands in, feeds them to the session they belong to
//! (`Session::accepts`), and carries each session's outputs out — datagrams to the
//! sockets, video access units to the track's stages, published frames to the other
//! sessions of the room (forwarding), keyframe requests to the publisher, offers to
//! signalling. It holds no session behaviour.
//!
//! A panic inside a session (str0m included) is contained: that session is dropped and
//! counted, every other one keeps running.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::Input;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::contain::contain;
use crate::error::MediaError;
use crate::session::{InMedia, Session, SessionOutput, TrackRef};
use crate::stats::Counters;
use crate::types::{AccessUnit, MediaConfig, ParticipantKey, ServerOffer, TrackMeta, TrackStages};
use crate::udp::{Datagram, Inbound, Routes, Sockets};

/// How often idle / dead sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a new session does.
pub(crate) enum Role {
    /// A participant: publishes what its offer sends; `subscribe`: also receives the
    /// room's other tracks; `analyse`: its video is decoded and detected (else forwarded only).
    Participant { subscribe: bool, analyse: bool },
    /// A participant without the right to publish: receives the room's tracks; an offer
    /// that sends media is refused (`MediaError::Forbidden`).
    ReceiveOnly,
    /// A WHEP viewer: receives `follows`'s tracks (or the room's earliest publisher's) on
    /// the m-lines of its offer and their detections on its `detections` channel.
    Viewer { follows: Option<String> },
}

pub(crate) enum Command {
    Publish {
        key: ParticipantKey,
        offer: String,
        role: Role,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// A `detections` message (JSON) for the viewers of `participant` in `room`.
    Detections {
        room: String,
        participant: String,
        text: Arc<str>,
    },
    /// The participant's answer to the server's last offer.
    Answer {
        key: ParticipantKey,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// The participant's renegotiation offer; the reply is the answer.
    Offer {
        key: ParticipantKey,
        sdp: String,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// Remote ICE candidates trickled in; the reply is how many were added.
    Candidates {
        key: ParticipantKey,
        lines: Vec<String>,
        reply: oneshot::Sender<Result<usize, MediaError>>,
    },
    Unpublish {
        key: ParticipantKey,
    },
    /// The tile one of the participant's received video tracks is shown in.
    TrackSettings {
        key: ParticipantKey,
        mid: String,
        width: u32,
        height: u32,
    },
    Keyframe {
        session: u64,
        mid: Mid,
    },
    Shutdown,
}

struct Pipe {
    tx: SyncSender<AccessUnit>,
    overflowed: bool,
}

struct Entry {
    session: Session,
    pipes: HashMap<Mid, Pipe>,
    /// Its video goes to the decoder and detector (the participant allowed analysis).
    analyse: bool,
}

/// Why a session ends.
enum End {
    Closed(String),
    Panicked,
}

pub(crate) struct Driver {
    config: MediaConfig,
    counters: Arc<Counters>,
    lifecycle: Arc<watch::Sender<u64>>,
    sockets: Sockets,
    routes: Routes,
    stages: Box<dyn TrackStages>,
    cmd: mpsc::WeakUnboundedSender<Command>,
    next_id: u64,
    sessions: HashMap<u64, Entry>,
    by_key: HashMap<ParticipantKey, u64>,
    /// Every published track: its kind and its publisher's room and participant id.
    published: HashMap<TrackRef, (MediaKind, ParticipantKey)>,
    /// Sessions with new outputs to carry out (changed by another session's output).
    dirty: Vec<u64>,
    /// Sessions that panicked while another session's output was applied to them.
    doomed: Vec<u64>,
    offers: mpsc::Sender<ServerOffer>,
    /// The key of every session that ends (for owners of sessions without a signalling
    /// connection, e.g. WHIP, which end their participant then).
    closed: broadcast::Sender<ParticipantKey>,
}

/// Binds the sockets and spawns the driver; returns its command channel and addresses.
pub(crate) async fn start(
    config: MediaConfig,
    counters: Arc<Counters>,
    stages: Box<dyn TrackStages>,
    lifecycle: Arc<watch::Sender<u64>>,
    offers: mpsc::Sender<ServerOffer>,
    closed: broadcast::Sender<ParticipantKey>,
) -> Result<(mpsc::UnboundedSender<Command>, Vec<std::net::SocketAddr>), MediaError> {
    // str0m needs a process-wide crypto provider; installing it twice is harmless.
    str0m::crypto::from_feature_flags().install_process_default();
    let routes = Routes::default();
    let (sockets, inbound) = Sockets::bind(
        config.udp_bind,
        &config.candidate_ips,
        (config.media_queue, config.stun_queue),
        config.udp_buffer_bytes,
        routes.clone(),
        counters.clone(),
    )
    .await?;
    let local_addrs = sockets.local_addrs().to_vec();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        config,
        counters,
        lifecycle,
        sockets,
        routes,
        stages,
        cmd: cmd_tx.downgrade(),
        next_id: 0,
        sessions: HashMap::new(),
        by_key: HashMap::new(),
        published: HashMap::new(),
        dirty: Vec::new(),
        doomed: Vec::new(),
        offers,
        closed,
    };
    tokio::spawn(driver.run(cmd_rx, inbound));
    Ok((cmd_tx, local_addrs))
}

impl Driver {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Command>, mut inbound: Inbound) {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let now = Instant::now();
            // Checked on every turn, so a steady stream of datagrams cannot starve timers.
            let deadline = self.sessions.values().map(|e| e.session.next_timeout()).fold(next_sweep, Instant::min);
            if deadline <= now {
                self.timeouts(now);
                if now >= next_sweep {
                    self.sweep(now);
                    next_sweep = now + SWEEP_EVERY;
                }
                continue;
            }
            tokio::select! {
                // Commands first, then known sessions' media, then new sessions' STUN.
                biased;
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.command(c),
                },
                Some(d) = inbound.media.recv() => self.datagram(d),
                Some(d) = inbound.stun.recv() => self.datagram(d),
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.flush();
        }
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(e) = self.take(id) {
                self.close(e, End::Closed("media hub stopped".into()));
            }
        }
        tracing::debug!("media driver stopped");
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Publish { key, offer, role, reply } => {
                let r = self.publish(key, &offer, role);
                let _ = reply.send(r);
            }
            Command::Detections { room, participant, text } => {
                for id in self.room_of(&room) {
                    self.with_other(id, |s| s.send_detections(&participant, &text));
                }
            }
            Command::Answer { key, sdp, reply } => {
                let answered = self.renegotiate(&key, |s| s.accept_answer(&sdp));
                if let Ok(false) = answered {
                    tracing::debug!(participant = %key.participant, "answer ignored: it answers no outstanding offer");
                }
                let _ = reply.send(answered.map(|_| ()));
            }
            Command::Offer { key, sdp, reply } => {
                let _ = reply.send(self.renegotiate(&key, |s| s.accept_offer(&sdp)));
            }
            Command::Candidates { key, lines, reply } => {
                let _ = reply.send(self.renegotiate(&key, |s| s.add_remote_candidates(&lines)));
            }
            Command::Unpublish { key } => {
                if let Some(e) = self.by_key.get(&key).copied().and_then(|id| self.take(id)) {
                    self.close(e, End::Closed("unpublished".into()));
                }
            }
            Command::TrackSettings { key, mid, width, height } => {
                let _ = self.renegotiate(&key, |s| Ok::<_, MediaError>(s.track_settings(&mid, width, height)));
            }
            Command::Keyframe { session, mid } => {
                let Some(mut e) = self.take(session) else { return };
                let now = Instant::now();
                match contain(|| e.session.request_keyframe(mid, None, now)) {
                    Ok(true) => Counters::inc(&self.counters.keyframe_requests),
                    Ok(false) => {}
                    Err(_) => return self.close(e, End::Panicked),
                }
                self.drain_and_keep(e);
            }
            Command::Shutdown => {}
        }
    }

    /// Applies one step of a renegotiation to `key`'s session.
    fn renegotiate<T>(
        &mut self,
        key: &ParticipantKey,
        f: impl FnOnce(&mut Session) -> Result<T, MediaError>,
    ) -> Result<T, MediaError> {
        let Some(mut e) = self.by_key.get(key).copied().and_then(|id| self.take(id)) else {
            return Err(MediaError::Rejected("no media session".into()));
        };
        match contain(|| f(&mut e.session)) {
            Ok(r) => {
                self.drain_and_keep(e);
                self.flush();
                r
            }
            Err(_) => {
                self.close(e, End::Panicked);
                self.flush();
                Err(MediaError::Rejected("session failed".into()))
            }
        }
    }

    fn publish(&mut self, key: ParticipantKey, offer: &str, role: Role) -> Result<String, MediaError> {
        let replaces = self.by_key.contains_key(&key);
        if !replaces && self.sessions.len() >= self.config.max_sessions {
            return Err(MediaError::TooManySessions(self.config.max_sessions));
        }
        self.next_id += 1;
        let id = self.next_id;
        let (config, addrs, now) = (&self.config, self.sockets.local_addrs(), Instant::now());
        let (acc, analyse) = match role {
            Role::Participant { subscribe, analyse } => {
                (Session::accept(key.clone(), id, subscribe, offer, config, addrs, now)?, analyse)
            }
            Role::ReceiveOnly => (Session::accept_receive_only(key.clone(), id, offer, config, addrs, now)?, false),
            Role::Viewer { follows } => {
                (Session::accept_viewer(key.clone(), id, follows, offer, config, addrs, now)?, false)
            }
        };
        if acc.rejected_tracks > 0 {
            self.counters.tracks_rejected.fetch_add(acc.rejected_tracks as u64, Relaxed);
        }
        if let Some(old) = self.by_key.get(&key).copied().and_then(|old| self.take(old)) {
            self.close(old, End::Closed("republished".into()));
        }
        let mut e = Entry { session: acc.session, pipes: HashMap::new(), analyse };
        // Everything the room already publishes (offered once the session is connected),
        // earliest first (a viewer of the room shows the earliest publisher).
        let mut room: Vec<_> = self.published.iter().filter(|(_, (_, owner))| owner.room == key.room).collect();
        room.sort_by_key(|(src, _)| src.session);
        for (src, (kind, owner)) in room {
            e.session.subscribe(*src, *kind, &owner.participant);
        }
        self.counters.sessions.fetch_add(1, Relaxed);
        self.bump();
        if let Err(end) = self.drain(&mut e) {
            self.close(e, end);
            return Err(MediaError::Rtc("session failed at start".into()));
        }
        tracing::info!(room = %callsight_signal::redact::room_tag(&key.room), participant = %key.participant, session = id, "publish accepted");
        self.by_key.insert(key, id);
        self.sessions.insert(id, e);
        Ok(acc.answer)
    }

    /// Removes a session from the maps (to work on it beside `self`).
    fn take(&mut self, id: u64) -> Option<Entry> {
        let e = self.sessions.remove(&id)?;
        if self.by_key.get(e.session.key()) == Some(&id) {
            self.by_key.remove(e.session.key());
        }
        Some(e)
    }

    /// Drains a taken session and puts it back, or closes it if it ended.
    fn drain_and_keep(&mut self, mut e: Entry) {
        match self.drain(&mut e) {
            Ok(()) => {
                self.by_key.insert(e.session.key().clone(), e.session.id());
                self.sessions.insert(e.session.id(), e);
            }
            Err(end) => self.close(e, end),
        }
    }

    /// Frees a taken session: routes, stages (their senders drop), counters.
    fn close(&mut self, mut e: Entry, end: End) {
        let why = match end {
            End::Closed(why) => {
                // Flush the DTLS close alert; the session is gone either way.
                if contain(|| e.session.disconnect()).is_ok() {
                    let _ = self.drain(&mut e);
                }
                why
            }
            End::Panicked => {
                Counters::inc(&self.counters.sessions_panicked);
                "panicked (contained)".to_owned()
            }
        };
        for r in e.session.remotes() {
            self.routes.remove(*r);
        }
        let id = e.session.id();
        let key = e.session.key().clone();
        self.published.retain(|src, _| src.session != id);
        for other in self.room_of(&key.room) {
            if let Some(o) = self.sessions.get_mut(&other) {
                if contain(|| o.session.unsubscribe_session(id)).is_err() {
                    self.doomed.push(other);
                }
                self.dirty.push(other);
            }
        }
        drop(e);
        self.counters.sessions.fetch_sub(1, Relaxed);
        self.bump();
        tracing::info!(room = %callsight_signal::redact::room_tag(&key.room), participant = %key.participant, "media session closed: {why}");
        let _ = self.closed.send(key);
    }

    fn datagram(&mut self, d: Datagram) {
        let Ok(contents) = d.data.as_slice().try_into() else {
            Counters::inc(&self.counters.garbage_packets);
            return;
        };
        let input =
            Input::Receive(d.at, Receive { proto: Protocol::Udp, source: d.source, destination: d.local, contents });
        // The session that already talks to this address first, then everyone (ICE checks).
        let id = self
            .sessions
            .iter()
            .find(|(_, e)| e.session.remotes().contains(&d.source) && e.session.accepts(&input))
            .or_else(|| self.sessions.iter().find(|(_, e)| e.session.accepts(&input)))
            .map(|(id, _)| *id);
        let Some(mut e) = id.and_then(|id| self.take(id)) else {
            Counters::inc(&self.counters.garbage_packets);
            return;
        };
        let known = e.session.remotes().len();
        match contain(|| e.session.handle_input(input)) {
            Err(_) => return self.close(e, End::Panicked),
            Ok(Err(err)) => {
                // A bad packet for a live session: log it, keep the session.
                tracing::debug!(participant = %e.session.key().participant, "input rejected: {err}");
                Counters::inc(&self.counters.garbage_packets);
            }
            Ok(Ok(())) => {}
        }
        for r in &e.session.remotes()[known..] {
            self.routes.add(*r);
        }
        self.drain_and_keep(e);
    }

    fn timeouts(&mut self, now: Instant) {
        let due: Vec<u64> =
            self.sessions.iter().filter(|(_, e)| e.session.next_timeout() <= now).map(|(id, _)| *id).collect();
        for id in due {
            let Some(mut e) = self.take(id) else { continue };
            match contain(|| e.session.handle_input(Input::Timeout(now))) {
                Err(_) => self.close(e, End::Panicked),
                Ok(Err(err)) => self.close(e, End::Closed(format!("timeout failed: {err}"))),
                Ok(Ok(())) => self.drain_and_keep(e),
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let idle = self.config.idle_timeout;
        let dead: Vec<u64> =
            self.sessions.iter().filter(|(_, e)| !e.session.is_live(now, idle)).map(|(id, _)| *id).collect();
        for id in dead {
            if let Some(e) = self.take(id) {
                self.close(e, End::Closed("idle or disconnected".into()));
            }
        }
        self.limit_publishers();
    }

    /// Tells every publisher of a forwarded video track (REMB) what the tightest of its
    /// subscribers' downlinks allows it, never less than `min_publish_kbps`.
    fn limit_publishers(&mut self) {
        let mut tightest: HashMap<TrackRef, Bitrate> = HashMap::new();
        for e in self.sessions.values_mut() {
            e.session.want_downlink();
            for (src, limit) in e.session.downlink_limits() {
                tightest.entry(src).and_modify(|t| *t = t.min(limit)).or_insert(limit);
            }
        }
        let floor = Bitrate::kbps(self.config.min_publish_kbps);
        for (src, limit) in tightest {
            let limit = limit.max(floor);
            tracing::trace!(session = src.session, mid = %src.mid, kbps = limit.as_u64() / 1000, "publisher limited");
            self.with_other(src.session, |s| s.limit_publisher(src.mid, limit));
        }
        self.flush();
    }

    /// Carries a session's outputs out until it waits for time or input.
    fn drain(&mut self, e: &mut Entry) -> Result<(), End> {
        loop {
            match contain(|| e.session.poll_output()).map_err(|_| End::Panicked)? {
                SessionOutput::Timeout => return Ok(()),
                SessionOutput::Transmit(t) => self.sockets.send(t.source, t.destination, &t.contents),
                SessionOutput::Media { mid, media } => self.media(e, mid, media),
                SessionOutput::Published { mid, kind } => self.announce(e, mid, kind),
                SessionOutput::KeyframeWanted(src, rid) => self.keyframe_wanted(src, rid),
                SessionOutput::Unpublished { mid } => self.unpublished(e, mid),
                SessionOutput::Offer { sdp, tracks, repeated } => {
                    if repeated {
                        Counters::inc(&self.counters.offers_repeated);
                    }
                    tracing::info!(participant = %e.session.key().participant, session = e.session.id(), tracks = tracks.len(), repeated, "subscriptions offered");
                    let offer = ServerOffer { key: e.session.key().clone(), sdp, tracks };
                    if self.offers.try_send(offer).is_err() {
                        tracing::warn!(participant = %e.session.key().participant, "server offer dropped: nobody reads offers");
                    }
                }
                SessionOutput::Closed(why) => return Err(End::Closed(why)),
            }
        }
    }

    /// Ids of the sessions of `room` that are in the map.
    fn room_of(&self, room: &str) -> Vec<u64> {
        self.sessions.iter().filter(|(_, o)| o.session.key().room == room).map(|(id, _)| *id).collect()
    }

    /// Applies `f` to another session (not the taken one), containing a panic.
    fn with_other(&mut self, id: u64, f: impl FnOnce(&mut Session) -> bool) {
        let Some(o) = self.sessions.get_mut(&id) else { return };
        match contain(|| f(&mut o.session)) {
            Ok(true) => self.dirty.push(id),
            Ok(false) => {}
            Err(_) => self.doomed.push(id),
        }
    }

    /// A participant publishes a new track: every other session of its room subscribes.
    fn announce(&mut self, e: &Entry, mid: Mid, kind: MediaKind) {
        let src = TrackRef { session: e.session.id(), mid };
        let owner = e.session.key().clone();
        tracing::debug!(participant = %owner.participant, %mid, ?kind, "track published");
        for other in self.room_of(&owner.room) {
            self.with_other(other, |s| {
                s.subscribe(src, kind, &owner.participant);
                true
            });
        }
        self.published.insert(src, (kind, owner));
    }

    /// A participant stopped publishing a track: its subscribers stop receiving it.
    fn unpublished(&mut self, e: &mut Entry, mid: Mid) {
        let src = TrackRef { session: e.session.id(), mid };
        tracing::debug!(participant = %e.session.key().participant, %mid, "track unpublished");
        self.published.remove(&src);
        // Dropping the sender ends the track's decoder.
        e.pipes.remove(&mid);
        for other in self.room_of(&e.session.key().room) {
            self.with_other(other, |s| {
                s.unsubscribe_track(src);
                true
            });
        }
    }

    /// A subscriber wants a keyframe: ask the publisher (rate-limited there).
    fn keyframe_wanted(&mut self, src: TrackRef, rid: Option<Rid>) {
        let now = Instant::now();
        let counters = self.counters.clone();
        self.with_other(src.session, |s| {
            let asked = s.request_keyframe(src.mid, rid, now);
            if asked {
                Counters::inc(&counters.keyframe_requests);
            }
            asked
        });
    }

    /// One published frame: to the decoder (H.264 video) and to every subscriber.
    fn media(&mut self, e: &mut Entry, mid: Mid, media: InMedia) {
        let src = TrackRef { session: e.session.id(), mid };
        for other in self.room_of(&e.session.key().room) {
            self.with_other(other, |s| s.forward(src, &media));
        }
        // Of a simulcast track, only the layer the detector decodes.
        let detected = media.layer.as_ref().is_none_or(|l| l.detect);
        if e.analyse
            && detected
            && media.kind == MediaKind::Video
            && media.params.spec().codec == str0m::format::Codec::H264
        {
            self.video(e, mid, media.au);
        }
    }

    /// Carries out what other sessions' outputs changed, until nothing is left.
    fn flush(&mut self) {
        while !self.dirty.is_empty() || !self.doomed.is_empty() {
            for id in std::mem::take(&mut self.doomed) {
                if let Some(e) = self.take(id) {
                    self.close(e, End::Panicked);
                }
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for id in dirty {
                if let Some(e) = self.take(id) {
                    self.drain_and_keep(e);
                }
            }
        }
    }

    fn video(&mut self, e: &mut Entry, mid: Mid, mut au: AccessUnit) {
        Counters::inc(&self.counters.received);
        if !e.pipes.contains_key(&mid) {
            let pipe = (e.pipes.len() < self.config.max_tracks_per_publish).then(|| self.open(&e.session, mid));
            match pipe.flatten() {
                Some(tx) => {
                    e.pipes.insert(mid, Pipe { tx, overflowed: false });
                }
                None => {
                    Counters::inc(&self.counters.dropped);
                    return;
                }
            }
        }
        let Some(pipe) = e.pipes.get_mut(&mid) else { return };
        au.discontinuity |= pipe.overflowed;
        match pipe.tx.try_send(au) {
            Ok(()) => pipe.overflowed = false,
            Err(TrySendError::Full(_)) => {
                // The decoder fell behind: drop, and restart from a keyframe.
                Counters::inc(&self.counters.dropped);
                pipe.overflowed = true;
            }
            Err(TrySendError::Disconnected(_)) => Counters::inc(&self.counters.dropped),
        }
    }

    fn open(&mut self, session: &Session, mid: Mid) -> Option<SyncSender<AccessUnit>> {
        let key = session.key();
        let meta = TrackMeta { room: key.room.clone(), participant: key.participant.clone(), track: mid.to_string() };
        let cmd = self.cmd.clone();
        let id = session.id();
        let request_keyframe = Box::new(move || {
            if let Some(cmd) = cmd.upgrade() {
                let _ = cmd.send(Command::Keyframe { session: id, mid });
            }
        });
        let tx = self.stages.open(meta, request_keyframe)?;
        tracing::debug!(participant = %key.participant, %mid, "new video track");
        self.bump();
        Some(tx)
    }

    fn bump(&self) {
        self.lifecycle.send_modify(|v| *v = v.wrapping_add(1));
    }
}

//! A WebRTC participant built on str0m: what a browser's connection to the server does,
//! minus the browser. Tests and `media-load` publish H.264 (and Opus) to a
//! [`crate::MediaHub`] with it over real UDP, and receive what the server forwards.
//!
//! Usage: [`PendingClient::new`] (or [`PendingClient::with_tracks`]) → send
//! [`PendingClient::offer`] to the server → [`PendingClient::connect`] with the answer →
//! [`Client::send_frame`] per frame; server offers (renegotiation) go to
//! [`Client::accept_offer`], whose answer goes back to the server.
//! A WHEP viewer: [`PendingClient::viewer`] (receive-only video and audio, a data channel),
//! then [`Client::received`] and [`Client::messages`]. Against a server that offers first
//! (Janus's subscribers): [`AnsweringClient`]. Congestion control: what the server tells
//! the client about its sending ([`Client::feedback`]: TWCC feedback, REMB), and what the
//! client tells the server about a track it receives ([`Client::send_remb`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{AbsCaptureTime, Extension};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::types::ABS_CAPTURE_TIME_ID;
use crate::MediaError;

/// A client that made its offer and waits for the answer.
pub struct PendingClient {
    rtc: Rtc,
    socket: UdpSocket,
    video: Vec<Mid>,
    audio: Option<Mid>,
    offer: String,
    pending: SdpPendingOffer,
}

/// One frame the client received from the server (a forwarded track).
#[derive(Clone, Debug)]
pub struct ReceivedFrame {
    pub mid: Mid,
    pub kind: MediaKind,
    pub rtp_timestamp: u32,
    pub data: Arc<[u8]>,
    /// When str0m handed it out (whole frame depacketised).
    pub at: Instant,
}

/// Congestion-control feedback the server sent about this client's sending.
#[derive(Clone, Debug, Default)]
pub struct Feedback {
    /// REMB received: (the sending mid it names, bit/s), in arrival order.
    pub remb: Vec<(Mid, u64)>,
    /// A round-trip time str0m measured from the server's TWCC feedback (None until
    /// TWCC feedback arrived).
    pub twcc_rtt: Option<Duration>,
}

enum ClientCmd {
    Frame { mid: Mid, rid: Option<Rid>, data: Arc<[u8]>, rtp_timestamp: u32, capture_time: Option<SystemTime> },
    Offer { sdp: String, reply: oneshot::Sender<Result<String, MediaError>> },
    Keyframe { mid: Mid },
    Remb { mid: Mid, bps: u64 },
    Receiving { reply: oneshot::Sender<Vec<(Mid, MediaKind)>> },
    IceRestart { reply: oneshot::Sender<Result<String, MediaError>> },
    RestartAnswer { sdp: String, reply: oneshot::Sender<Result<(), MediaError>> },
}

/// A connected client; dropping it ends its task (the server notices via idle timeout
/// or `unpublish`).
pub struct Client {
    cmd: mpsc::UnboundedSender<ClientCmd>,
    socket: Arc<UdpSocket>,
    video: Vec<Mid>,
    audio: Option<Mid>,
    keyframe_requests: Arc<AtomicU64>,
    keyframe_watch: watch::Receiver<u64>,
    received: Arc<Mutex<Vec<ReceivedFrame>>>,
    received_watch: watch::Receiver<u64>,
    messages: Arc<Mutex<Vec<String>>>,
    messages_watch: watch::Receiver<u64>,
    ice_connected: watch::Receiver<u64>,
    feedback: Arc<Mutex<Feedback>>,
    feedback_watch: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PendingClient {
    /// Binds a UDP socket on `ip` (any port) and offers one send-only H.264 video track
    /// (with abs-capture-time, as Callsight's web client negotiates it).
    pub async fn new(ip: IpAddr) -> Result<PendingClient, MediaError> {
        PendingClient::with_tracks(ip, 1, false).await
    }

    /// Offers `video` send-only H.264 tracks and, with `audio`, one send-only Opus track.
    pub async fn with_tracks(ip: IpAddr, video: usize, audio: bool) -> Result<PendingClient, MediaError> {
        PendingClient::offering(ip, |change| {
            let video: Vec<Mid> =
                (0..video).map(|_| change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None)).collect();
            let audio = audio.then(|| change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
            (video, audio)
        })
        .await
    }

    /// Offers one send-only H.264 video track in simulcast layers `rids` (send each
    /// layer's frames with [`Client::send_layer`]).
    pub async fn simulcast(ip: IpAddr, rids: &[&str]) -> Result<PendingClient, MediaError> {
        let mut layers = Simulcast::new();
        for rid in rids {
            layers.add_send_layer(SimulcastLayer::new(rid));
        }
        PendingClient::offering(ip, |change| {
            (vec![change.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(layers))], None)
        })
        .await
    }

    /// A WHEP player: offers one receive-only H.264 video and one receive-only Opus
    /// m-line and, with `channel`, a data channel with that label.
    pub async fn viewer(ip: IpAddr, channel: Option<&str>) -> Result<PendingClient, MediaError> {
        PendingClient::offering(ip, |change| {
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            if let Some(label) = channel {
                change.add_channel(label.to_owned());
            }
            (Vec::new(), None)
        })
        .await
    }

    /// Binds a socket and offers what `lines` adds (returns the sending video and audio mids).
    async fn offering(
        ip: IpAddr,
        lines: impl FnOnce(&mut str0m::change::SdpApi<'_>) -> (Vec<Mid>, Option<Mid>),
    ) -> Result<PendingClient, MediaError> {
        let (mut rtc, socket) = bind(ip).await?;
        let mut change = rtc.sdp_api();
        let (video, audio) = lines(&mut change);
        let (offer, pending) = change.apply().ok_or_else(|| MediaError::Rtc("no SDP change to offer".into()))?;
        Ok(PendingClient { rtc, socket, video, audio, offer: offer.to_sdp_string(), pending })
    }

    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// Applies the server's answer and waits (at most `timeout`) until ICE + DTLS are up.
    pub async fn connect(mut self, answer: &str, timeout: Duration) -> Result<Client, MediaError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| MediaError::Rtc(e.to_string()))?;
        self.rtc.sdp_api().accept_answer(self.pending, answer).map_err(|e| MediaError::Rtc(e.to_string()))?;
        let (client, connected) = start(self.rtc, Arc::new(self.socket), self.video, self.audio);
        until_connected(client, connected, timeout).await
    }
}

/// A client that answered a remote offer (an SFU that offers what it sends, as Janus does
/// for its subscribers): send [`AnsweringClient::answer`] back, then wait for
/// [`AnsweringClient::connected`].
pub struct AnsweringClient {
    client: Client,
    connected: watch::Receiver<bool>,
    answer: String,
}

impl AnsweringClient {
    /// Binds a UDP socket on `ip` (any port), accepts `offer` and starts the connection.
    pub async fn new(ip: IpAddr, offer: &str) -> Result<AnsweringClient, MediaError> {
        let (mut rtc, socket) = bind(ip).await?;
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
        let (client, connected) = start(rtc, Arc::new(socket), Vec::new(), None);
        Ok(AnsweringClient { client, connected, answer: answer.to_sdp_string() })
    }

    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// Waits (at most `timeout`) until ICE + DTLS are up.
    pub async fn connected(self, timeout: Duration) -> Result<Client, MediaError> {
        until_connected(self.client, self.connected, timeout).await
    }
}

/// A socket on `ip` (any port) and an `Rtc` with H.264, Opus and abs-capture-time, the
/// socket's address as its host candidate.
async fn bind(ip: IpAddr) -> Result<(Rtc, UdpSocket), MediaError> {
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|source| MediaError::Bind { addr: SocketAddr::new(ip, 0), source })?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .set_extension(ABS_CAPTURE_TIME_ID, Extension::AbsoluteCaptureTime)
        // PeerStats carry the RTT measured from TWCC feedback.
        .set_stats_interval(Some(Duration::from_millis(500)))
        .build(Instant::now());
    let cand = Candidate::host(local, "udp").map_err(|e| MediaError::Rtc(e.to_string()))?;
    rtc.add_local_candidate(cand);
    Ok((rtc, socket))
}

/// Spawns the client's loop; the receiver turns true once connected.
fn start(rtc: Rtc, socket: Arc<UdpSocket>, video: Vec<Mid>, audio: Option<Mid>) -> (Client, watch::Receiver<bool>) {
    let (cmd, cmd_rx) = mpsc::unbounded_channel();
    let (connected_tx, connected) = watch::channel(false);
    let (kf_tx, keyframe_watch) = watch::channel(0u64);
    let (rx_tx, received_watch) = watch::channel(0u64);
    let keyframe_requests = Arc::new(AtomicU64::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (messages_tx, messages_watch) = watch::channel(0u64);
    let messages = Arc::new(Mutex::new(Vec::new()));
    let (ice_tx, ice_connected) = watch::channel(0u64);
    let (feedback_tx, feedback_watch) = watch::channel(0u64);
    let feedback = Arc::new(Mutex::new(Feedback::default()));
    let task = tokio::spawn(
        Loop {
            rtc,
            socket: socket.clone(),
            connected: connected_tx,
            kf: kf_tx,
            kf_count: keyframe_requests.clone(),
            received: received.clone(),
            received_tx: rx_tx,
            added: Vec::new(),
            messages: messages.clone(),
            messages_tx,
            ice_connected: ice_tx,
            restart: None,
            feedback: feedback.clone(),
            feedback_tx,
        }
        .run(cmd_rx),
    );
    let client = Client {
        cmd,
        socket,
        video,
        audio,
        keyframe_requests,
        keyframe_watch,
        received,
        received_watch,
        messages,
        messages_watch,
        ice_connected,
        feedback,
        feedback_watch,
        task,
    };
    (client, connected)
}

async fn until_connected(
    client: Client,
    mut connected: watch::Receiver<bool>,
    timeout: Duration,
) -> Result<Client, MediaError> {
    tokio::time::timeout(timeout, connected.wait_for(|c| *c))
        .await
        .map_err(|_| MediaError::Rtc(format!("not connected within {timeout:?}")))?
        .map_err(|_| MediaError::Rtc("client task ended before connecting".into()))?;
    Ok(client)
}

impl Client {
    /// Sends one access unit (Annex-B) on the first video track, stamped with
    /// `rtp_timestamp` (90 kHz), and with abs-capture-time when `capture_time` is given.
    pub fn send_frame(&self, data: Arc<[u8]>, rtp_timestamp: u32, capture_time: Option<SystemTime>) {
        if let Some(mid) = self.video.first() {
            let _ = self.cmd.send(ClientCmd::Frame { mid: *mid, rid: None, data, rtp_timestamp, capture_time });
        }
    }

    /// Sends one access unit of simulcast layer `rid` on the first video track.
    pub fn send_layer(&self, rid: &str, data: Arc<[u8]>, rtp_timestamp: u32) {
        if let Some(mid) = self.video.first() {
            let rid = Some(Rid::from(rid));
            let _ = self.cmd.send(ClientCmd::Frame { mid: *mid, rid, data, rtp_timestamp, capture_time: None });
        }
    }

    /// Sends one access unit on video track `index` (in offer order).
    pub fn send_video(&self, index: usize, data: Arc<[u8]>, rtp_timestamp: u32) {
        if let Some(mid) = self.video.get(index) {
            let _ = self.cmd.send(ClientCmd::Frame { mid: *mid, rid: None, data, rtp_timestamp, capture_time: None });
        }
    }

    /// Sends one Opus packet (48 kHz RTP clock) on the audio track.
    pub fn send_audio(&self, data: Arc<[u8]>, rtp_timestamp: u32) {
        if let Some(mid) = self.audio {
            let _ = self.cmd.send(ClientCmd::Frame { mid, rid: None, data, rtp_timestamp, capture_time: None });
        }
    }

    /// Applies a server offer (renegotiation) and returns the answer to send back.
    pub async fn accept_offer(&self, sdp: &str) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(ClientCmd::Offer { sdp: sdp.to_owned(), reply }).map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Asks the server for a keyframe of a received video track (PLI).
    pub fn request_keyframe(&self, mid: Mid) {
        let _ = self.cmd.send(ClientCmd::Keyframe { mid });
    }

    /// Tells the server (REMB on received track `mid`) that this client takes at most
    /// `bps` bit/s of it: a subscriber's constrained downlink.
    pub fn send_remb(&self, mid: Mid, bps: u64) {
        let _ = self.cmd.send(ClientCmd::Remb { mid, bps });
    }

    /// What the server told this client about its sending so far.
    pub fn feedback(&self) -> Feedback {
        self.feedback.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes on every REMB and on the first TWCC-based RTT.
    pub fn feedback_watch(&self) -> watch::Receiver<u64> {
        self.feedback_watch.clone()
    }

    /// The tracks the server currently sends to this client (negotiated, not stopped).
    pub async fn receiving(&self) -> Vec<(Mid, MediaKind)> {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(ClientCmd::Receiving { reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Frames received so far (forwarded tracks).
    pub fn received(&self) -> Vec<ReceivedFrame> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the frames received so far (they are not kept any more): for long runs.
    pub fn take_received(&self) -> Vec<ReceivedFrame> {
        std::mem::take(&mut *self.received.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes on every received frame.
    pub fn received_watch(&self) -> watch::Receiver<u64> {
        self.received_watch.clone()
    }

    /// Text messages received on data channels so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes on every data channel message received.
    pub fn messages_watch(&self) -> watch::Receiver<u64> {
        self.messages_watch.clone()
    }

    /// Sends raw bytes from this client's own socket (fault injection).
    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) -> std::io::Result<usize> {
        self.socket.send_to(bytes, to).await
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// PLI/FIR received from the server so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Relaxed)
    }

    /// Changes on every keyframe request received.
    pub fn keyframe_watch(&self) -> watch::Receiver<u64> {
        self.keyframe_watch.clone()
    }

    /// Starts an ICE restart (new credentials, the same candidates) and returns the SDP
    /// offer str0m makes for it: a WHIP client sends its ICE lines by `PATCH`.
    pub async fn ice_restart(&self) -> Result<String, MediaError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(ClientCmd::IceRestart { reply }).map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Completes an ICE restart with the answer (SDP) to [`Client::ice_restart`]'s offer.
    pub async fn accept_restart_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(ClientCmd::RestartAnswer { sdp: sdp.to_owned(), reply }).map_err(|_| MediaError::Stopped)?;
        rx.await.map_err(|_| MediaError::Stopped)?
    }

    /// Counts ICE reaching the connected (or completed) state: again after each ICE restart.
    pub fn ice_connected_watch(&self) -> watch::Receiver<u64> {
        self.ice_connected.clone()
    }

    /// False once the client's task has ended (connection failed or closed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

struct Loop {
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    connected: watch::Sender<bool>,
    kf: watch::Sender<u64>,
    kf_count: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<ReceivedFrame>>>,
    received_tx: watch::Sender<u64>,
    /// Every m-line str0m announced (the server's included).
    added: Vec<Mid>,
    messages: Arc<Mutex<Vec<String>>>,
    messages_tx: watch::Sender<u64>,
    ice_connected: watch::Sender<u64>,
    /// The offer of an ICE restart in progress.
    restart: Option<SdpPendingOffer>,
    feedback: Arc<Mutex<Feedback>>,
    feedback_tx: watch::Sender<u64>,
}

impl Loop {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<ClientCmd>) {
        let Ok(local) = self.socket.local_addr() else { return };
        let mut buf = vec![0u8; 2048];
        loop {
            let Some(deadline) = self.drain() else { return };
            tokio::select! {
                cmd = cmd_rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.command(cmd);
                }
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, source)) = r else { continue };
                    let Ok(contents) = buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    let _ = self.rtc.handle_input(input);
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if self.rtc.handle_input(Input::Timeout(Instant::now())).is_err() { return; }
                }
            }
        }
    }

    /// Polls until str0m waits; None when the connection failed.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        let _ = self.connected.send(true);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed) => {
                        self.ice_connected.send_modify(|n| *n += 1);
                    }
                    Event::KeyframeRequest(_) => {
                        let n = self.kf_count.fetch_add(1, Relaxed) + 1;
                        let _ = self.kf.send(n);
                    }
                    Event::MediaAdded(m) => self.added.push(m.mid),
                    Event::EgressBitrateEstimate(BweKind::Remb { estimate, mid }) => {
                        self.feedback.lock().unwrap_or_else(|e| e.into_inner()).remb.push((mid, estimate.as_u64()));
                        self.feedback_tx.send_modify(|n| *n += 1);
                    }
                    Event::PeerStats(s) if s.rtt.is_some() => {
                        let first = {
                            let mut f = self.feedback.lock().unwrap_or_else(|e| e.into_inner());
                            let first = f.twcc_rtt.is_none();
                            f.twcc_rtt = s.rtt;
                            first
                        };
                        if first {
                            self.feedback_tx.send_modify(|n| *n += 1);
                        }
                    }
                    Event::ChannelData(d) if !d.binary => {
                        let n = {
                            let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
                            m.push(String::from_utf8_lossy(&d.data).into_owned());
                            m.len() as u64
                        };
                        let _ = self.messages_tx.send(n);
                    }
                    Event::MediaData(d) => {
                        let kind = self.rtc.media(d.mid).map_or(MediaKind::Video, |m| m.kind());
                        let f = ReceivedFrame {
                            mid: d.mid,
                            kind,
                            rtp_timestamp: d.time.numer() as u32,
                            data: d.data,
                            at: Instant::now(),
                        };
                        let n = {
                            let mut r = self.received.lock().unwrap_or_else(|e| e.into_inner());
                            r.push(f);
                            r.len() as u64
                        };
                        let _ = self.received_tx.send(n);
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!("client failed: {e}");
                    return None;
                }
            }
        }
    }

    fn command(&mut self, cmd: ClientCmd) {
        match cmd {
            ClientCmd::Frame { mid, rid, data, rtp_timestamp, capture_time } => {
                let rate =
                    if self.rtc.media(mid).is_some_and(|m| m.kind() == MediaKind::Audio) { 48_000 } else { 90_000 };
                let Some(w) = self.rtc.writer(mid) else { return };
                let Some(pt) =
                    w.payload_params().find(|p| matches!(p.spec().codec, Codec::H264 | Codec::Opus)).map(|p| p.pt())
                else {
                    return;
                };
                let w = match rid {
                    Some(rid) => w.rid(rid),
                    None => w,
                };
                let w = match capture_time {
                    Some(t) => w.abs_capture_time(AbsCaptureTime { capture_time: t, clock_offset: None }),
                    None => w,
                };
                let time = MediaTime::new(
                    rtp_timestamp as u64,
                    if rate == 48_000 { Frequency::FORTY_EIGHT_KHZ } else { Frequency::NINETY_KHZ },
                );
                if let Err(e) = w.write(pt, Instant::now(), time, data) {
                    tracing::debug!("write failed: {e}");
                }
            }
            ClientCmd::Offer { sdp, reply } => {
                let r = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| MediaError::BadOffer(e.to_string()))
                    .and_then(|o| self.rtc.sdp_api().accept_offer(o).map_err(|e| MediaError::Rejected(e.to_string())))
                    .map(|a| a.to_sdp_string());
                let _ = reply.send(r);
            }
            ClientCmd::IceRestart { reply } => {
                let mut api = self.rtc.sdp_api();
                api.ice_restart(true);
                let r = match api.apply() {
                    Some((offer, pending)) => {
                        self.restart = Some(pending);
                        Ok(offer.to_sdp_string())
                    }
                    None => Err(MediaError::Rtc("no ICE restart offer".into())),
                };
                let _ = reply.send(r);
            }
            ClientCmd::RestartAnswer { sdp, reply } => {
                let r = match self.restart.take() {
                    None => Err(MediaError::Rtc("no ICE restart in progress".into())),
                    Some(pending) => {
                        SdpAnswer::from_sdp_string(&sdp).map_err(|e| MediaError::Rtc(e.to_string())).and_then(|a| {
                            self.rtc.sdp_api().accept_answer(pending, a).map_err(|e| MediaError::Rtc(e.to_string()))
                        })
                    }
                };
                let _ = reply.send(r);
            }
            ClientCmd::Remb { mid, bps } => {
                if let Some(stream) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
                    stream.request_remb(Bitrate::bps(bps));
                }
            }
            ClientCmd::Keyframe { mid } => {
                if let Some(mut w) = self.rtc.writer(mid) {
                    let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                }
            }
            ClientCmd::Receiving { reply } => {
                let rtc = &self.rtc;
                let mids: Vec<(Mid, MediaKind)> = self
                    .added
                    .iter()
                    .filter_map(|mid| rtc.media(*mid))
                    .filter(|m| m.direction().is_receiving() && !m.disabled())
                    .map(|m| (m.mid(), m.kind()))
                    .collect();
                let _ = reply.send(mids);
            }
        }
    }
}

//! A publishing WebRTC peer built on str0m: what a browser's send-only connection does,
//! minus the browser. Tests and `media-load` publish H.264 to a [`crate::MediaHub`] with it
//! over real UDP.
//!
//! Usage: [`PendingPublisher::new`] → send [`PendingPublisher::offer`] to the server →
//! [`PendingPublisher::connect`] with the answer → [`Publisher::send_frame`] per frame.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{AbsCaptureTime, Extension};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::types::ABS_CAPTURE_TIME_ID;
use crate::MediaError;

/// A client that made its offer and waits for the answer.
pub struct PendingPublisher {
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    mid: Mid,
    offer: String,
    pending: SdpPendingOffer,
}

enum ClientCmd {
    Frame { data: Arc<[u8]>, rtp_timestamp: u32, capture_time: Option<SystemTime> },
}

/// A connected publisher; dropping it ends its task (the server notices via idle timeout
/// or `unpublish`).
pub struct Publisher {
    cmd: mpsc::UnboundedSender<ClientCmd>,
    socket: Arc<UdpSocket>,
    keyframe_requests: Arc<AtomicU64>,
    keyframe_watch: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PendingPublisher {
    /// Binds a UDP socket on `ip` (any port) and makes a send-only H.264 video offer
    /// (with abs-capture-time, as Callsight's web client negotiates it).
    pub async fn new(ip: IpAddr) -> Result<PendingPublisher, MediaError> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .map_err(|source| MediaError::Bind { addr: SocketAddr::new(ip, 0), source })?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .set_extension(ABS_CAPTURE_TIME_ID, Extension::AbsoluteCaptureTime)
            .build(Instant::now());
        let cand = Candidate::host(local, "udp").map_err(|e| MediaError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(cand);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().ok_or_else(|| MediaError::Rtc("no SDP change to offer".into()))?;
        Ok(PendingPublisher { rtc, socket: Arc::new(socket), mid, offer: offer.to_sdp_string(), pending })
    }

    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// Applies the server's answer and waits (at most `timeout`) until ICE + DTLS are up.
    pub async fn connect(mut self, answer: &str, timeout: Duration) -> Result<Publisher, MediaError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| MediaError::Rtc(e.to_string()))?;
        self.rtc.sdp_api().accept_answer(self.pending, answer).map_err(|e| MediaError::Rtc(e.to_string()))?;
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (connected_tx, mut connected) = watch::channel(false);
        let (kf_tx, keyframe_watch) = watch::channel(0u64);
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(client_loop(
            self.rtc,
            self.socket.clone(),
            self.mid,
            cmd_rx,
            connected_tx,
            kf_tx,
            keyframe_requests.clone(),
        ));
        let publisher = Publisher { cmd, socket: self.socket, keyframe_requests, keyframe_watch, task };
        tokio::time::timeout(timeout, connected.wait_for(|c| *c))
            .await
            .map_err(|_| MediaError::Rtc(format!("not connected within {timeout:?}")))?
            .map_err(|_| MediaError::Rtc("client task ended before connecting".into()))?;
        Ok(publisher)
    }
}

impl Publisher {
    /// Sends one access unit (Annex-B) stamped with `rtp_timestamp` (90 kHz), and with
    /// abs-capture-time when `capture_time` is given.
    pub fn send_frame(&self, data: Arc<[u8]>, rtp_timestamp: u32, capture_time: Option<SystemTime>) {
        let _ = self.cmd.send(ClientCmd::Frame { data, rtp_timestamp, capture_time });
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

    /// False once the client's task has ended (connection failed or closed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

async fn client_loop(
    mut rtc: Rtc,
    socket: Arc<UdpSocket>,
    mid: Mid,
    mut cmd_rx: mpsc::UnboundedReceiver<ClientCmd>,
    connected: watch::Sender<bool>,
    kf: watch::Sender<u64>,
    kf_count: Arc<AtomicU64>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut buf = vec![0u8; 2048];
    let mut pt = None;
    loop {
        // Drain outputs until str0m waits.
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        pt = rtc
                            .writer(mid)
                            .and_then(|w| w.payload_params().find(|p| p.spec().codec == Codec::H264).map(|p| p.pt()));
                        let _ = connected.send(true);
                    }
                    Event::KeyframeRequest(_) => {
                        let n = kf_count.fetch_add(1, Relaxed) + 1;
                        let _ = kf.send(n);
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!("publisher client failed: {e}");
                    return;
                }
            }
        };
        tokio::select! {
            cmd = cmd_rx.recv() => {
                let Some(ClientCmd::Frame { data, rtp_timestamp, capture_time }) = cmd else { return };
                let (Some(pt), Some(w)) = (pt, rtc.writer(mid)) else { continue };
                let w = match capture_time {
                    Some(t) => w.abs_capture_time(AbsCaptureTime { capture_time: t, clock_offset: None }),
                    None => w,
                };
                if let Err(e) = w.write(pt, Instant::now(), MediaTime::from_90khz(rtp_timestamp as u64), data) {
                    tracing::debug!("write failed: {e}");
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                if rtc.handle_input(input).is_err() { continue; }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() { return; }
            }
        }
    }
}

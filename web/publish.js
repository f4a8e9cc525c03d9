// The connection to the server (docs/protocol.md): one RTCPeerConnection that publishes
// our camera (or the screen while sharing) and, via the server, our microphone, and —
// when the room runs via the server — receives every other participant's tracks.
//
// H.264 constrained baseline with packetization-mode=1 is forced with
// setCodecPreferences, and the abs-capture-time header extension is switched on,
// so the server learns the capture instant of each frame (docs/sync.md). No trickle:
// the offer is sent once ICE gathering is complete. The server renegotiates with
// `offer {sdp, tracks}` as others' tracks come and go; we answer (perfect negotiation:
// the server is the polite side, we ignore its offer while ours is outstanding).
//
// Simulcast: the camera goes out as three H.264 encodings (SIMULCAST: rids q, h, f at
// ¼, ½ and full resolution, lowest first; fewer for a small camera, see
// simulcastEncodings); the server forwards to each subscriber the
// layer that fits the tile it is shown in, which this page tells it for every video it
// receives (`track-settings`, viewsize.js). A screen share is one encoding: switching
// between camera and screen publishes again with the other layout.
//
// Events: state {detail: 'publishing'|'connecting'|'failed'|'stopped'|'unavailable'|'forbidden'}
//         remote {detail: participant ids whose received stream changed}

import { ViewSizes } from './viewsize.js';

const ABS_CAPTURE_TIME = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';
const GATHER_TIMEOUT_MS = 3000;
const RETRY_MS = 3000;

/**
 * The camera's simulcast encodings, lowest first: 320×180, 640×360 and 1280×720 for a
 * 1280×720 camera.
 */
export const SIMULCAST = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

/**
 * The encodings for a camera of this size. Chromium encodes at most 3 simulcast layers
 * from 960×540 pixels up, 2 from 480×270, 1 below (its simulcast layer limit), and
 * drops the *top* encodings beyond that: a 640×480 camera given q, h, f would send only
 * 160×120 and 320×240. So a smaller camera gets h and f (½, full), a tiny one a single
 * encoding (null: no simulcast). Unknown size: all three.
 */
export function simulcastEncodings(width, height) {
  const px = width > 0 && height > 0 ? width * height : Infinity;
  if (px >= 960 * 540) return SIMULCAST.map((e) => ({ ...e }));
  if (px >= 480 * 270) return SIMULCAST.slice(1).map((e) => ({ ...e }));
  return null;
}

/** The layout a video track is published with: its rids ('' = one encoding). */
function layoutOf(track, isScreen) {
  if (!track || isScreen(track)) return '';
  const { width, height } = track.getSettings?.() ?? {};
  return (simulcastEncodings(width, height) ?? []).map((e) => e.rid).join(',');
}

/** H.264 entries the server decodes: constrained baseline, packetization-mode=1. */
export function h264Codecs(capabilities) {
  const codecs = capabilities?.codecs ?? [];
  const h264 = codecs.filter((c) => {
    if (c.mimeType.toLowerCase() !== 'video/h264') return false;
    const fmtp = c.sdpFmtpLine ?? '';
    return /packetization-mode=1/.test(fmtp) && /profile-level-id=42(e0|00)1f/i.test(fmtp);
  });
  // Keep RTX/RED/FEC-free: the server only needs plain H.264 (NACK works without RTX).
  return h264.sort((a, b) => (/42e01f/i.test(b.sdpFmtpLine) ? 1 : 0) - (/42e01f/i.test(a.sdpFmtpLine) ? 1 : 0));
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    // Host candidates are enough for the server; don't wait forever on a slow interface.
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', onChange);
  });
}

/** The valid entries of a server `offer`'s `tracks`: mid → {participant, track, kind}. */
export function parseTracks(tracks) {
  const out = new Map();
  for (const t of Array.isArray(tracks) ? tracks.slice(0, 256) : []) {
    if (!t || typeof t.mid !== 'string' || typeof t.participant !== 'string') continue;
    if (t.kind !== 'video' && t.kind !== 'audio') continue;
    out.set(t.mid, { participant: t.participant, track: String(t.track ?? ''), kind: t.kind });
  }
  return out;
}

export class Publisher extends EventTarget {
  /**
   * @param {object} o
   * @param {(msg: object) => boolean} o.send sends a signaling message
   * @param {() => MediaStreamTrack|null} o.videoTrack the video to publish now
   * @param {() => MediaStreamTrack|null} [o.audioTrack] the microphone, sent when subscribing
   * @param {() => RTCIceServer[]} [o.iceServers] this participant's ICE servers (from `joined`)
   * @param {(track: MediaStreamTrack) => boolean} [o.isScreen] the track is a screen
   *   share (sent as one encoding; a camera is sent as SIMULCAST layers)
   */
  constructor({ send, videoTrack, audioTrack = () => null, iceServers = () => [], isScreen = () => false }) {
    super();
    this.send = send;
    this.iceServers = iceServers;
    this.videoTrack = videoTrack;
    this.audioTrack = audioTrack;
    this.isScreen = isScreen;
    /** The video sender's layout: its rids, comma-separated ('' = one encoding). */
    this.layout = '';
    /** What the server is told about how large each received video is shown. */
    this.viewSizes = new ViewSizes({ send: (m) => this.send(m) });
    this.pc = null;
    this.sender = null;
    this.audioSender = null;
    this.state = 'stopped';
    this.generation = 0;
    this.retryTimer = null;
    this.stopped = true;
    /** The room runs via the server: also send audio and receive the others. */
    this.subscribe = false;
    /** The server may analyse our video. */
    this.analyse = true;
    /** mid → {participant, track, kind}, from the server's last offer. */
    this.tracks = new Map();
    /** participant id → the MediaStream of its tracks received from the server. */
    this.streams = new Map();
    this.queue = Promise.resolve();
  }

  /**
   * (Re)starts the connection; a previous one is closed first.
   * @param {{subscribe?: boolean, analyse?: boolean}} [o]
   */
  async start({ subscribe = this.subscribe, analyse = this.analyse } = {}) {
    this.stopped = false;
    this.subscribe = subscribe;
    this.analyse = analyse;
    clearTimeout(this.retryTimer);
    this.#closePc();
    const track = this.videoTrack();
    if (!track && !subscribe) {
      this.#setState('stopped');
      return;
    }
    const gen = ++this.generation;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers(), bundlePolicy: 'max-bundle' });
    this.pc = pc;
    this.#setState('connecting');
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc !== pc) return;
      const s = pc.connectionState;
      if (s === 'connected') this.#setState('publishing');
      else if (s === 'failed') this.#retryLater('connection failed');
    });
    pc.addEventListener('track', ({ track: t, transceiver }) => {
      if (this.pc === pc) this.#received(t, transceiver.mid);
    });
    try {
      // The video m-line exists even without a camera, so the server always gets one.
      this.layout = layoutOf(track, this.isScreen);
      const init = { direction: track ? 'sendonly' : 'inactive' };
      if (this.layout) {
        const { width, height } = track.getSettings?.() ?? {};
        init.sendEncodings = simulcastEncodings(width, height);
      }
      const tr = pc.addTransceiver(track ?? 'video', init);
      this.sender = tr.sender;
      const prefs = h264Codecs(RTCRtpReceiver.getCapabilities('video'));
      if (prefs.length === 0) throw new Error('this browser offers no H.264 (packetization-mode=1)');
      tr.setCodecPreferences(prefs);
      if (typeof tr.getHeaderExtensionsToNegotiate === 'function') {
        const exts = tr.getHeaderExtensionsToNegotiate().map((e) =>
          e.uri === ABS_CAPTURE_TIME ? { ...e, direction: 'sendrecv' } : e,
        );
        tr.setHeaderExtensionsToNegotiate(exts);
      }
      const audio = subscribe ? this.audioTrack() : null;
      if (audio) this.audioSender = pc.addTransceiver(audio, { direction: 'sendonly' }).sender;
      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc, GATHER_TIMEOUT_MS);
      if (gen !== this.generation) return;
      const msg = { type: 'publish', sdp: pc.localDescription.sdp };
      if (subscribe) Object.assign(msg, { subscribe: true, analyse });
      if (!this.send(msg)) this.#retryLater('signaling is down');
    } catch (err) {
      console.warn('publish: cannot start', err);
      if (gen === this.generation) this.#setState('failed');
    }
  }

  /**
   * The server's `publish-answer`. Serialised with its offers: an offer the server makes
   * once the session is up can arrive before the answer's `setRemoteDescription` resolved,
   * and must then wait for it rather than find the connection not `stable`.
   */
  handleAnswer(sdp) {
    this.queue = this.queue
      .then(() => this.#applyAnswer(sdp))
      .catch((err) => console.warn('publish: answer failed', err));
    return this.queue;
  }

  async #applyAnswer(sdp) {
    const pc = this.pc;
    if (!pc || typeof sdp !== 'string' || pc.signalingState !== 'have-local-offer') return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      console.warn('publish: bad answer', err);
      this.#retryLater('bad answer');
    }
  }

  /** The server's renegotiation `offer`: others' tracks came or went. Serialised. */
  handleOffer(sdp, tracks) {
    this.queue = this.queue
      .then(() => this.#applyOffer(sdp, tracks))
      .catch((err) => console.warn('publish: server offer failed', err));
    return this.queue;
  }

  async #applyOffer(sdp, tracks) {
    const pc = this.pc;
    // Ours is outstanding: a new publish replaced the session this offer came from (the
    // new session makes its own offers once it is connected).
    if (!pc || typeof sdp !== 'string') return;
    if (pc.signalingState !== 'stable') {
      console.info(`publish: server offer ignored in signaling state ${pc.signalingState}`);
      return;
    }
    this.tracks = parseTracks(tracks);
    try {
      // The server sends an offer again, unchanged, when our answer did not reach it:
      // applying it again changes nothing and answers it again.
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription();
    } catch (err) {
      // Our state and the server's disagree: start over with a fresh connection.
      console.warn('publish: cannot apply the server offer', err);
      if (this.pc === pc) this.#retryLater('server offer failed');
      return;
    }
    this.send({ type: 'answer', sdp: pc.localDescription.sdp });
    this.#prune();
    // After the answer (the server knows the mids then): every tile's size, again.
    this.viewSizes.setMids(this.#shownMids());
  }

  /** mid → the participant shown from it, for every received video (null: not shown). */
  #shownMids() {
    const out = new Map();
    for (const t of this.pc?.getTransceivers() ?? []) {
      const info = this.tracks.get(t.mid);
      if (!info || info.kind !== 'video' || t.stopped || t.currentDirection === 'stopped') continue;
      const shown = this.streams.get(info.participant)?.getTracks().includes(t.receiver.track);
      out.set(t.mid, shown ? info.participant : null);
    }
    return out;
  }

  /**
   * How large `participant`'s video is shown here, in device pixels (0×0: not shown).
   * Told to the server once settled, for the simulcast layer it forwards.
   */
  setViewSize(participant, width, height) {
    this.viewSizes.measure(participant, width, height);
  }

  /** `participant`'s tile is gone. */
  forgetViewSize(participant) {
    this.viewSizes.forget(participant);
  }

  /** A track arrived on m-line `mid`: into its publisher's stream. */
  #received(track, mid) {
    const info = this.tracks.get(mid);
    if (!info) return;
    let stream = this.streams.get(info.participant);
    if (!stream) this.streams.set(info.participant, (stream = new MediaStream()));
    for (const old of stream.getTracks()) if (old.kind === track.kind && old !== track) stream.removeTrack(old);
    if (!stream.getTracks().includes(track)) stream.addTrack(track);
    this.#changed([info.participant]);
  }

  /** Drops the received tracks the server no longer sends (their publisher left). */
  #prune() {
    const live = new Set();
    for (const t of this.pc?.getTransceivers() ?? []) {
      if (t.currentDirection !== 'stopped' && !t.stopped && this.tracks.has(t.mid)) live.add(t.receiver.track);
    }
    const changed = [];
    for (const [participant, stream] of this.streams) {
      for (const t of stream.getTracks()) {
        if (!live.has(t)) {
          stream.removeTrack(t);
          changed.push(participant);
        }
      }
      if (stream.getTracks().length === 0) this.streams.delete(participant);
    }
    // Tracks whose mids were just named (the `track` event came before the offer's list).
    for (const t of this.pc?.getTransceivers() ?? []) {
      const info = this.tracks.get(t.mid);
      if (info && live.has(t.receiver.track) && !this.streams.get(info.participant)?.getTracks().includes(t.receiver.track)) {
        this.#received(t.receiver.track, t.mid);
      }
    }
    if (changed.length) this.#changed(changed);
  }

  #changed(ids) {
    this.dispatchEvent(new CustomEvent('remote', { detail: [...new Set(ids)] }));
  }

  /** The stream received from the server for `participant`, or null. */
  streamOf(participant) {
    return this.streams.get(participant) ?? null;
  }

  /**
   * The server refused media for this session: `media-unavailable` (no media leg) or
   * `forbidden` (the access token does not allow publishing). Stops until start().
   */
  unavailable(why = 'unavailable') {
    this.stop();
    this.#setState(why === 'forbidden' ? 'forbidden' : 'unavailable');
  }

  async replaceTrack(track) {
    // Camera ↔ screen, or a camera of another size, changes the layers: publish again.
    const sameLayout = track === null || layoutOf(track, this.isScreen) === this.layout;
    if (this.sender && this.sender.track !== null && sameLayout) await this.sender.replaceTrack(track);
    else if (!this.stopped) await this.start();
  }

  async replaceAudio(track) {
    if (this.audioSender) await this.audioSender.replaceTrack(track);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.generation += 1;
    this.#closePc();
    this.#setState('stopped');
  }

  get mid() {
    return this.pc?.getTransceivers()[0]?.mid ?? null;
  }

  #closePc() {
    this.viewSizes.reset();
    if (this.pc) {
      this.pc.close();
      this.pc = null;
      this.sender = null;
      this.audioSender = null;
    }
    const had = [...this.streams.keys()];
    this.streams.clear();
    this.tracks.clear();
    if (had.length) this.#changed(had);
  }

  #retryLater(why) {
    if (this.stopped) return;
    console.info(`publish: ${why}; retrying in ${RETRY_MS} ms`);
    this.#setState('failed');
    this.#closePc();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.start();
    }, RETRY_MS);
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }
}

// The server leg: a second, send-only RTCPeerConnection that publishes our video
// (camera, or the screen while sharing) to the server for detection.
//
// H.264 constrained baseline with packetization-mode=1 is forced with
// setCodecPreferences, and the abs-capture-time header extension is switched on,
// so the server learns the capture instant of each frame (docs/sync.md). No trickle:
// the offer is sent once ICE gathering is complete.
//
// Events: state {detail: 'publishing'|'connecting'|'failed'|'stopped'|'unavailable'|'forbidden'}

const ABS_CAPTURE_TIME = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';
const GATHER_TIMEOUT_MS = 3000;
const RETRY_MS = 3000;

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

export class Publisher extends EventTarget {
  /**
   * @param {object} o
   * @param {(msg: object) => boolean} o.send sends a signaling message
   * @param {() => MediaStreamTrack|null} o.videoTrack the track to publish now
   * @param {() => RTCIceServer[]} [o.iceServers] this participant's ICE servers (from `joined`)
   */
  constructor({ send, videoTrack, iceServers = () => [] }) {
    super();
    this.send = send;
    this.iceServers = iceServers;
    this.videoTrack = videoTrack;
    this.pc = null;
    this.sender = null;
    this.state = 'stopped';
    this.generation = 0;
    this.retryTimer = null;
    this.stopped = true;
  }

  /** (Re)starts publishing; a previous server leg is closed first. */
  async start() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    this.#closePc();
    const track = this.videoTrack();
    if (!track) {
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
    try {
      const tr = pc.addTransceiver(track, { direction: 'sendonly' });
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
      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc, GATHER_TIMEOUT_MS);
      if (gen !== this.generation) return;
      if (!this.send({ type: 'publish', sdp: pc.localDescription.sdp })) {
        this.#retryLater('signaling is down');
      }
    } catch (err) {
      console.warn('publish: cannot start', err);
      if (gen === this.generation) this.#setState('failed');
    }
  }

  /** Applies the server's `publish-answer`. */
  async handleAnswer(sdp) {
    const pc = this.pc;
    if (!pc || typeof sdp !== 'string' || pc.signalingState !== 'have-local-offer') return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      console.warn('publish: bad answer', err);
      this.#retryLater('bad answer');
    }
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
    if (this.sender) await this.sender.replaceTrack(track);
    else if (track && !this.stopped) await this.start();
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
    if (this.pc) {
      this.pc.close();
      this.pc = null;
      this.sender = null;
    }
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

// One RTCPeerConnection to one remote participant, with the "perfect negotiation"
// pattern (politeness rule in docs/protocol.md), a negotiated `chat` data channel,
// and ICE restart on network trouble.
//
// Events:
//   signal {detail}   data to relay to the remote peer (`{sid, description}` / `{sid, candidate}`)
//   track  {detail}   the remote MediaStream changed
//   state  {detail}   'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed'
//   chat   {detail}   a chat text arrived: {text, at}
//   name              the peer changed its display name (see .name)
//   channel           the data channel opened or closed (see .canChat)
//   clock             a better clock-offset estimate is available (see .clockOffsetMs)
//   analysis          the peer turned server analysis on or off (see .analysis)

const DISCONNECTED_GRACE_MS = 1500;
const PING_EVERY_MS = 3000;

function randomSid() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export class PeerLink extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.id remote peer id
   * @param {string} o.name remote display name
   * @param {boolean} o.polite this side yields on offer glare
   * @param {boolean} o.initiator this side adds its tracks now and offers; otherwise it
   *   waits for the remote offer and attaches its tracks while answering it
   * @param {RTCIceServer[]} o.iceServers
   * @param {() => MediaStreamTrack[]} o.localTracks the tracks to send (camera or screen, mic)
   * @param {MediaStream|null} o.localStream
   */
  constructor({ id, name, polite, initiator, iceServers, localTracks, localStream }) {
    super();
    this.id = id;
    this.name = name || '';
    this.polite = polite;
    this.sid = randomSid(); // names this connection, so a remote restart is noticed
    this.remoteSid = null;
    this.localTracks = localTracks;
    this.localStream = localStream;
    this.remoteStream = new MediaStream();
    this.state = 'connecting';
    this.closed = false;
    this.attached = false;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.queue = Promise.resolve();
    this.restartTimer = null;
    this.pingTimer = null;
    this.clockOffsetMs = null; // remote wall clock − local wall clock
    this.analysis = false; // the peer lets the server analyse its video
    this.everConnected = false; // set by the call once the connection was up
    this.bestRtt = Infinity;

    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.#wire();
    if (initiator) this.#attachLocal();
  }

  get canChat() {
    return this.chat !== undefined && this.chat.readyState === 'open';
  }

  /** Handles `data` of a `signal` from this peer. Serialised: one message at a time. */
  handleSignal(data) {
    this.queue = this.queue.then(() => this.#handle(data)).catch((err) => {
      console.warn(`peer ${this.id}: signal handling failed`, err);
    });
    return this.queue;
  }

  sendChat(text) {
    if (!this.canChat) return false;
    this.chat.send(JSON.stringify({ kind: 'chat', text }));
    return true;
  }

  sendName(name) {
    if (this.canChat) this.chat.send(JSON.stringify({ kind: 'name', name }));
  }

  /** Tells the peer whether the server may analyse our video (the topology rule needs it). */
  sendAnalysis(on) {
    if (this.canChat) this.chat.send(JSON.stringify({ kind: 'analysis', on: Boolean(on) }));
  }

  /** Stops sending media on this connection (the call runs via the server); chat stays. */
  async stopMedia() {
    for (const t of this.pc.getTransceivers()) {
      if (t.sender?.track && t.currentDirection !== 'stopped') await t.sender.replaceTrack(null);
    }
  }

  /** Swaps the outgoing video (camera ↔ screen) without renegotiation. */
  async replaceVideo(track) {
    for (const t of this.pc.getTransceivers()) {
      if (t.receiver.track.kind === 'video' && t.sender && t.currentDirection !== 'stopped') {
        await t.sender.replaceTrack(track);
      }
    }
  }

  /**
   * After the signaling socket came back: an offer sent while it was down was lost, so
   * send it again (its SDP now holds every gathered candidate); a connection that is
   * not up gets an ICE restart.
   */
  resume() {
    if (this.closed) return;
    if (this.pc.signalingState === 'have-local-offer' && this.pc.localDescription) {
      this.#send({ description: this.pc.localDescription.toJSON() });
    } else if (this.state !== 'connected') {
      this.restartIce();
    }
  }

  restartIce() {
    if (this.closed) return;
    console.info(`peer ${this.id}: ICE restart`);
    this.pc.restartIce();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.pingTimer);
    try {
      if (this.canChat) this.chat.send(JSON.stringify({ kind: 'bye' }));
    } catch {
      // best effort only
    }
    this.pc.close();
    this.#setState('closed');
  }

  #send(payload) {
    if (this.closed) return;
    this.dispatchEvent(new CustomEvent('signal', { detail: { sid: this.sid, ...payload } }));
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  // Adds our tracks and the chat channel. The answering side does this while applying
  // the first remote offer, so addTrack reuses the offered transceivers and no second
  // offer (glare) is provoked.
  #attachLocal() {
    if (this.attached) return;
    this.attached = true;
    const tracks = this.localTracks();
    for (const kind of ['audio', 'video']) {
      const track = tracks.find((t) => t.kind === kind);
      if (track) {
        this.pc.addTrack(track, this.localStream ?? new MediaStream([track]));
      } else if (!this.pc.getTransceivers().some((t) => t.receiver.track.kind === kind)) {
        // Nothing to send (no camera/mic) but still receive the other side.
        this.pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
    this.chat = this.pc.createDataChannel('chat', { negotiated: true, id: 0 });
    this.chat.addEventListener('open', () => {
      this.dispatchEvent(new Event('channel'));
      this.#ping();
      this.pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
    });
    this.chat.addEventListener('close', () => {
      clearInterval(this.pingTimer);
      this.dispatchEvent(new Event('channel'));
    });
    this.chat.addEventListener('message', (ev) => this.#onChannelMessage(ev.data));
  }

  #onChannelMessage(raw) {
    if (typeof raw !== 'string' || raw.length > 16_384) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if (msg.kind === 'chat' && typeof msg.text === 'string') {
      this.dispatchEvent(new CustomEvent('chat', { detail: { text: msg.text.slice(0, 2000), at: Date.now() } }));
    } else if (msg.kind === 'ping' && Number.isFinite(msg.a)) {
      if (this.canChat) this.chat.send(JSON.stringify({ kind: 'pong', a: msg.a, b: Date.now() }));
    } else if (msg.kind === 'pong' && Number.isFinite(msg.a) && Number.isFinite(msg.b)) {
      // NTP-style estimate; the lowest round trip gives the least biased one.
      const now = Date.now();
      const rtt = now - msg.a;
      if (rtt >= 0 && rtt <= this.bestRtt + 5) {
        this.bestRtt = Math.min(this.bestRtt, rtt);
        this.clockOffsetMs = msg.b - (msg.a + rtt / 2);
        this.dispatchEvent(new Event('clock'));
      }
    } else if (msg.kind === 'analysis' && typeof msg.on === 'boolean') {
      this.analysis = msg.on;
      this.dispatchEvent(new Event('analysis'));
    } else if (msg.kind === 'name' && typeof msg.name === 'string') {
      this.name = msg.name.slice(0, 64);
      this.dispatchEvent(new Event('name'));
    } else if (msg.kind === 'bye') {
      this.#setState('closed');
    }
  }

  #ping() {
    if (this.canChat) this.chat.send(JSON.stringify({ kind: 'ping', a: Date.now() }));
  }

  #wire() {
    const pc = this.pc;
    pc.addEventListener('negotiationneeded', async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.#send({ description: pc.localDescription.toJSON() });
      } catch (err) {
        console.warn(`peer ${this.id}: offer failed`, err);
      } finally {
        this.makingOffer = false;
      }
    });
    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate) this.#send({ candidate: candidate.toJSON() });
    });
    pc.addEventListener('track', ({ track }) => {
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      track.addEventListener('ended', () => this.remoteStream.removeTrack(track));
      this.dispatchEvent(new CustomEvent('track', { detail: this.remoteStream }));
    });
    pc.addEventListener('connectionstatechange', () => this.#onConnectionState());
  }

  #onConnectionState() {
    const s = this.pc.connectionState;
    clearTimeout(this.restartTimer);
    if (this.closed) return;
    if (s === 'connected') {
      this.#setState('connected');
    } else if (s === 'disconnected') {
      // Often recovers by itself (a lost packet or two); restart only if it does not.
      this.#setState('reconnecting');
      this.restartTimer = setTimeout(() => {
        if (this.pc.connectionState !== 'connected') this.restartIce();
      }, DISCONNECTED_GRACE_MS);
    } else if (s === 'failed') {
      this.#setState('reconnecting');
      this.restartIce();
    } else if (s === 'connecting' || s === 'new') {
      if (this.state !== 'reconnecting') this.#setState('connecting');
    }
  }

  async #handle(data) {
    if (this.closed || data === null || typeof data !== 'object') return;
    const pc = this.pc;
    const { description, candidate } = data;
    if (description && typeof description === 'object') {
      const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingRemoteAnswer);
      const collision = description.type === 'offer' && !readyForOffer;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      this.settingRemoteAnswer = description.type === 'answer';
      await pc.setRemoteDescription(description); // rolls back our offer on glare (polite side)
      this.settingRemoteAnswer = false;
      if (description.type === 'offer') {
        this.#attachLocal();
        await pc.setLocalDescription();
        this.#send({ description: pc.localDescription.toJSON() });
      }
    } else if (candidate && typeof candidate === 'object') {
      try {
        await pc.addIceCandidate(candidate);
      } catch (err) {
        if (!this.ignoreOffer) console.warn(`peer ${this.id}: bad candidate`, err);
      }
    }
  }
}

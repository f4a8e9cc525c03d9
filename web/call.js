// The session in one room: local media, the signaling socket, one PeerLink per
// remote participant, the connection to the server (Publisher) and the detections
// that arrive. No DOM here; ui.js renders what this reports.
//
// Topology (docs/protocol.md): a 1:1 room where nobody lets the server analyse their
// video is peer to peer (media never touches the server). Otherwise — someone turned
// analysis on, or a third person is in the room — every page sends its camera and mic
// once, to the server, and receives the others from it; the PeerLinks stay for chat
// with no media. The switch happens in place (no reload) and is kept for the rest of
// the call.
//
// Events:
//   status            .status changed ('connecting' | 'waiting' | 'connected' |
//                     'reconnecting' | 'peer-left' | 'full' | 'ended' | 'error')
//   local             the local stream or its state (mic/cam/screen) changed
//   peer-added {id}   a participant appeared (tile needed)
//   peer-changed {id} its name, state or stream changed
//   peer-removed {id}
//   chat {detail}     {from, name, text, mine, system}
//   detections {detail}  one `detections` message from the server
//   publish           .publishState changed
//   topology          .viaServer changed
//   self              own id known (after `joined`)
//   error {detail}    {code, message} from the server that the user should see

import { Signaling } from './signaling.js';
import { PeerLink } from './peer.js';
import { Publisher } from './publish.js';
import { viaServerRule, P2P_FALLBACK_MS } from './topology.js';

// The server refused the join itself: no call, no retry; ui.js says why.
const JOIN_REFUSED = new Set(['bad-room', 'unsupported-version', 'bad-name', 'token-required', 'token-expired', 'token-invalid', 'forbidden']);

// A peer that is not in the room after our rejoin is kept while its media still flows;
// once it is not connected for this long it counts as gone.
const ABSENT_GRACE_MS = 8000;

export class Call extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {string} o.name
   * @param {object} o.config GET /api/config
   * @param {string|null} [o.token] access token from the join link, sent in `join`
   * @param {{stream: MediaStream, micMuted: boolean, camOff: boolean, mediaError: string|null}} [o.media]
   *   camera and microphone as the lobby (lobby.js) opened and left them
   * @param {boolean} [o.analyse] the person allows the server to analyse their video
   * @param {boolean} [o.receiveOnly] the access token does not allow publishing: nothing
   *   is sent; via the server the connection only receives (`publish` with `subscribe`
   *   and no sending m-line)
   */
  constructor({ room, name, config, token = null, media = null, analyse = false, receiveOnly = false }) {
    super();
    this.receiveOnly = receiveOnly;
    this.room = room;
    this.name = name;
    this.config = config;
    this.token = token;
    this.iceServers = Array.isArray(config.ice_servers) ? config.ice_servers : [];
    this.mediaEnabled = Boolean(config.media?.enabled);
    this.myId = null;
    this.joined = false;
    this.everJoined = false;
    this.someoneLeft = false;
    this.status = 'connecting';
    this.ended = false;
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    this.absentSince = new Map();
    this.localStream = null;
    this.cameraTrack = null;
    this.screenTrack = null;
    this.micMuted = false;
    this.camOff = false;
    this.mediaError = null;
    this.nameChanged = false;
    // Consent: only what the person chose in the lobby (or later in the call).
    this.publishWanted = Boolean(analyse);
    this.publishState = 'stopped';
    this.signaling = new Signaling(Signaling.urlFor(window.location));
    this.viaServer = false;
    this.p2pFailed = false;
    this.publisher = new Publisher({
      send: (m) => this.signaling.send(m),
      iceServers: () => this.iceServers,
      videoTrack: () => this.currentVideoTrack(),
      audioTrack: () => this.localStream?.getAudioTracks()[0] ?? null,
      isScreen: (track) => track !== null && track === this.screenTrack,
    });
    this.publisher.addEventListener('state', (e) => {
      this.publishState = e.detail;
      this.dispatchEvent(new Event('publish'));
      this.#updateStatus();
    });
    this.publisher.addEventListener('remote', (e) => {
      for (const id of e.detail) if (this.links.has(id)) this.dispatchEvent(new CustomEvent('peer-changed', { detail: { id } }));
    });
    this.sweepTimer = null;
    this.#adoptMedia(media ?? { stream: new MediaStream() });
  }

  async start() {
    this.signaling.addEventListener('open', () => this.#join());
    this.signaling.addEventListener('message', (e) => this.#onMessage(e.detail));
    this.signaling.addEventListener('close', () => {
      this.joined = false;
      this.#updateStatus();
    });
    this.signaling.connect();
    this.sweepTimer = setInterval(() => this.#sweepAbsent(), 1000);
    window.addEventListener('pagehide', () => this.hangUp());
  }

  currentVideoTrack() {
    return this.screenTrack ?? this.cameraTrack;
  }

  localTracks() {
    // Via the server, the peer connections carry chat only.
    if (this.viaServer) return [];
    const tracks = [];
    const audio = this.localStream?.getAudioTracks()[0];
    if (audio) tracks.push(audio);
    const video = this.currentVideoTrack();
    if (video) tracks.push(video);
    return tracks;
  }

  get sharing() {
    return this.screenTrack !== null;
  }

  /** A new display name: used on the next join, and sent to the peers now. */
  setName(name) {
    const clean = name.trim().slice(0, 64);
    if (clean === this.name) return;
    this.name = clean;
    this.nameChanged = true;
    for (const link of this.links.values()) link.sendName(clean);
    this.dispatchEvent(new Event('local'));
  }

  /** Whether the server may analyse our video (turning it on moves the call via the server). */
  setPublishing(on) {
    this.publishWanted = on;
    for (const link of this.links.values()) link.sendAnalysis(on);
    this.#updateTopology();
  }

  /** The stream to show for remote participant `id` (from the server or its peer link). */
  remoteStream(id) {
    if (this.viaServer) return this.publisher.streamOf(id) ?? new MediaStream();
    return this.links.get(id)?.remoteStream ?? new MediaStream();
  }

  /**
   * How large participant `id`'s video is shown, in device pixels (0×0: not shown). Via
   * the server this picks the simulcast layer it forwards (`track-settings`).
   */
  setViewSize(id, width, height) {
    this.publisher.setViewSize(id, width, height);
  }

  forgetViewSize(id) {
    this.publisher.forgetViewSize(id);
  }

  /** Applies the topology rule (topology.js) and starts or stops the server connection. */
  #updateTopology() {
    const analysis = this.publishWanted || [...this.links.values()].some((l) => l.analysis);
    const want = viaServerRule({
      mediaEnabled: this.mediaEnabled,
      participants: this.links.size + 1,
      analysis,
      viaServer: this.viaServer,
      p2pFailed: this.p2pFailed,
    });
    if (want && !this.viaServer) {
      this.viaServer = true;
      for (const link of this.links.values()) link.stopMedia().catch((err) => console.warn('stop p2p media', err));
      this.dispatchEvent(new Event('topology'));
      for (const id of this.links.keys()) this.dispatchEvent(new CustomEvent('peer-changed', { detail: { id } }));
    }
    if (!this.joined || !this.mediaEnabled) return;
    const p = this.publisher;
    if (this.viaServer) {
      if (p.stopped || !p.subscribe || p.analyse !== this.publishWanted) p.start({ subscribe: true, analyse: this.publishWanted });
    } else if (!p.stopped) {
      p.stop();
    }
  }

  setMicMuted(muted) {
    this.micMuted = muted;
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !muted;
    this.dispatchEvent(new Event('local'));
  }

  setCameraOff(off) {
    this.camOff = off;
    // A disabled track sends black frames: the connection and its layout stay as they are.
    if (this.cameraTrack) this.cameraTrack.enabled = !off;
    this.dispatchEvent(new Event('local'));
  }

  async startScreenShare() {
    if (this.screenTrack || this.receiveOnly) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    this.screenTrack = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    await this.#sendVideo(track);
  }

  async stopScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    await this.#sendVideo(this.cameraTrack);
  }

  sendChat(text) {
    const clean = text.trim().slice(0, 2000);
    if (!clean) return false;
    let sent = false;
    for (const link of this.links.values()) sent = link.sendChat(clean) || sent;
    if (sent) this.dispatchEvent(new CustomEvent('chat', { detail: { from: this.myId, name: this.name, text: clean, mine: true } }));
    return sent;
  }

  get canChat() {
    return [...this.links.values()].some((l) => l.canChat);
  }

  hangUp() {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.sweepTimer);
    this.signaling.send({ type: 'leave' });
    this.signaling.close();
    this.publisher.stop();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    this.screenTrack?.stop();
    this.#setStatus('ended');
  }

  #adoptMedia({ stream, micMuted = false, camOff = false, mediaError = null }) {
    this.localStream = stream;
    this.cameraTrack = stream.getVideoTracks()[0] ?? null;
    this.mediaError = mediaError;
    this.setMicMuted(micMuted);
    this.setCameraOff(camOff);
  }

  async #sendVideo(track) {
    if (this.viaServer) await this.publisher.replaceTrack(track);
    else await Promise.allSettled([...this.links.values()].map((l) => l.replaceVideo(track)));
    this.dispatchEvent(new Event('local'));
  }

  #join() {
    const msg = { type: 'join', room: this.room, version: 1 };
    if (this.name) msg.name = this.name;
    if (this.token) msg.token = this.token;
    if (this.myId) msg.resume = this.myId;
    this.signaling.send(msg);
  }

  #onMessage(msg) {
    switch (msg.type) {
      case 'joined':
        this.#onJoined(msg);
        break;
      case 'peer-joined':
        if (msg.peer && typeof msg.peer.id === 'string') this.#onPeerJoined(msg.peer);
        break;
      case 'peer-left':
        if (typeof msg.id === 'string') this.#removePeer(msg.id, true);
        break;
      case 'signal':
        if (typeof msg.from === 'string') this.#onSignal(msg.from, msg.data);
        break;
      case 'publish-answer':
        this.publisher.handleAnswer(msg.sdp);
        break;
      case 'offer':
        this.publisher.handleOffer(msg.sdp, msg.tracks);
        break;
      case 'media-moved':
        // The server node that carried our connection to the server is gone (several
        // nodes, --redis): a fresh publish is placed on a live one.
        if (!this.publisher.stopped) this.publisher.start();
        break;
      case 'detections':
        this.dispatchEvent(new CustomEvent('detections', { detail: msg }));
        break;
      case 'error':
        this.#onError(msg);
        break;
      default:
        break; // newer server, older client: ignore
    }
  }

  #onJoined(msg) {
    if (typeof msg.id !== 'string') return;
    const first = this.myId === null;
    this.myId = msg.id;
    this.joined = true;
    // The server hands each participant its own ICE servers (TURN credentials are
    // per participant and time-limited): new connections use the newest list.
    if (Array.isArray(msg.ice_servers)) this.iceServers = msg.ice_servers.filter((s) => s && typeof s === 'object');
    // Without room tokens: the keys that let an encoder publish (WHIP) and a player
    // watch (WHEP) this room; absent with tokens (docs/whip.md, docs/whep.md).
    const key = (k) => (typeof k === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(k) ? k : null);
    this.ingestKey = key(msg.ingest_key);
    this.viewKey = key(msg.view_key);
    this.dispatchEvent(new Event('keys'));
    this.everJoined = true;
    const present = new Set();
    for (const p of Array.isArray(msg.peers) ? msg.peers : []) {
      if (!p || typeof p.id !== 'string' || p.id === this.myId) continue;
      present.add(p.id);
      this.absentSince.delete(p.id);
      // They were here first: we are polite towards them and we make the offer.
      this.#meet(p.id, p.name, { polite: true, initiator: true });
    }
    // Peers we still have links to but the room does not list: not back yet (server
    // restart) or gone. Keep them while their media flows.
    for (const id of this.links.keys()) {
      if (!present.has(id) && !this.absentSince.has(id)) this.absentSince.set(id, Date.now());
    }
    if (first) this.dispatchEvent(new Event('self'));
    // A new socket means a new server-side session: publish again.
    if (!this.publisher.stopped) this.publisher.stop();
    this.#updateTopology();
    this.#updateStatus();
  }

  #onPeerJoined(peer) {
    if (peer.id === this.myId) return;
    this.absentSince.delete(peer.id);
    // Announced after us: we are impolite towards them and wait for their offer.
    this.#meet(peer.id, peer.name, { polite: false, initiator: false });
    this.#updateTopology();
    this.#updateStatus();
  }

  /** Keeps a live link to `id` (with its new role and name) or makes a fresh one. */
  #meet(id, name, { polite, initiator }) {
    const link = this.links.get(id);
    if (link && this.#alive(link)) {
      link.polite = polite;
      link.name = name || link.name;
      link.resume();
      this.dispatchEvent(new CustomEvent('peer-changed', { detail: { id } }));
    } else {
      this.#addLink(id, name, { polite, initiator });
    }
  }

  #onSignal(from, data) {
    if (!data || typeof data !== 'object') return;
    let link = this.links.get(from);
    const isOffer = data.description?.type === 'offer';
    if (link && link.remoteSid && data.sid && data.sid !== link.remoteSid) {
      // The other side started a fresh connection (e.g. after a reload of its state):
      // follow it on an offer, drop leftovers of the old one otherwise.
      if (!isOffer) return;
      const { polite, name } = link;
      this.#removePeer(from, false);
      link = this.#addLink(from, name, { polite, initiator: false });
    } else if (!link) {
      if (!isOffer) return;
      link = this.#addLink(from, '', { polite: true, initiator: false });
    }
    if (data.sid && !link.remoteSid) link.remoteSid = data.sid;
    this.absentSince.delete(from);
    link.handleSignal(data);
  }

  #onError(msg) {
    const code = typeof msg.code === 'string' ? msg.code : 'error';
    console.warn(`server error ${code}: ${msg.message}`);
    if (code === 'room-full') {
      this.signaling.close();
      this.publisher.stop();
      for (const t of this.localStream?.getTracks() ?? []) t.stop();
      this.#setStatus('full');
    } else if (code === 'media-unavailable') {
      this.publisher.unavailable();
    } else if (code === 'forbidden' && this.joined) {
      // A token without the right to publish: the call goes on, the video stays here.
      this.publisher.unavailable('forbidden');
    } else if (JOIN_REFUSED.has(code)) {
      this.signaling.close();
      this.#setStatus('error');
      this.dispatchEvent(new CustomEvent('error', { detail: { code, message: String(msg.message ?? '') } }));
    }
  }

  #alive(link) {
    const s = link.pc.connectionState;
    return !link.closed && s !== 'closed' && s !== 'failed';
  }

  #addLink(id, name, { polite, initiator }) {
    this.links.get(id)?.close();
    const link = new PeerLink({
      id,
      name,
      polite,
      initiator,
      iceServers: this.iceServers,
      localTracks: () => this.localTracks(),
      localStream: this.localStream,
    });
    link.addEventListener('signal', (e) => {
      this.signaling.send({ type: 'signal', to: id, data: e.detail });
    });
    const changed = () => {
      this.dispatchEvent(new CustomEvent('peer-changed', { detail: { id } }));
      this.#updateStatus();
    };
    link.addEventListener('state', changed);
    // The peer-to-peer path failed, or is not up in time: the call moves via the server.
    const p2pFailed = (why) => {
      if (this.viaServer || this.links.get(id) !== link || link.closed || link.everConnected) return;
      console.info(`peer ${id}: ${why}; the call moves via the server`);
      this.p2pFailed = true;
      this.#updateTopology();
    };
    link.addEventListener('state', () => {
      if (link.state === 'connected') link.everConnected = true;
      else if (link.pc.connectionState === 'failed') p2pFailed('ICE failed');
    });
    setTimeout(() => p2pFailed(`not connected after ${P2P_FALLBACK_MS} ms`), P2P_FALLBACK_MS);
    link.addEventListener('track', changed);
    link.addEventListener('channel', () => {
      // A fresh channel: tell the peer a name set after the join, and our analysis choice.
      if (link.canChat && this.nameChanged) link.sendName(this.name);
      if (link.canChat) link.sendAnalysis(this.publishWanted);
      changed();
    });
    link.addEventListener('analysis', () => this.#updateTopology());
    link.addEventListener('name', changed);
    link.addEventListener('chat', (e) => {
      this.dispatchEvent(new CustomEvent('chat', { detail: { from: id, name: link.name, text: e.detail.text, mine: false } }));
    });
    this.links.set(id, link);
    this.dispatchEvent(new CustomEvent('peer-added', { detail: { id } }));
    this.#updateStatus();
    return link;
  }

  #removePeer(id, left) {
    const link = this.links.get(id);
    this.absentSince.delete(id);
    if (!link) return;
    link.close();
    this.links.delete(id);
    if (left) {
      this.someoneLeft = true;
      this.dispatchEvent(new CustomEvent('chat', { detail: { system: true, text: `${link.name || 'Your peer'} left the call` } }));
    }
    this.dispatchEvent(new CustomEvent('peer-removed', { detail: { id, left } }));
    this.#updateStatus();
  }

  #sweepAbsent() {
    const now = Date.now();
    for (const [id, since] of this.absentSince) {
      const link = this.links.get(id);
      if (!link) {
        this.absentSince.delete(id);
      } else if (link.state === 'connected') {
        this.absentSince.set(id, now);
      } else if (now - since > ABSENT_GRACE_MS) {
        this.#removePeer(id, true);
      }
    }
  }

  #updateStatus() {
    if (this.ended || this.status === 'full' || this.status === 'error') return;
    const links = [...this.links.values()];
    let s;
    if (links.length === 0) {
      if (!this.joined) s = this.everJoined ? 'reconnecting' : 'connecting';
      else s = this.someoneLeft ? 'peer-left' : 'waiting';
    } else if (this.viaServer && this.publishState === 'publishing') {
      // Media flows via the server whatever the peer connections (chat only) do.
      s = 'connected';
    } else if (links.some((l) => l.state === 'reconnecting')) {
      s = 'reconnecting';
    } else if (links.every((l) => l.state === 'connected')) {
      s = 'connected';
    } else {
      s = 'connecting';
    }
    this.#setStatus(s);
  }

  #setStatus(s) {
    const changed = this.status !== s;
    this.status = s;
    // Always notify: the signaling sub-state may have changed even if s did not.
    this.dispatchEvent(new CustomEvent('status', { detail: { changed } }));
  }
}

// DOM for the room: video tiles, status line, controls, chat and the detection panel.
// It renders what the Call reports and turns clicks into Call methods.

import { DetectionStore, OverlaySettings, TileOverlay } from './overlay.js';
import { SyncController } from './sync.js';
import { DelayLine, delayLineSupported } from './delay.js';
import { devicePixels } from './viewsize.js';

const STATUS_TEXT = {
  connecting: 'Connecting…',
  waiting: 'Waiting for someone to join',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  'peer-left': 'Peer left — waiting for someone to join',
  ended: 'Call ended',
  full: 'Room is full',
  error: 'Error',
};
const PEER_STATE_TEXT = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  failed: 'connection failed',
  closed: 'left',
};

const JOIN_REFUSED_TITLE = {
  'token-required': 'This call needs an invitation link',
  'token-expired': 'Your invitation has expired',
  'token-invalid': 'This invitation is not valid',
  forbidden: 'Your invitation is not for this call',
};
const JOIN_REFUSED_TEXT = {
  'token-required': 'Ask the person who runs this call for an invitation link, and open that link.',
  'token-expired': 'Ask for a new link.',
  'token-invalid': 'The link may have been cut short when it was copied. Ask for a new link.',
  forbidden: 'The invitation you opened names another call or does not allow joining. Ask for a new link.',
};

const $ = (sel) => document.querySelector(sel);

export function showView(id) {
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== id;
}

export function toast(text, ms = 2200) {
  const el = $('#toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    el.hidden = true;
  }, ms);
}

function initials(name) {
  const n = (name || '').trim();
  return n ? n[0].toUpperCase() : '?';
}

// At most this many videos at once; the pager shows the rest (rooms of up to 16).
const PAGE_SIZE = 9;
// An audio level (RTP audio-level, 0..1) at or above this marks a participant as talking.
const SPEAKING_LEVEL = 0.02;
const SPEAKING_EVERY_MS = 250;

export class RoomView {
  /** @param {import('./call.js').Call} call */
  constructor(call) {
    this.call = call;
    this.store = new DetectionStore();
    this.settings = new OverlaySettings();
    this.tiles = new Map(); // peer id or 'self' → {el, video, overlay}
    this.tilesEl = $('#tiles');
    this.pinned = null; // the tile key shown large
    this.page = 0;
    // How large each remote video is shown (paged out or hidden: 0×0), for the
    // simulcast layer the server forwards (Call.setViewSize → `track-settings`).
    this.sizeObserver =
      typeof ResizeObserver === 'function'
        ? new ResizeObserver((entries) => {
            for (const e of entries) this.#reportSize(e.target.closest('.tile')?.dataset.peer);
          })
        : null;
  }

  /** Tells the Call how large a remote tile's video is shown now (device pixels). */
  #reportSize(key) {
    const t = key && key !== 'self' ? this.tiles.get(key) : null;
    if (!t) return;
    // Picture-in-picture: shown in its own window, even while the page is hidden.
    const pip = document.pictureInPictureElement === t.video ? t.pipWindow : null;
    const shown = document.visibilityState !== 'hidden';
    const css = pip ?? (shown ? { width: t.video.clientWidth, height: t.video.clientHeight } : { width: 0, height: 0 });
    const { width, height } = devicePixels(css.width, css.height, window.devicePixelRatio || 1);
    this.call.setViewSize(key, width, height);
  }

  mount() {
    const call = this.call;
    $('#page-prev').addEventListener('click', () => this.#showPage(this.page - 1));
    $('#page-next').addEventListener('click', () => this.#showPage(this.page + 1));
    setInterval(() => this.#renderSpeaking(), SPEAKING_EVERY_MS);
    // A hidden page (minimised, other tab) shows no video: none needs forwarding.
    document.addEventListener('visibilitychange', () => {
      for (const key of this.tiles.keys()) this.#reportSize(key);
    });
    showView('room');
    document.title = `Callsight · ${call.room.slice(0, 6)}…`;
    this.#addTile('self', { self: true });
    this.#renderLocal();

    call.addEventListener('status', () => this.#renderStatus());
    call.addEventListener('local', () => this.#renderLocal());
    call.addEventListener('self', () => this.#renderLocal());
    call.addEventListener('peer-added', (e) => this.#addTile(e.detail.id, {}));
    call.addEventListener('peer-changed', (e) => this.#renderPeer(e.detail.id));
    call.addEventListener('peer-removed', (e) => this.#removeTile(e.detail.id));
    call.addEventListener('chat', (e) => this.#appendChat(e.detail));
    call.addEventListener('detections', (e) => this.store.add(e.detail));
    call.addEventListener('publish', () => {
      this.#renderPublish();
      // Via the server, remote tiles follow our connection to it.
      for (const id of call.links.keys()) this.#renderPeer(id);
    });
    call.addEventListener('keys', () => this.#renderKeys());
    for (const b of document.querySelectorAll('#ingest-panel button[data-copy]')) {
      b.addEventListener('click', () => this.#copy($(`#${b.dataset.copy}`).value, b.dataset.what));
    }
    call.addEventListener('topology', () => {
      this.#renderTopology();
      this.#renderPublish();
    });
    this.#renderTopology();
    call.addEventListener('error', (e) => {
      // The server refused the join itself (bad link, token, unsupported version): no call here.
      const { code, message } = e.detail;
      $('#fatal-title').textContent = JOIN_REFUSED_TITLE[code] ?? 'Cannot join this call';
      $('#fatal-text').textContent = JOIN_REFUSED_TEXT[code] ?? `${message || code} (${code})`;
      showView('fatal');
    });

    $('#copy-link').addEventListener('click', () => this.#copyLink());
    $('#mic').addEventListener('click', () => call.setMicMuted(!call.micMuted));
    $('#cam').addEventListener('click', () => call.setCameraOff(!call.camOff));
    $('#share').addEventListener('click', async () => {
      try {
        if (call.sharing) await call.stopScreenShare();
        else await call.startScreenShare();
      } catch (err) {
        if (err?.name !== 'NotAllowedError') toast('Screen sharing is not available');
      }
      this.#renderLocal();
    });
    $('#toggle-side').addEventListener('click', (e) => {
      const room = $('#room');
      room.classList.toggle('side-hidden');
      e.currentTarget.setAttribute('aria-pressed', String(!room.classList.contains('side-hidden')));
    });
    $('#hangup').addEventListener('click', () => {
      call.hangUp();
      $('#rejoin').href = window.location.pathname;
      showView('ended');
    });
    // Receive-only (the token may not publish): nothing to share.
    if (!navigator.mediaDevices?.getDisplayMedia || call.receiveOnly) $('#share').disabled = true;

    const nameInput = $('#chat-name');
    nameInput.value = call.name;
    nameInput.addEventListener('change', () => {
      call.setName(nameInput.value);
      this.onNameChange?.(call.name);
    });

    $('#chat-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('#chat-input');
      if (call.sendChat(input.value)) input.value = '';
    });

    this.#mountDetectionPanel();
    this.#renderStatus();
    this.#renderPublish();
    if (call.mediaError) this.#appendChat({ system: true, text: call.mediaError });
  }

  #mountDetectionPanel() {
    const panel = $('#detect-panel');
    panel.hidden = !this.call.mediaEnabled;
    this.#loadLabels();
    const th = $('#threshold');
    const out = $('#threshold-out');
    const applyThreshold = () => {
      const v = Number(th.value);
      out.textContent = `${Math.round(v * 100)}%`;
      this.settings.setThreshold(v);
    };
    th.addEventListener('input', applyThreshold);
    applyThreshold();
    $('#class-filter').addEventListener('input', (e) => this.settings.setClassFilter(e.target.value));
    const pub = $('#publish-toggle');
    pub.checked = this.call.publishWanted;
    pub.disabled = this.call.receiveOnly;
    pub.addEventListener('change', () => {
      this.call.setPublishing(pub.checked);
      this.onAnalyseChange?.(pub.checked); // the same choice as in the lobby: remembered
      this.#renderPublish();
    });
    const predict = $('#predict');
    predict.addEventListener('change', () => this.settings.setPredict(predict.checked));
    const hold = $('#sync-hold');
    hold.addEventListener('change', () => {
      this.settings.setHold(hold.checked);
      for (const t of this.tiles.values()) t.sync?.setEnabled(hold.checked);
    });
  }

  /** The class filter's suggestions: the running detector's class names (GET /api/labels). */
  async #loadLabels() {
    let labels = this.call.config.detector?.labels;
    try {
      const res = await fetch('/api/labels', { cache: 'no-store' });
      if (res.ok) labels = await res.json();
    } catch {
      // older server: the names /api/config gave, if any
    }
    if (!Array.isArray(labels)) return;
    $('#coco-classes').replaceChildren(
      ...labels
        .filter((l) => typeof l === 'string' && l)
        .slice(0, 1000)
        .map((l) => Object.assign(document.createElement('option'), { value: l.slice(0, 40) })),
    );
  }

  #participantOf(key) {
    return key === 'self' ? this.call.myId : key;
  }

  #addTile(key, { self = false }) {
    if (this.tiles.has(key)) return;
    const frag = $('#tile-template').content.cloneNode(true);
    const el = frag.querySelector('.tile');
    const video = el.querySelector('video');
    el.dataset.role = self ? 'self' : 'remote';
    el.dataset.peer = key;
    el.id = self ? 'tile-self' : `tile-${key}`;
    if (self) {
      video.muted = true; // never play our own microphone back
      el.dataset.testid = 'tile-self';
    } else {
      el.dataset.testid = 'tile-remote';
    }
    const list = el.querySelector('.det-list');
    const toggle = el.querySelector('.det-toggle');
    toggle.hidden = !this.call.mediaEnabled;
    toggle.addEventListener('click', () => {
      const pid = this.#participantOf(key);
      if (!pid) return;
      const shown = this.settings.hidden.has(pid);
      this.settings.setShown(pid, shown);
      toggle.setAttribute('aria-pressed', String(shown));
      toggle.textContent = shown ? 'Boxes on' : 'Boxes off';
    });
    const sync = this.call.mediaEnabled ? this.#syncFor(key, self) : null;
    const overlay = this.call.mediaEnabled
      ? new TileOverlay({
          sync,
          video,
          canvas: el.querySelector('canvas'),
          list,
          readout: el.querySelector('.det-stats'),
          store: this.store,
          settings: this.settings,
          participant: () => this.#participantOf(key),
          isSelf: self,
          clockOffset: () => this.call.links.get(key)?.clockOffsetMs ?? null,
          byRtp: () => this.call.viaServer,
        })
      : null;
    list.setAttribute('aria-label', self ? 'Objects in your video' : 'Objects in their video');
    const pin = el.querySelector('.pin');
    pin.addEventListener('click', () => {
      this.pinned = this.pinned === key ? null : key;
      this.#layout();
    });
    this.tiles.set(key, { el, video, overlay, sync });
    if (self) this.tilesEl.prepend(el);
    else this.tilesEl.append(el);
    this.#layout();
    if (!self) {
      this.#renderPeer(key);
      this.sizeObserver?.observe(video);
      video.addEventListener('enterpictureinpicture', (e) => {
        const t = this.tiles.get(key);
        const win = e.pictureInPictureWindow;
        if (!t || !win) return;
        t.pipWindow = { width: win.width, height: win.height };
        win.addEventListener('resize', () => {
          t.pipWindow = { width: win.width, height: win.height };
          this.#reportSize(key);
        });
        this.#reportSize(key);
      });
      video.addEventListener('leavepictureinpicture', () => this.#reportSize(key));
    }
  }

  // The actuator that holds this tile's video back: the self-view's delay line, or the
  // jitter-buffer target of the receivers of that peer's connection.
  #syncFor(key, self) {
    let actuator;
    let latencies;
    if (self) {
      if (!delayLineSupported()) return null;
      actuator = { get: () => this.selfDelay?.delayMs ?? 0, set: (ms) => this.selfDelay?.setDelay(ms) };
      latencies = () => (this.call.myId ? this.store.latencies(this.call.myId, 0) : []);
    } else {
      if (!('jitterBufferTarget' in RTCRtpReceiver.prototype)) return null;
      actuator = {
        get: () => 0,
        set: (ms) => {
          // Audio too: lip sync keeps following the video.
          for (const r of this.#receiversOf(key)) r.jitterBufferTarget = ms;
        },
      };
      latencies = () => this.store.latencies(key, this.call.links.get(key)?.clockOffsetMs ?? 0);
    }
    const sync = new SyncController({ detectionLatencies: latencies, actuator });
    sync.setEnabled(this.settings.hold);
    return sync;
  }

  /** The receivers of a remote participant's tracks: on the server connection or its peer link. */
  #receiversOf(key) {
    if (!this.call.viaServer) return this.call.links.get(key)?.pc.getReceivers() ?? [];
    const tracks = this.call.publisher.streamOf(key)?.getTracks() ?? [];
    return (this.call.publisher.pc?.getReceivers() ?? []).filter((r) => tracks.includes(r.track));
  }

  /**
   * Order (pinned first, then you, then the others as they came) and paging: at most
   * PAGE_SIZE tiles are shown; the pager moves through the rest.
   */
  #layout() {
    if (this.pinned !== null && !this.tiles.has(this.pinned)) this.pinned = null;
    const keys = [...this.tiles.keys()];
    const ordered = this.pinned === null ? keys : [this.pinned, ...keys.filter((k) => k !== this.pinned)];
    const pages = Math.max(1, Math.ceil(ordered.length / PAGE_SIZE));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const shown = new Set(ordered.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE));
    ordered.forEach((k, i) => {
      const { el } = this.tiles.get(k);
      el.style.order = String(i);
      el.hidden = !shown.has(k);
      el.dataset.pinned = String(k === this.pinned);
      const pin = el.querySelector('.pin');
      pin.setAttribute('aria-pressed', String(k === this.pinned));
      pin.textContent = k === this.pinned ? 'Unpin' : 'Pin';
    });
    this.tilesEl.dataset.count = String(shown.size);
    const pager = $('#pager');
    pager.hidden = pages <= 1;
    $('#page-text').textContent = `${this.page + 1} / ${pages}`;
    $('#page-prev').disabled = this.page === 0;
    $('#page-next').disabled = this.page >= pages - 1;
  }

  #showPage(page) {
    this.page = page;
    this.#layout();
  }

  /**
   * Who is talking: the level of each remote participant's received audio (the RTP
   * audio-level the sender stamped, forwarded by the server; else the decoded level).
   */
  async #renderSpeaking() {
    for (const [key, t] of this.tiles) {
      if (key === 'self') continue;
      let level = 0;
      for (const r of this.#receiversOf(key)) {
        if (r.track?.kind !== 'audio') continue;
        for (const src of r.getSynchronizationSources?.() ?? []) level = Math.max(level, src.audioLevel ?? 0);
        if (level === 0) {
          const stats = await r.getStats().catch(() => null);
          stats?.forEach((x) => {
            if (x.type === 'inbound-rtp') level = Math.max(level, x.audioLevel ?? 0);
          });
        }
      }
      t.el.dataset.speaking = String(level >= SPEAKING_LEVEL);
      t.el.dataset.audioLevel = level.toFixed(3);
    }
  }

  #removeTile(key) {
    const t = this.tiles.get(key);
    if (!t) return;
    t.overlay?.stop();
    this.sizeObserver?.unobserve(t.video);
    this.call.forgetViewSize(key);
    t.video.srcObject = null;
    t.el.remove();
    this.tiles.delete(key);
    this.store.forget(key);
    this.#layout();
  }

  #renderPeer(id) {
    const t = this.tiles.get(id);
    const link = this.call.links.get(id);
    if (!t || !link) return;
    const stream = this.call.remoteStream(id);
    if (t.video.srcObject !== stream && stream.getTracks().length) {
      t.video.srcObject = stream;
      t.video.play().catch(() => {
        // Autoplay with sound may be refused until the user interacts: play muted now,
        // unmute on the first click or key press.
        t.video.muted = true;
        t.video.play().catch(() => {});
        toast('Click anywhere to turn on the sound', 6000);
        const unmute = () => {
          t.video.muted = false;
          t.video.play().catch(() => {});
        };
        window.addEventListener('pointerdown', unmute, { once: true });
        window.addEventListener('keydown', unmute, { once: true });
      });
    }
    const state = this.#peerState(link, stream);
    t.el.dataset.state = state;
    t.el.dataset.video = stream.getVideoTracks().length ? 'on' : 'off';
    t.el.querySelector('.who').textContent = link.name || 'Guest';
    t.el.querySelector('.avatar').textContent = initials(link.name);
    t.el.querySelector('.peer-state').textContent = PEER_STATE_TEXT[state] ?? state;
    this.#renderChatEnabled();
  }

  /**
   * What a remote tile says about its participant's connection. Peer to peer: the link's
   * state. Via the server the link is not what carries the media (and a WHIP encoder
   * never opens one): connected once the server forwards its tracks, reconnecting while
   * our own connection to the server is down.
   */
  #peerState(link, stream) {
    if (!this.call.viaServer || link.state === 'closed') return link.state;
    if (this.call.publishState === 'failed') return 'reconnecting';
    return stream.getTracks().length ? 'connected' : 'connecting';
  }

  #renderLocal() {
    const call = this.call;
    const t = this.tiles.get('self');
    if (!t) return;
    const video = call.currentVideoTrack();
    if (this.selfSource !== video) {
      this.selfSource = video;
      this.selfDelay?.close();
      this.selfDelay = null;
      let shown = video;
      // With detection, the self-view goes through a delay line (sync.js decides how long).
      if (video && call.mediaEnabled && t.sync) {
        try {
          this.selfDelay = new DelayLine(video);
          this.selfDelay.setDelay(t.sync.hold);
          shown = this.selfDelay.track;
        } catch (err) {
          console.warn('self-view delay line unavailable', err);
        }
      }
      t.video.srcObject = shown ? new MediaStream([shown]) : null;
      if (shown) t.video.play().catch(() => {});
    }
    t.el.dataset.video = video && !(call.camOff && !call.sharing) ? 'on' : 'off';
    t.el.dataset.state = 'self';
    t.el.querySelector('.who').textContent = call.name ? `${call.name} (you)` : 'You';
    t.el.querySelector('.avatar').textContent = initials(call.name);
    const mic = $('#mic');
    mic.setAttribute('aria-pressed', String(call.micMuted));
    mic.querySelector('.lbl').textContent = call.micMuted ? 'Unmute' : 'Mute';
    mic.title = call.micMuted ? 'Unmute microphone' : 'Mute microphone';
    mic.disabled = !call.localStream?.getAudioTracks().length;
    const cam = $('#cam');
    cam.setAttribute('aria-pressed', String(call.camOff));
    cam.querySelector('.lbl').textContent = call.camOff ? 'Camera on' : 'Camera off';
    cam.title = call.camOff ? 'Turn camera on' : 'Turn camera off';
    cam.disabled = !call.cameraTrack;
    const share = $('#share');
    share.setAttribute('aria-pressed', String(call.sharing));
    share.querySelector('.lbl').textContent = call.sharing ? 'Stop sharing' : 'Share screen';
  }

  #renderStatus() {
    const call = this.call;
    const el = $('#status');
    el.dataset.state = call.status;
    el.dataset.signaling = call.joined ? 'joined' : call.signaling.isOpen ? 'open' : 'down';
    let text = STATUS_TEXT[call.status] ?? call.status;
    if (!call.joined && call.everJoined && call.status !== 'reconnecting' && call.status !== 'ended') {
      text += ' · server connection lost, reconnecting…';
    }
    el.textContent = text;
    if (call.status === 'full') showView('room-full');
    this.#renderChatEnabled();
  }

  #renderTopology() {
    const el = $('#topology');
    el.dataset.mode = this.call.viaServer ? 'server' : 'p2p';
    el.textContent = this.call.viaServer ? 'via server' : 'peer-to-peer';
    el.title = this.call.viaServer
      ? 'Everyone sends their audio and video once, to the server, which forwards it to the others'
      : 'Audio and video go directly between the browsers; the server only introduces you';
  }

  #renderPublish() {
    const note = $('#detect-note');
    const s = this.call.publishState;
    note.dataset.state = s;
    note.textContent =
      s === 'publishing'
        ? this.call.publishWanted
          ? 'Your video is being analysed by the server.'
          : 'Your video goes to the others via the server; it is not analysed.'
        : s === 'connecting'
          ? 'Connecting your video to the detector…'
          : s === 'unavailable'
            ? 'Detection is not available on this server.'
            : s === 'forbidden'
              ? 'Your invitation does not allow sending your video to the detector; it goes only to the call.'
            : s === 'failed'
              ? 'Detector connection lost, retrying…'
              : this.call.publishWanted
                ? ''
                : 'Your video goes only to the call: the server does not receive it.';
  }

  #renderChatEnabled() {
    const can = this.call.canChat;
    $('#chat-input').disabled = !can;
    $('#chat-send').disabled = !can;
    $('#chat-input').placeholder = can ? 'Message' : 'Chat opens when someone joins';
  }

  #appendChat({ name, text, mine, system }) {
    const li = document.createElement('li');
    if (system) {
      li.className = 'system';
      li.textContent = text;
    } else {
      li.className = mine ? 'mine' : 'theirs';
      li.dataset.from = mine ? 'me' : 'peer';
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = mine ? 'You' : name || 'Guest';
      const body = document.createElement('span');
      body.className = 'text';
      body.textContent = text;
      li.append(from, body);
    }
    const log = $('#chat-log');
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  #copyLink() {
    return this.#copy(window.location.href, 'Link');
  }

  /** The WHIP URL + ingest key and the watch link, when the server gave the keys. */
  #renderKeys() {
    const { ingestKey, viewKey, room } = this.call;
    $('#ingest-panel').hidden = !ingestKey;
    const origin = window.location.origin;
    $('#ingest-url').value = ingestKey ? `${origin}/whip/${room}?name=Camera` : '';
    $('#ingest-key').value = ingestKey ?? '';
    $('#watch-field').hidden = !viewKey;
    $('#watch-link').value = viewKey ? `${origin}/watch/${room}#key=${viewKey}` : '';
  }

  async #copy(text, what) {
    try {
      await navigator.clipboard.writeText(text);
      toast(`${what} copied`);
    } catch {
      // Clipboard needs a secure context and permission; fall back to a prompt-free select.
      const input = Object.assign(document.createElement('input'), { value: text });
      document.body.append(input);
      input.select();
      const ok = document.execCommand?.('copy');
      input.remove();
      toast(ok ? `${what} copied` : text, ok ? 2200 : 6000);
    }
  }

  /** Capture times of the results received for a participant ('self' = own). */
  resultCaptureTimes(key) {
    return [...(this.store.captures.get(this.#participantOf(key)) ?? [])];
  }

  /**
   * What the overlay drew on the most recently displayed frame of every tile, keyed by
   * participant id (the self-view under our own id): see docs/web.md.
   */
  drawn() {
    const out = {};
    for (const [key, t] of this.tiles) {
      const pid = this.#participantOf(key);
      const d = t.overlay?.drawn;
      if (!pid || !d) continue;
      out[pid] = {
        ...d,
        boxes: d.boxes.map((b) => ({ ...b, box: [...b.box] })),
        glassToGlassMs: t.overlay.glassToGlassMs(),
      };
    }
    return out;
  }

  /** Capture-time pairs of what was drawn on a video (tests and the sync readout). */
  syncSamples(key) {
    const t = this.tiles.get(key);
    return t?.overlay ? t.overlay.samples.map((s) => ({ ...s })) : [];
  }
}

// WebSocket client for the signaling protocol (docs/protocol.md).
//
// Reconnects by itself with exponential backoff and jitter; the owner re-sends
// `join` (with `resume`) on every `open`. The `resume_token` of each `joined` is kept
// in this tab (sessionStorage, never localStorage) and added to a `join` that resumes
// that id, so only this tab can take its id back. Events:
//   open               the socket is up (first time or after a reconnect)
//   message {detail}   one parsed server message
//   close {detail}     the socket went down; detail.willRetry, detail.delayMs

const MIN_DELAY_MS = 500;
const TOKEN_PREFIX = 'callsight.resume.';

function storeToken(room, id, token) {
  try {
    sessionStorage.setItem(`${TOKEN_PREFIX}${room}.${id}`, token);
  } catch {
    // Storage unavailable: the id is simply not resumable.
  }
}

function storedToken(room, id) {
  try {
    return sessionStorage.getItem(`${TOKEN_PREFIX}${room}.${id}`);
  } catch {
    return null;
  }
}
const MAX_DELAY_MS = 10_000;

export class Signaling extends EventTarget {
  /** @param {string} url ws:// or wss:// URL of /ws */
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
  }

  static urlFor(location) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.warn('signaling: cannot open socket', err);
      this.#scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.dispatchEvent(new Event('open'));
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('signaling: ignoring a frame that is not JSON');
        return;
      }
      if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') return;
      if (msg.type === 'joined' && typeof msg.resume_token === 'string') storeToken(msg.room, msg.id, msg.resume_token);
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const willRetry = !this.stopped;
      const delayMs = willRetry ? this.#scheduleRetry() : 0;
      this.dispatchEvent(new CustomEvent('close', { detail: { code: ev.code, willRetry, delayMs } }));
    });
    // 'error' is always followed by 'close', which does the work.
  }

  /** Sends one message; returns false when the socket is not open (the message is dropped). */
  send(msg) {
    if (!this.isOpen) return false;
    if (msg.type === 'join' && msg.resume) {
      const token = storedToken(msg.room, msg.resume);
      if (token) msg = { ...msg, resume_token: token };
    }
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'bye');
    }
  }

  #scheduleRetry() {
    const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    // Jitter spreads the reconnect storm after a server restart.
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
    return delay;
  }
}

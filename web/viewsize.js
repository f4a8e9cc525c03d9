// How large each received video is shown, told to the server (`track-settings`,
// docs/protocol.md) so it forwards the simulcast layer that fits the tile: the smallest
// layer at least as tall as the tile, none at all for a tile that is not shown (0×0).
//
// Sizes are device pixels (CSS size × devicePixelRatio, rounded). A size goes out once
// it has been stable for DEBOUNCE_MS, and only when it differs from what this server
// session was last told by more than MIN_CHANGE (or goes to or from 0×0). After every
// server offer (a new session, or tracks that came or went) all current sizes are sent
// again. Messages are paced by a token bucket (BURST, PER_SEC) so resizing never eats
// the socket's message budget (--rate-per-sec, shared with everything else): a room of
// 16 (15 videos) is told at once, later changes at most 4/s; what waits keeps only its
// newest value per mid.
//
// Pure logic (timers injected), no DOM: ui.js measures the tiles, publish.js knows the
// mids of the session.

export const DEBOUNCE_MS = 250;
export const MIN_CHANGE = 0.1;
export const BURST = 16;
export const PER_SEC = 4;
export const MAX_SIDE = 8192;

/** Device-pixel size of a CSS box: integers in 0..=MAX_SIDE, 0×0 when either side is 0. */
export function devicePixels(cssWidth, cssHeight, dpr = 1) {
  const side = (v) => Math.min(MAX_SIDE, Math.max(0, Math.round((Number.isFinite(v) ? v : 0) * (Number.isFinite(dpr) && dpr > 0 ? dpr : 1))));
  const width = side(cssWidth);
  const height = side(cssHeight);
  return width === 0 || height === 0 ? { width: 0, height: 0 } : { width, height };
}

/** Whether `next` is worth telling the server, given that it was last told `prev`. */
export function sizeChanged(prev, next) {
  if (!prev) return true;
  const prevZero = prev.width === 0 || prev.height === 0;
  const nextZero = next.width === 0 || next.height === 0;
  if (prevZero || nextZero) return prevZero !== nextZero;
  const rel = (a, b) => Math.abs(a - b) / a;
  return rel(prev.width, next.width) > MIN_CHANGE || rel(prev.height, next.height) > MIN_CHANGE;
}

export class ViewSizes {
  /**
   * @param {object} o
   * @param {(msg: object) => boolean} o.send sends one signaling message
   * @param {() => number} [o.now] ms clock
   * @param {(fn: () => void, ms: number) => any} [o.setTimer]
   * @param {(id: any) => void} [o.clearTimer]
   */
  constructor({ send, now = () => performance.now(), setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (id) => clearTimeout(id) }) {
    this.send = send;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    /** participant → {width, height}: the settled size of its tile. */
    this.sizes = new Map();
    /** participant → {size, timer}: a size waiting to settle. */
    this.settling = new Map();
    /** mid → participant shown from it, or null (received but not shown: 0×0). */
    this.mids = new Map();
    /** mid → {participant, width, height}: what this session was last told. */
    this.sent = new Map();
    /** mid → message waiting for a token. */
    this.pending = new Map();
    this.tokens = BURST;
    this.refilledAt = now();
    this.flushTimer = null;
  }

  /** A tile's measured size (device pixels); goes out once it stays for DEBOUNCE_MS. */
  measure(participant, width, height) {
    const size = devicePixels(width, height, 1);
    const s = this.settling.get(participant);
    if (s) {
      s.size = size;
      this.clearTimer(s.timer);
    }
    const entry = s ?? { size, timer: null };
    entry.timer = this.setTimer(() => {
      this.settling.delete(participant);
      this.sizes.set(participant, entry.size);
      this.#update(participant);
    }, DEBOUNCE_MS);
    this.settling.set(participant, entry);
  }

  /** The participant's tile is gone. */
  forget(participant) {
    const s = this.settling.get(participant);
    if (s) this.clearTimer(s.timer);
    this.settling.delete(participant);
    this.sizes.delete(participant);
  }

  /**
   * The session's received video m-lines after a server offer was answered:
   * mid → the participant shown from it (null: received but not shown). Everything
   * known is sent again (the session may be fresh), paced.
   */
  setMids(mids) {
    this.mids = new Map(mids);
    for (const mid of [...this.pending.keys()]) if (!this.mids.has(mid)) this.pending.delete(mid);
    this.sent.clear();
    for (const mid of this.mids.keys()) this.#updateMid(mid);
  }

  /** A new connection to the server: nothing is known there yet, no mids here yet. */
  reset() {
    this.mids.clear();
    this.sent.clear();
    this.pending.clear();
    this.clearTimer(this.flushTimer);
    this.flushTimer = null;
  }

  /** What each mid was last told (tests, debugging): {mid: {participant, width, height}}. */
  snapshot() {
    return Object.fromEntries([...this.sent].map(([mid, v]) => [mid, { ...v }]));
  }

  #update(participant) {
    for (const [mid, p] of this.mids) if (p === participant) this.#updateMid(mid);
  }

  #updateMid(mid) {
    const participant = this.mids.get(mid);
    // A video received but not shown (e.g. a second video of one participant): 0×0.
    const size = participant === null ? { width: 0, height: 0 } : this.sizes.get(participant);
    if (!size) return; // its tile is not laid out yet
    const prev = this.sent.get(mid);
    if (prev && prev.participant === participant && !sizeChanged(prev, size)) {
      this.pending.delete(mid); // back to what the server has: nothing to say
      return;
    }
    this.pending.set(mid, { participant, ...size });
    this.#flush();
  }

  #flush() {
    const now = this.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.refilledAt) / 1000) * PER_SEC);
    this.refilledAt = now;
    for (const [mid, v] of this.pending) {
      if (this.tokens < 1) break;
      this.pending.delete(mid);
      if (!this.send({ type: 'track-settings', mid, width: v.width, height: v.height })) continue;
      this.tokens -= 1;
      this.sent.set(mid, v);
    }
    if (this.pending.size && this.flushTimer === null) {
      const wait = Math.max(10, ((1 - this.tokens) / PER_SEC) * 1000);
      this.flushTimer = this.setTimer(() => {
        this.flushTimer = null;
        this.#flush();
      }, wait);
    }
  }
}

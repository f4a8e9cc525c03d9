// Detection overlay: keeps the recent results of every published track and draws,
// on each displayed video frame, the result computed for that frame or the nearest
// earlier one, matched by capture time (the mechanism is in docs/sync.md).
//
//   DetectionStore  per-participant ring buffer of `detections` messages
//   TileOverlay     one per <video>: requestVideoFrameCallback loop, canvas drawing
//                   (tracked boxes placed by track.js), the aria-live list, the
//                   fps/latency readout, glass-to-glass latency, sync samples, drawn()

import { boxesAt } from './track.js';

const KEEP_RESULTS = 120;
const KEEP_MS = 6000;
// Capture times go through ms rounding and RTP-tick interpolation on the server: a
// result up to this much "later" than the frame still belongs to it. Far below the
// 33 ms between frames at 30 fps.
const MATCH_TOLERANCE_MS = 4;
// Boxes older than this are not drawn: when detection stops (publisher off, server
// overloaded) they must not stay frozen on a moving picture.
const STALE_MS = 2000;
const LIST_EVERY_MS = 250;
// A result whose capture time is this close to a displayed frame's is taken to be that
// frame (less than half of the 33 ms between frames at 30 fps).
const CALIBRATE_WITHIN_MS = 12;
const KEEP_SAMPLES = 2000;

export function wallClockSkewMs() {
  // performance.timeOrigin + performance.now() drifts from Date.now() when the system
  // clock is slewed; the server's capture times are wall clock.
  return Date.now() - (performance.timeOrigin + performance.now());
}

function num(x) {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/** Validates one server `detections` message; returns null when it is unusable. */
export function parseDetections(msg) {
  if (!msg || typeof msg.participant !== 'string' || !Array.isArray(msg.detections)) return null;
  const detections = [];
  for (const d of msg.detections.slice(0, 200)) {
    const box = Array.isArray(d?.box) ? d.box.map(num) : [];
    const score = num(d?.score);
    if (box.length !== 4 || box.some((v) => v === null) || score === null) continue;
    const label = typeof d.label === 'string' && d.label ? d.label.slice(0, 40) : `class ${num(d.class_id) ?? '?'}`;
    const trackId = Number.isSafeInteger(d.track_id) && d.track_id >= 0 ? d.track_id : null;
    const velocity = Array.isArray(d.velocity) && d.velocity.length === 4 && d.velocity.every((v) => num(v) !== null) ? d.velocity : null;
    detections.push({ label, score, box, classId: num(d.class_id), trackId, velocity, predicted: d.predicted === true });
  }
  return {
    participant: msg.participant,
    track: typeof msg.track === 'string' ? msg.track : String(msg.track ?? ''),
    rtp: num(msg.rtp_timestamp),
    capture: num(msg.capture_time),
    width: num(msg.width),
    height: num(msg.height),
    inferenceMs: num(msg.inference_ms),
    arrival: Date.now(),
    detections,
  };
}

export class DetectionStore extends EventTarget {
  constructor() {
    super();
    /** @type {Map<string, object[]>} participant → results, oldest first */
    this.results = new Map();
    /** @type {Map<string, number[]>} participant → capture times of recent results (for measuring sync) */
    this.captures = new Map();
  }

  add(msg) {
    const r = parseDetections(msg);
    if (!r) return null;
    let buf = this.results.get(r.participant);
    if (!buf) {
      buf = [];
      this.results.set(r.participant, buf);
    }
    buf.push(r);
    if (r.capture !== null) {
      let log = this.captures.get(r.participant);
      if (!log) this.captures.set(r.participant, (log = []));
      log.push(r.capture);
      if (log.length > 3000) log.splice(0, log.length - 3000);
    }
    // Results of one track arrive in capture order; keep it sorted if one is late.
    for (let i = buf.length - 1; i > 0 && r.capture !== null && buf[i - 1].capture !== null && buf[i - 1].capture > r.capture; i--) {
      [buf[i - 1], buf[i]] = [buf[i], buf[i - 1]];
    }
    while (buf.length > KEEP_RESULTS || (buf.length > 1 && r.arrival - buf[0].arrival > KEEP_MS)) buf.shift();
    this.dispatchEvent(new CustomEvent('result', { detail: r }));
    return r;
  }

  forget(participant) {
    this.results.delete(participant);
    this.captures.delete(participant);
  }

  latest(participant) {
    const buf = this.results.get(participant);
    return buf && buf.length ? buf[buf.length - 1] : null;
  }

  /**
   * The result for the frame captured at `capture` (sender wall clock, ms), or the
   * nearest earlier one. Without a capture time: the newest (receive order).
   */
  forFrame(participant, capture) {
    const i = this.indexForFrame(participant, capture);
    return i < 0 ? null : this.results.get(participant)[i];
  }

  /**
   * For a frame forwarded by the server (its RTP timestamp is the publisher's, unchanged):
   * the result of that very frame or the nearest earlier one, by RTP timestamp (90 kHz,
   * wrapping). `{index, ticks}` (ticks = how much later the frame is), or null.
   */
  indexForRtp(participant, rtp) {
    const buf = this.results.get(participant);
    if (!buf) return null;
    let best = null;
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i].rtp === null) continue;
      const ticks = (rtp - buf[i].rtp) >>> 0; // modulo 2^32: the RTP clock wraps
      if (ticks <= STALE_MS * 90 && (best === null || ticks < best.ticks)) best = { index: i, ticks };
    }
    return best;
  }

  /** Like forFrame, as an index into `results.get(participant)`; -1 = nothing to draw. */
  indexForFrame(participant, capture) {
    const buf = this.results.get(participant);
    if (!buf || buf.length === 0) return -1;
    const fresh = (i) => (Date.now() - buf[i].arrival <= STALE_MS ? i : -1);
    if (capture === null) return fresh(buf.length - 1);
    for (let i = buf.length - 1; i >= 0; i--) {
      const c = buf[i].capture;
      if (c === null) return fresh(i); // the server could not time it: receive order
      if (c <= capture + MATCH_TOLERANCE_MS) return capture - c <= STALE_MS ? i : -1;
    }
    return -1; // only results of later frames: draw nothing rather than the future
  }

  /** Capture → arrival latencies (ms, local clock) of the results of the last 6 s. */
  latencies(participant, clockOffsetMs) {
    const buf = this.results.get(participant) ?? [];
    const now = Date.now();
    return buf
      .filter((r) => r.capture !== null && now - r.arrival <= 6000)
      .map((r) => r.arrival - (r.capture - (clockOffsetMs ?? 0)));
  }

  /** Detection rate (results/s over the last 2 s) and median latency (ms). */
  stats(participant, clockOffsetMs) {
    const buf = this.results.get(participant) ?? [];
    const now = Date.now();
    const recent = buf.filter((r) => now - r.arrival <= 2000);
    const fps = recent.length / 2;
    const lat = recent
      .filter((r) => r.capture !== null)
      .map((r) => r.arrival - (r.capture - (clockOffsetMs ?? 0)))
      .sort((a, b) => a - b);
    const inf = recent.map((r) => r.inferenceMs).filter((x) => x !== null).sort((a, b) => a - b);
    return {
      fps,
      latencyMs: lat.length ? lat[Math.floor(lat.length / 2)] : null,
      inferenceMs: inf.length ? inf[Math.floor(inf.length / 2)] : null,
    };
  }
}

/**
 * Learns the constant error between a view's frame capture times and the server's.
 *
 * Each result names a frame that was (or will be) displayed on this view too, so its
 * capture time should equal one displayed frame's. A remote view's capture times are
 * Chromium's estimate of the sender's clock and can be a few ms off (≈ −4.6 ms measured
 * on loopback); results that land within CALIBRATE_WITHIN_MS of a displayed frame give
 * that error, and the median of the last 31 is added to the frame's capture time before
 * matching, so matching never slips to the neighbouring frame.
 */
export class CaptureCalibrator {
  constructor() {
    this.frames = []; // capture times of the last displayed frames
    this.residuals = [];
    this.residual = 0;
    this.last = -Infinity; // newest result capture time already looked at
  }

  /** One displayed frame; `results` = that participant's buffer, sorted by capture time. */
  frame(frameCapture, results) {
    const frames = this.frames;
    frames.push(frameCapture);
    if (frames.length > 90) frames.shift();
    let processed = this.last;
    for (let i = results.length - 1; i >= 0; i--) {
      const c = results[i].capture;
      if (c === null || c <= this.last) break;
      if (c > frameCapture + CALIBRATE_WITHIN_MS) continue; // its frame is not shown yet: later
      processed = Math.max(processed, c);
      if (c < frames[0] - CALIBRATE_WITHIN_MS) continue; // its frame is long gone
      let nearest = frames[0];
      for (const f of frames) if (Math.abs(f - c) < Math.abs(nearest - c)) nearest = f;
      const r = c - nearest;
      if (Math.abs(r) <= CALIBRATE_WITHIN_MS) {
        this.residuals.push(r);
        if (this.residuals.length > 31) this.residuals.shift();
      }
    }
    this.last = processed;
    if (this.residuals.length >= 5) {
      const sorted = [...this.residuals].sort((a, b) => a - b);
      this.residual = sorted[sorted.length >> 1];
    }
  }
}

/** Settings shared by all tiles (the side panel edits them). */
export class OverlaySettings extends EventTarget {
  constructor() {
    super();
    this.threshold = 0.4;
    this.classes = null; // Set of lower-case labels, or null = all
    this.hidden = new Set(); // participants whose boxes are switched off
    this.hold = false; // hold video back until its detections are in (sync.js); off: tracked boxes move with the picture instead (README, "Overlay quality")
    this.predict = true; // move tracked boxes to each frame's capture time (track.js)
  }

  setPredict(on) {
    this.predict = on;
    this.dispatchEvent(new Event('change'));
  }

  setHold(on) {
    this.hold = on;
    this.dispatchEvent(new Event('change'));
  }

  setThreshold(v) {
    this.threshold = v;
    this.dispatchEvent(new Event('change'));
  }

  setClassFilter(text) {
    const names = text
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean);
    this.classes = names.length ? new Set(names) : null;
    this.dispatchEvent(new Event('change'));
  }

  setShown(participant, shown) {
    if (shown) this.hidden.delete(participant);
    else this.hidden.add(participant);
    this.dispatchEvent(new Event('change'));
  }

  /** The boxes (of a result, or from track.js) that pass the threshold and the class filter. */
  visible(boxes) {
    return boxes.filter(
      (d) => d.score >= this.threshold && (this.classes === null || this.classes.has(d.label.toLowerCase())),
    );
  }
}

function colorFor(label) {
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h} 90% 55%)`;
}

export class TileOverlay {
  /**
   * @param {object} o
   * @param {HTMLVideoElement} o.video
   * @param {HTMLCanvasElement} o.canvas
   * @param {HTMLElement} o.list   the aria-live list
   * @param {HTMLElement} o.readout  fps / latency text
   * @param {DetectionStore} o.store
   * @param {OverlaySettings} o.settings
   * @param {() => string|null} o.participant  whose detections belong to this video
   * @param {boolean} o.isSelf  the local camera preview
   * @param {() => number|null} o.clockOffset  remote wall clock − local wall clock (ms)
   * @param {import('./sync.js').SyncController|null} [o.sync]  told how late each frame is shown
   * @param {() => boolean} [o.byRtp]  the video comes through the server: match results
   *   by the frame's RTP timestamp (exact), not by capture time
   */
  constructor({ video, canvas, list, readout, store, settings, participant, isSelf, clockOffset, sync = null, byRtp = () => false }) {
    Object.assign(this, { video, canvas, list, readout, store, settings, participant, isSelf, clockOffset, sync, byRtp });
    this.ctx = canvas.getContext('2d');
    this.stopped = false;
    this.lastListAt = 0;
    this.lastListText = '';
    this.lastBoxes = undefined;
    this.samples = []; // {frame, result, at, hold, residual}: capture times (sender clock, ms)
    this.calibrator = new CaptureCalibrator();
    this.cb = null;
    /** What was drawn on the most recently displayed frame (window.callsight.drawn()). */
    this.drawn = null;
    this.g2g = []; // {at, ms}: glass-to-glass latency of the boxes of recent frames
    this.onChange = () => this.#redrawLast();
    settings.addEventListener('change', this.onChange);
    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      this.#request();
    } else {
      // Old browsers: boxes by receive order, redrawn on each result.
      this.onResult = () => {
        const pid = this.participant();
        const buf = (pid && this.store.results.get(pid)) || [];
        this.#draw(boxesAt(buf, buf.length - 1, null), null);
      };
      store.addEventListener('result', this.onResult);
    }
  }

  stop() {
    this.stopped = true;
    this.settings.removeEventListener('change', this.onChange);
    if (this.onResult) this.store.removeEventListener('result', this.onResult);
    if (this.cb !== null) this.video.cancelVideoFrameCallback(this.cb);
    this.sync?.stop();
  }

  /** Capture time of a displayed frame on the sender's wall clock, or null. */
  frameCaptureTime(meta) {
    if (typeof meta.captureTime !== 'number') return null;
    const localWall = meta.captureTime + performance.timeOrigin + wallClockSkewMs();
    if (this.isSelf) return localWall;
    const offset = this.clockOffset();
    return localWall + (offset ?? 0);
  }

  /** Median glass-to-glass latency (ms) of the boxes drawn in the last 2 s, or null. */
  glassToGlassMs() {
    const now = performance.now();
    const recent = this.g2g.filter((g) => now - g.at <= 2000).map((g) => g.ms).sort((a, b) => a - b);
    return recent.length ? recent[recent.length >> 1] : null;
  }

  #request() {
    if (this.stopped) return;
    this.cb = this.video.requestVideoFrameCallback((now, meta) => {
      this.cb = null;
      try {
        this.#onFrame(now, meta);
      } finally {
        this.#request();
      }
    });
  }

  #onFrame(now, meta) {
    const pid = this.participant();
    if (!pid) return;
    const buf = this.store.results.get(pid) ?? [];
    const raw = this.frameCaptureTime(meta);
    let residual = 0;
    let capture;
    let index;
    if (!this.isSelf && typeof meta.rtpTimestamp === 'number' && this.byRtp()) {
      // Forwarded by the server: the frame's RTP timestamp names its result exactly.
      const hit = this.store.indexForRtp(pid, meta.rtpTimestamp);
      index = hit ? hit.index : -1;
      const rc = hit ? buf[hit.index].capture : null;
      capture = rc !== null ? rc + hit.ticks / 90 : raw;
    } else {
      if (raw !== null) this.calibrator.frame(raw, buf);
      residual = this.calibrator.residual;
      capture = raw === null ? null : raw + residual;
      index = this.store.indexForFrame(pid, capture);
    }
    const result = index < 0 ? null : buf[index];
    const boxes = index < 0 ? [] : boxesAt(buf, index, capture, { predict: this.settings.predict });
    const drawn = this.#draw(boxes, meta);
    this.drawn = {
      presentedFrames: meta.presentedFrames ?? null,
      mediaTime: meta.mediaTime ?? null,
      captureTime: capture,
      boxes: drawn.map((b) => ({ label: b.label, score: b.score, track_id: b.trackId, box: b.box, alpha: b.alpha })),
    };
    let displayLatency = null;
    if (typeof meta.captureTime === 'number' && typeof meta.expectedDisplayTime === 'number') {
      displayLatency = meta.expectedDisplayTime - meta.captureTime;
      this.sync?.frameShown(displayLatency);
    }
    // Glass to glass: from the capture of the frame a box was computed on to the display
    // of that box = how late this frame is shown + how much older its newest observation is.
    const observed = drawn.reduce((m, b) => (b.observed !== null && b.observed > m ? b.observed : m), -Infinity);
    if (displayLatency !== null && capture !== null && Number.isFinite(observed)) {
      this.g2g.push({ at: now, ms: displayLatency + (capture - observed) });
      if (this.g2g.length > 300) this.g2g.shift();
    }
    if (capture !== null && result && result.capture !== null) {
      this.samples.push({ frame: capture, result: result.capture, at: Date.now(), hold: this.sync?.hold ?? 0, residual });
      if (this.samples.length > KEEP_SAMPLES) this.samples.splice(0, this.samples.length - KEEP_SAMPLES);
    }
  }

  #redrawLast() {
    if (this.lastBoxes !== undefined) this.#draw(this.lastBoxes, null);
  }

  /** Draws the boxes that pass the settings; returns them, clipped to the frame. */
  #draw(boxes, meta) {
    this.lastBoxes = boxes;
    const { video, canvas, ctx } = this;
    const pid = this.participant();
    const cssW = canvas.clientWidth;
    const cssH = canvas.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const shown = pid !== null && !this.settings.hidden.has(pid);
    const dets = (shown ? this.settings.visible(boxes) : []).map((d) => ({ ...d, box: clip(d.box) })).filter((d) => d.box[2] > 0 && d.box[3] > 0);

    // The picture is letterboxed (object-fit: contain): boxes are normalised to it.
    const vw = meta?.width || video.videoWidth;
    const vh = meta?.height || video.videoHeight;
    if (vw && vh && cssW && cssH && dets.length) {
      const scale = Math.min(cssW / vw, cssH / vh);
      const pw = vw * scale;
      const ph = vh * scale;
      const ox = (cssW - pw) / 2;
      const oy = (cssH - ph) / 2;
      ctx.lineWidth = 2;
      ctx.font = '600 13px system-ui, sans-serif';
      ctx.textBaseline = 'top';
      for (const d of dets) {
        const [x, y, w, h] = d.box;
        const bx = ox + x * pw;
        const by = oy + y * ph;
        const color = colorFor(d.label);
        ctx.globalAlpha = d.alpha;
        ctx.setLineDash(d.predicted ? [6, 4] : []); // coasted by the tracker: not seen in that frame
        ctx.strokeStyle = color;
        ctx.strokeRect(bx, by, w * pw, h * ph);
        const text = `${d.trackId !== null ? `#${d.trackId} ` : ''}${d.label} ${Math.round(d.score * 100)}%`;
        const tw = ctx.measureText(text).width + 8;
        const ty = by >= 18 ? by - 18 : by;
        ctx.fillStyle = color;
        ctx.fillRect(bx - 1, ty, tw, 18);
        ctx.fillStyle = '#000';
        ctx.fillText(text, bx + 3, ty + 2);
      }
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
    }
    // The list names what is on the picture, not what is fading out.
    this.#updateList(dets.filter((d) => d.alpha >= 1), shown);
    return dets;
  }

  #updateList(dets, shown) {
    const now = performance.now();
    const text = shown ? dets.map((d) => `${d.label} ${Math.round(d.score * 100)}%`).join('|') : '';
    // A screen reader should not hear 30 updates a second: only changes, at most 4/s.
    if (text !== this.lastListText && now - this.lastListAt >= LIST_EVERY_MS) {
      this.lastListAt = now;
      this.lastListText = text;
      const items = dets.map((d) => {
        const li = document.createElement('li');
        li.dataset.label = d.label;
        li.dataset.score = d.score.toFixed(2);
        li.textContent = `${d.label} ${Math.round(d.score * 100)}%`;
        return li;
      });
      this.list.replaceChildren(...items);
    }
    if (now - (this.lastReadoutAt ?? 0) >= 500) {
      this.lastReadoutAt = now;
      const pid = this.participant();
      const s = pid ? this.store.stats(pid, this.isSelf ? 0 : this.clockOffset()) : null;
      if (s && s.fps > 0) {
        const lat = s.latencyMs !== null ? ` · ${Math.round(s.latencyMs)} ms` : '';
        const g2g = this.glassToGlassMs();
        const boxes = g2g !== null ? ` · boxes ${Math.round(g2g)} ms glass to glass` : '';
        const hold = this.sync && this.sync.hold > 0 ? ` · video held ${this.sync.hold} ms` : '';
        this.readout.textContent = `${s.fps.toFixed(1)} det/s${lat}${boxes}${hold}`;
        this.readout.dataset.g2gMs = g2g !== null ? String(Math.round(g2g)) : '';
        this.readout.title =
          'detections per second; capture → result latency' +
          `${s.inferenceMs !== null ? `; inference ${Math.round(s.inferenceMs)} ms` : ''}` +
          '; glass to glass: from the camera capturing a picture to the boxes found in it being on this screen (median of 2 s)';
      } else {
        this.readout.textContent = '';
        this.readout.dataset.g2gMs = '';
      }
    }
  }
}

/** A box cut to the frame (0..1). */
function clip([x, y, w, h]) {
  const x0 = Math.max(0, x);
  const y0 = Math.max(0, y);
  return [x0, y0, Math.max(0, Math.min(1, x + w) - x0), Math.max(0, Math.min(1, y + h) - y0)];
}

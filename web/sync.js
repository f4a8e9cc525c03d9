// Holds a video back just long enough for its detections to arrive (docs/sync.md).
//
// A result for a frame reaches the browser `detection latency` after the frame was
// captured; the frame itself is shown `display latency` after capture (≈ 0 for the
// self-view, the P2P path for a remote view). When the first is larger, boxes lag the
// picture. The controller measures both once a second and moves an actuator — the
// self-view's DelayLine or the remote receiver's jitterBufferTarget — so that
//   display latency ≈ p90(detection latency) + margin.
// Bounded (MAX_HOLD_MS) so a slow detector cannot make the call unusable.

const MARGIN_MS = 15;
const MAX_HOLD_MS = 800;
// Damp the loop (the display latency follows the actuator with a lag): catch up fast
// when boxes would trail the picture, give latency back slowly so sparse results
// (a jumpy p90) do not make the hold swing.
const GAIN_UP = 0.7;
const GAIN_DOWN = 0.25;

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export class SyncController {
  /**
   * @param {object} o
   * @param {() => number[]} o.detectionLatencies  recent capture → result-arrival latencies (ms, local clock)
   * @param {{get: () => number, set: (ms: number) => void}} o.actuator
   */
  constructor({ detectionLatencies, actuator }) {
    this.detectionLatencies = detectionLatencies;
    this.actuator = actuator;
    this.display = []; // {at, ms}
    this.enabled = true;
    this.hold = 0;
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /** One displayed frame: how long after its capture it is shown (ms). */
  frameShown(displayLatencyMs) {
    if (!Number.isFinite(displayLatencyMs)) return;
    const now = performance.now();
    this.display.push({ at: now, ms: displayLatencyMs });
    if (this.display.length > 600) this.display.shift(); // bounded if tick() stops being called
  }

  setEnabled(on) {
    this.enabled = on;
    if (!on) this.#apply(0);
  }

  tick() {
    if (!this.enabled) return;
    const det = this.detectionLatencies().sort((a, b) => a - b);
    if (det.length < 2) {
      // No detections (off, or the server has no detector): no reason to hold video.
      if (this.hold > 0) this.#apply(this.hold * 0.5 < 5 ? 0 : this.hold * 0.5);
      return;
    }
    // Display latency since the last step only: earlier frames were shown under the old hold.
    const shown = quantile(this.display.map((d) => d.ms).sort((a, b) => a - b), 0.5);
    this.display = [];
    if (shown === null) return;
    const error = quantile(det, 0.9) + MARGIN_MS - shown;
    const gain = error > 0 ? GAIN_UP : GAIN_DOWN;
    this.#apply(Math.min(MAX_HOLD_MS, Math.max(0, this.hold + gain * error)));
  }

  stop() {
    clearInterval(this.timer);
  }

  #apply(ms) {
    this.hold = Math.round(ms);
    try {
      this.actuator.set(this.hold);
    } catch (err) {
      console.warn('sync: cannot apply hold', err);
    }
  }
}

// Where the boxes of one participant's results are on a given displayed frame
// (docs/sync.md §4): tracked objects (`track_id`) are moved to the frame's capture time
// from their own last observation, lost tracks fade out, untracked boxes are drawn as
// the result says. Pure functions, no DOM: tests/e2e/unit.test.js checks them.

// Never extrapolate further than this past a track's last observation: a prediction
// gets worse with distance, and a stalled detector must not send boxes flying.
export const MAX_EXTRAPOLATE_MS = 500;
// A track that is missing from the results fades out over this long, from the capture
// time of the first result without it.
export const FADE_MS = 400;
// Observations older than this (before the frame) are not looked at.
export const TRACK_WINDOW_MS = 2000;
// Two observations closer than this do not give a velocity (rounding noise).
const MIN_VELOCITY_SPAN_MS = 10;

function finite4(v) {
  return Array.isArray(v) && v.length === 4 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

/**
 * Velocity of a track in box units per second: the server's, else from its two most
 * recent observations, else none.
 * @param {{capture: number, det: object}} last
 * @param {{capture: number, det: object}|null} prev
 */
export function trackVelocity(last, prev) {
  if (finite4(last.det.velocity)) return last.det.velocity;
  if (prev && last.capture - prev.capture >= MIN_VELOCITY_SPAN_MS) {
    const s = (last.capture - prev.capture) / 1000;
    return last.det.box.map((x, i) => (x - prev.det.box[i]) / s);
  }
  return [0, 0, 0, 0];
}

/** `box` moved by `velocity` (per second) over `dtMs`, clamped to MAX_EXTRAPOLATE_MS. */
export function extrapolate(box, velocity, dtMs) {
  const dt = Math.min(MAX_EXTRAPOLATE_MS, Math.max(0, dtMs)) / 1000;
  const [x, y, w, h] = box.map((b, i) => b + velocity[i] * dt);
  return [x, y, Math.max(0, w), Math.max(0, h)];
}

/**
 * The boxes to draw on a frame captured at `frame` (ms, same clock as the results).
 *
 * @param {object[]} results  one participant's results, oldest first, each
 *   `{capture, detections: [{label, score, box, trackId?, velocity?, predicted?}]}`
 * @param {number} baseIndex  index of the result for this frame (the newest with
 *   capture ≤ frame, as DetectionStore.forFrame picks it)
 * @param {number|null} frame  the frame's capture time; null = unknown
 * @param {{predict?: boolean}} [o]  predict = false: today's drawing (the base result as is)
 * @returns {{label: string, score: number, trackId: number|null, box: number[], alpha: number, predicted: boolean, observed: number|null}[]}
 *   `observed`: capture time of the observation the box comes from
 */
export function boxesAt(results, baseIndex, frame, { predict = true } = {}) {
  const base = results[baseIndex];
  if (!base) return [];
  const asIs = (d, alpha = 1) => ({
    label: d.label,
    score: d.score,
    trackId: d.trackId ?? null,
    box: d.box,
    alpha,
    predicted: Boolean(d.predicted),
    observed: base.capture,
  });
  if (!predict || frame === null || base.capture === null) return base.detections.map((d) => asIs(d));

  const out = [];
  // Newest and second-newest observation of every track up to the base result, and
  // the capture time of the first result after its newest one (where it went missing).
  const tracks = new Map();
  for (let i = baseIndex; i >= 0; i--) {
    const r = results[i];
    if (r.capture === null || r.capture < frame - TRACK_WINDOW_MS) break;
    for (const det of r.detections) {
      if (det.trackId === null || det.trackId === undefined) {
        if (i === baseIndex) out.push(asIs(det));
        continue;
      }
      const t = tracks.get(det.trackId);
      if (!t) tracks.set(det.trackId, { last: { capture: r.capture, det }, prev: null, missingSince: results[i + 1]?.capture ?? null, inBase: i === baseIndex });
      else if (!t.prev && r.capture < t.last.capture) t.prev = { capture: r.capture, det };
    }
  }
  for (const [trackId, t] of tracks) {
    let alpha = 1;
    if (!t.inBase) {
      if (t.missingSince === null) continue;
      alpha = 1 - (frame - t.missingSince) / FADE_MS;
      if (alpha <= 0) continue;
      alpha = Math.min(1, alpha);
    }
    const v = trackVelocity(t.last, t.prev);
    out.push({
      label: t.last.det.label,
      score: t.last.det.score,
      trackId,
      box: extrapolate(t.last.det.box, v, frame - t.last.capture),
      alpha,
      predicted: Boolean(t.last.det.predicted),
      observed: t.last.capture,
    });
  }
  return out;
}

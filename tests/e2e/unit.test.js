// Unit tests of the client's pure logic (no browser): result matching, parsing of
// untrusted `detections` messages, the H.264 codec filter, the hold controller, the
// topology rule, server offers' track lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DetectionStore, parseDetections, OverlaySettings, CaptureCalibrator } from '../../web/overlay.js';
import { h264Codecs, parseTracks } from '../../web/publish.js';
import { viaServerRule } from '../../web/topology.js';
import { tokenGrants } from '../../web/grants.js';
import { SyncController } from '../../web/sync.js';
import { boxesAt, extrapolate, trackVelocity, FADE_MS } from '../../web/track.js';

function msg(capture, extra = {}) {
  return {
    type: 'detections',
    participant: 'p1',
    track: '0',
    rtp_timestamp: 0,
    capture_time: capture,
    width: 640,
    height: 480,
    inference_ms: 10,
    detections: [{ class_id: 0, label: 'person', score: 0.9, box: [0.1, 0.1, 0.2, 0.2] }],
    ...extra,
  };
}

test('forFrame picks the result of that frame or the nearest earlier one, never a later one', () => {
  const store = new DetectionStore();
  const caps = [1000, 1033.3, 1066.7, 1100];
  for (const c of caps) store.add(msg(c));
  for (const frame of [1000, 1010, 1033.3, 1050, 1099, 1100, 3000]) {
    const got = store.forFrame('p1', frame).capture;
    const want = Math.max(...caps.filter((c) => c <= frame + 4));
    assert.equal(got, want, `frame ${frame}`);
  }
  // Only results of later frames: nothing rather than the future.
  assert.equal(store.forFrame('p1', 900), null);
  // A frame 3 ms before a result still takes it (ms rounding on the server).
  assert.equal(store.forFrame('p1', 1097).capture, 1100);
  // Unknown participant.
  assert.equal(store.forFrame('nobody', 1000), null);
  // Too old to draw: detection stopped, the boxes must not freeze on the picture.
  assert.equal(store.forFrame('p1', 1100 + 1999).capture, 1100);
  assert.equal(store.forFrame('p1', 1100 + 2001), null);
});

test('forFrame without a frame capture time falls back to receive order', () => {
  const store = new DetectionStore();
  store.add(msg(2000));
  store.add(msg(1000)); // late arrival is sorted in by capture time
  assert.equal(store.forFrame('p1', null).capture, 2000);
  assert.equal(store.forFrame('p1', 1500).capture, 1000);
});

test('results are kept in a bounded buffer', () => {
  const store = new DetectionStore();
  for (let i = 0; i < 1000; i++) store.add(msg(i * 33));
  const buf = store.results.get('p1');
  assert.ok(buf.length <= 120, `kept ${buf.length}`);
  assert.equal(buf[buf.length - 1].capture, 999 * 33);
});

test('parseDetections refuses or cleans untrusted input', () => {
  assert.equal(parseDetections(null), null);
  assert.equal(parseDetections({ participant: 7, detections: [] }), null);
  assert.equal(parseDetections({ participant: 'p', detections: 'x' }), null);
  const r = parseDetections({
    participant: 'p',
    capture_time: 'soon',
    detections: [
      { label: 'ok', score: 0.5, box: [0, 0, 1, 1] },
      { label: 'short box', score: 0.5, box: [0, 0, 1] },
      { label: 'nan', score: 0.5, box: [0, 0, NaN, 1] },
      { label: 'no score', box: [0, 0, 1, 1] },
      null,
      { label: 'x'.repeat(500), score: 0.1, box: [0, 0, 1, 1] },
    ],
  });
  assert.equal(r.capture, null);
  assert.deepEqual(r.detections.map((d) => d.label.length), [2, 40]);
  const many = parseDetections({ participant: 'p', detections: Array(10_000).fill({ label: 'a', score: 1, box: [0, 0, 1, 1] }) });
  assert.ok(many.detections.length <= 200);
});

test('threshold and class filter decide what is shown', () => {
  const s = new OverlaySettings();
  const r = parseDetections({
    participant: 'p',
    detections: [
      { label: 'person', score: 0.9, box: [0, 0, 1, 1] },
      { label: 'Dog', score: 0.6, box: [0, 0, 1, 1] },
      { label: 'cup', score: 0.3, box: [0, 0, 1, 1] },
    ],
  });
  s.setThreshold(0.5);
  assert.deepEqual(s.visible(r.detections).map((d) => d.label), ['person', 'Dog']);
  s.setClassFilter(' dog , cup ');
  assert.deepEqual(s.visible(r.detections).map((d) => d.label), ['Dog']);
  s.setThreshold(0.2);
  assert.deepEqual(s.visible(r.detections).map((d) => d.label), ['Dog', 'cup']);
  s.setClassFilter('');
  assert.equal(s.visible(r.detections).length, 3);
});

test('h264Codecs keeps only constrained-baseline H.264 with packetization-mode=1', () => {
  // The shape RTCRtpReceiver.getCapabilities('video') has in Chromium.
  const caps = {
    codecs: [
      { mimeType: 'video/VP8', clockRate: 90000 },
      { mimeType: 'video/rtx', clockRate: 90000, sdpFmtpLine: 'apt=96' },
      { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f' },
      { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f' },
      { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' },
      { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f' },
      { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032' },
      { mimeType: 'video/AV1', clockRate: 90000 },
    ],
  };
  const got = h264Codecs(caps).map((c) => /profile-level-id=(\w+)/.exec(c.sdpFmtpLine)[1]);
  assert.deepEqual(got, ['42e01f', '42001f']);
  assert.deepEqual(h264Codecs({ codecs: [{ mimeType: 'video/VP8' }] }), []);
  assert.deepEqual(h264Codecs(null), []);
});

test('the hold controller converges to detection latency minus what the display already waits', () => {
  const BASE_DISPLAY_MS = 40; // e.g. the P2P path of a remote view
  const DETECTION_MS = 180;
  let hold = 0;
  const c = new SyncController({
    detectionLatencies: () => Array.from({ length: 20 }, (_, i) => DETECTION_MS - 10 + i), // p90 = DETECTION_MS + 8
    actuator: { get: () => hold, set: (ms) => (hold = ms) },
  });
  c.stop(); // drive it by hand
  for (let step = 0; step < 15; step++) {
    for (let i = 0; i < 30; i++) c.frameShown(BASE_DISPLAY_MS + hold);
    c.tick();
  }
  const p90 = DETECTION_MS + 8;
  const want = p90 + 15 - BASE_DISPLAY_MS; // 15 ms margin
  assert.ok(Math.abs(hold - want) <= 3, `hold ${hold} ms, want ≈ ${want} ms`);

  // No detections any more: the hold goes back to zero.
  const idle = new SyncController({ detectionLatencies: () => [], actuator: { get: () => hold, set: (ms) => (hold = ms) } });
  idle.stop();
  idle.hold = hold;
  for (let step = 0; step < 10; step++) idle.tick();
  assert.equal(hold, 0);

  // Bounded whatever the detector does.
  const slow = new SyncController({ detectionLatencies: () => [5000, 5000, 5000], actuator: { get: () => hold, set: (ms) => (hold = ms) } });
  slow.stop();
  for (let step = 0; step < 20; step++) {
    slow.frameShown(hold);
    slow.tick();
  }
  assert.ok(hold <= 800, `hold ${hold}`);
});

test('the calibrator learns a constant capture-time error so matching stays on the right frame', () => {
  for (const err of [7, -9, 0]) {
    const store = new DetectionStore();
    const cal = new CaptureCalibrator();
    const FRAME = 1000 / 30;
    const t0 = 1_795_000_000_000;
    let wrongWithout = 0;
    let wrongWith = 0;
    for (let i = 0; i < 300; i++) {
      const frame = t0 + i * FRAME;
      // The server detects every 3rd frame; its clock reads `err` ms off this view's,
      // with sub-ms noise. The result arrives 4 frames later.
      if (i % 3 === 0) store.add(msg(frame + err + ((i * 7) % 10) / 10 - 0.5, { participant: 'p1' }));
      if (i < 4) continue;
      const shown = t0 + (i - 4) * FRAME; // the held-back frame on screen now
      if (i % 50 === 0) continue; // a dropped frame now and then
      cal.frame(shown, store.results.get('p1'));
      const want = t0 + Math.floor((i - 4) / 3) * 3 * FRAME + err; // its own result or the nearest earlier
      const near = (r) => r !== null && Math.abs(r.capture - want) < 1;
      if (!near(store.forFrame('p1', shown))) wrongWithout += 1;
      if (i > 60 && !near(store.forFrame('p1', shown + cal.residual))) wrongWith += 1;
    }
    assert.ok(Math.abs(cal.residual - err) <= 1, `error ${err}: learnt ${cal.residual}`);
    assert.equal(wrongWith, 0, `error ${err}: ${wrongWith} frames matched the wrong result after calibration`);
    if (err > 4) assert.ok(wrongWithout > 0, 'the uncalibrated match must slip for a large positive error');
  }
});

// Tracked drawing (web/track.js): a box moving right at 0.5 frame widths per second.
function tracked(capture, x, extra = {}) {
  return msg(capture, {
    detections: [{ class_id: 0, label: 'person', score: 0.9, box: [x, 0.2, 0.2, 0.4], track_id: 7, ...extra }],
  });
}
const close = (a, b, eps = 1e-9) => a.every((v, i) => Math.abs(v - b[i]) <= eps);

test('a tracked box is placed at the frame capture time from its two latest observations', () => {
  const store = new DetectionStore();
  store.add(tracked(1000, 0.1));
  store.add(tracked(1100, 0.15));
  store.add(tracked(1200, 0.2));
  const buf = store.results.get('p1');
  const at = (frame, o) => boxesAt(buf, store.indexForFrame('p1', frame), frame, o);
  // 50 ms after the last observation: 0.2 + 0.5/s × 0.05 s.
  const [b] = at(1250);
  assert.equal(b.trackId, 7);
  assert.ok(close(b.box, [0.225, 0.2, 0.2, 0.4]), `got ${b.box}`);
  assert.equal(b.alpha, 1);
  // On an observed frame: the observation itself.
  assert.ok(close(at(1100)[0].box, [0.15, 0.2, 0.2, 0.4]));
  // Between two observations the older one is the base (never a later result): 1150
  // is predicted from 1000 and 1100.
  assert.ok(close(at(1150)[0].box, [0.175, 0.2, 0.2, 0.4]));
  // Extrapolation stops 500 ms after the last observation.
  assert.ok(close(at(2000)[0].box, [0.45, 0.2, 0.2, 0.4]));
  // Today's drawing: the base result as it came.
  assert.ok(close(at(1250, { predict: false })[0].box, [0.2, 0.2, 0.2, 0.4]));
  // No frame time (remote view, first seconds): as it came.
  assert.ok(close(boxesAt(buf, 2, null)[0].box, [0.2, 0.2, 0.2, 0.4]));
});

test("the server's velocity wins over the observations; untracked boxes are drawn as they came", () => {
  const store = new DetectionStore();
  store.add(tracked(1000, 0.1));
  store.add(
    msg(1100, {
      detections: [
        { class_id: 0, label: 'person', score: 0.9, box: [0.15, 0.2, 0.2, 0.4], track_id: 7, velocity: [-1, 0, 0.1, 0] },
        { class_id: 41, label: 'cup', score: 0.8, box: [0.6, 0.6, 0.1, 0.1] },
      ],
    }),
  );
  const buf = store.results.get('p1');
  const boxes = boxesAt(buf, store.indexForFrame('p1', 1200), 1200);
  const person = boxes.find((b) => b.label === 'person');
  const cup = boxes.find((b) => b.label === 'cup');
  assert.ok(close(person.box, [0.05, 0.2, 0.21, 0.4]), `got ${person.box}`);
  assert.equal(cup.trackId, null);
  assert.ok(close(cup.box, [0.6, 0.6, 0.1, 0.1]));
  // A shrinking box never gets a negative size.
  assert.deepEqual(extrapolate([0.5, 0.5, 0.1, 0.1], [0, 0, -1, -1], 300), [0.5, 0.5, 0, 0]);
});

test('a track missing from the results fades out instead of sticking', () => {
  const store = new DetectionStore();
  store.add(tracked(1000, 0.1));
  store.add(tracked(1100, 0.1));
  store.add(msg(1200, { detections: [] })); // the object is gone from here on
  store.add(msg(1300, { detections: [] }));
  const buf = store.results.get('p1');
  const at = (frame) => boxesAt(buf, store.indexForFrame('p1', frame), frame);
  assert.equal(at(1150)[0].alpha, 1);
  // FADE_MS after the first result without it, from full to nothing.
  const mid = at(1200 + FADE_MS / 2)[0];
  assert.ok(Math.abs(mid.alpha - 0.5) < 1e-9, `alpha ${mid.alpha}`);
  assert.equal(at(1200 + FADE_MS + 1).length, 0);
});

test('parseDetections takes track_id, velocity and predicted only when well-formed', () => {
  const r = parseDetections({
    participant: 'p',
    detections: [
      { label: 'a', score: 0.5, box: [0, 0, 1, 1], track_id: 3, velocity: [0.1, 0, 0, 0], predicted: true },
      { label: 'b', score: 0.5, box: [0, 0, 1, 1], track_id: -1, velocity: [0.1, 'x', 0, 0], predicted: 'yes' },
      { label: 'c', score: 0.5, box: [0, 0, 1, 1], track_id: 1.5, velocity: [1, 2, 3] },
    ],
  });
  assert.deepEqual(
    r.detections.map((d) => [d.trackId, d.velocity, d.predicted]),
    [
      [3, [0.1, 0, 0, 0], true],
      [null, null, false],
      [null, null, false],
    ],
  );
  // A velocity from two observations needs them apart in time (no division by ~0).
  const v = trackVelocity({ capture: 1000, det: { box: [0.2, 0, 0, 0] } }, { capture: 999.5, det: { box: [0.1, 0, 0, 0] } });
  assert.deepEqual(v, [0, 0, 0, 0]);
});

test('forwarded frames find their result by RTP timestamp, across the wrap, never a later one', () => {
  const store = new DetectionStore();
  const base = 4_294_960_000; // 2^32 − 7296: the clock wraps between the results
  for (const [i, rtp] of [base, (base + 9000) >>> 0, (base + 18000) >>> 0].entries()) {
    store.add(msg(1000 + i * 100, { rtp_timestamp: rtp }));
  }
  assert.deepEqual(store.indexForRtp('p1', (base + 9000) >>> 0), { index: 1, ticks: 0 }, 'the very frame');
  assert.deepEqual(store.indexForRtp('p1', (base + 12000) >>> 0), { index: 1, ticks: 3000 }, 'nearest earlier');
  assert.deepEqual(store.indexForRtp('p1', (base + 20000) >>> 0), { index: 2, ticks: 2000 }, 'after the wrap');
  assert.equal(store.indexForRtp('p1', base - 3000), null, 'a frame before every result gets none');
  assert.equal(store.indexForRtp('p1', (base + 18000 + 90 * 2001) >>> 0), null, 'stale');
  assert.equal(store.indexForRtp('nobody', base), null);
});

test('topology: 1:1 without analysis is peer to peer; analysis, a third person or a failed direct path goes via the server, and stays', () => {
  const rule = (o) => viaServerRule({ mediaEnabled: true, participants: 2, analysis: false, viaServer: false, ...o });
  assert.equal(rule({}), false);
  assert.equal(rule({ participants: 1 }), false);
  assert.equal(rule({ analysis: true }), true);
  assert.equal(rule({ participants: 3 }), true);
  assert.equal(rule({ viaServer: true }), true, 'once via the server, it stays');
  assert.equal(rule({ p2pFailed: true }), true, 'the direct path failed: fall back to the server');
  assert.equal(rule({ mediaEnabled: false, participants: 5, analysis: true }), false, 'no media leg: always peer to peer');
});

test('parseTracks keeps only well-formed entries of a server offer', () => {
  const t = parseTracks([
    { mid: '3', participant: 'p1', track: '0', kind: 'video' },
    { mid: '4', participant: 'p1', track: '1', kind: 'audio' },
    { mid: 5, participant: 'p2', kind: 'video' },
    { mid: '6', participant: 'p2', kind: 'data' },
    null,
  ]);
  assert.deepEqual([...t.keys()], ['3', '4']);
  assert.deepEqual(t.get('3'), { participant: 'p1', track: '0', kind: 'video' });
  assert.equal(parseTracks('junk').size, 0);
});

test('tokenGrants reads a token\'s video grants; anything unreadable grants all (the server decides)', () => {
  const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = (video) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: 'ada', video })}.sig`;
  assert.deepEqual(tokenGrants(token({ room: 'r', roomJoin: true, canPublish: false, canSubscribe: true })), {
    canPublish: false,
    canSubscribe: true,
  });
  assert.deepEqual(tokenGrants(token({ room: 'r', roomJoin: true })), { canPublish: true, canSubscribe: true });
  assert.deepEqual(tokenGrants(token({ canSubscribe: false })), { canPublish: true, canSubscribe: false });
  for (const bad of [null, '', 'not-a-jwt', 'a.%%%.c', `x.${b64url([1])}.y`]) {
    assert.deepEqual(tokenGrants(bad), { canPublish: true, canSubscribe: true }, String(bad));
  }
});

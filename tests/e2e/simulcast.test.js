// Simulcast (issue 12): a camera published via the server goes out as three H.264
// layers (rids q, h, f: 320×180, 640×360, 1280×720 for a 1280×720 camera); each
// subscriber tells the server how large it shows each video (`track-settings`, device
// pixels, 0×0 = not shown) and receives the layer that fits; the detector runs on the
// 640×360 layer. The first test checks the client's pacing logic without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ViewSizes, devicePixels, sizeChanged, DEBOUNCE_MS, BURST, PER_SEC } from '../../web/viewsize.js';
import { simulcastEncodings } from '../../web/publish.js';
import {
  serverAndBrowser,
  mediaConfig,
  newPerson,
  joinFromLobby,
  ROOM_URL,
  waitFor,
  screenshot,
  reportFailure,
} from './lib/browser.js';

const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);

/** A clock and timers under the test's control. */
function fakeTime() {
  let now = 0;
  let seq = 0;
  const timers = new Map();
  return {
    now: () => now,
    setTimer: (fn, ms) => {
      timers.set(++seq, { at: now + ms, fn });
      return seq;
    },
    clearTimer: (id) => timers.delete(id),
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const next = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
  };
}

test('view sizes: device pixels, settled, only real changes, paced, all again after a server offer', () => {
  assert.deepEqual(devicePixels(320.4, 180.6, 2), { width: 641, height: 361 });
  assert.deepEqual(devicePixels(0, 180, 1), { width: 0, height: 0 });
  assert.deepEqual(devicePixels(99999, 1, 1), { width: 8192, height: 1 });
  assert.equal(sizeChanged({ width: 640, height: 360 }, { width: 690, height: 390 }), false); // < 10 %
  assert.equal(sizeChanged({ width: 640, height: 360 }, { width: 640, height: 400 }), true);
  assert.equal(sizeChanged({ width: 0, height: 0 }, { width: 2, height: 2 }), true);
  assert.equal(sizeChanged({ width: 2, height: 2 }, { width: 0, height: 0 }), true);

  const time = fakeTime();
  const sent = [];
  const v = new ViewSizes({ send: (m) => sent.push(m) > 0, ...time });
  v.setMids(new Map([['1', 'alice'], ['3', 'bob'], ['5', null]]));
  // The hidden second video of someone goes out as 0×0 at once; the tiles once settled.
  assert.deepEqual(sent, [{ type: 'track-settings', mid: '5', width: 0, height: 0 }]);
  v.measure('alice', 300, 200);
  time.advance(100);
  v.measure('alice', 640, 360); // still resizing: the debounce starts again
  time.advance(DEBOUNCE_MS - 1);
  assert.equal(sent.length, 1);
  time.advance(1);
  assert.deepEqual(sent.at(-1), { type: 'track-settings', mid: '1', width: 640, height: 360 });
  v.measure('alice', 660, 370); // < 10 %: nothing
  time.advance(DEBOUNCE_MS);
  assert.equal(sent.length, 2);
  v.measure('alice', 0, 0); // paged out
  time.advance(DEBOUNCE_MS);
  assert.deepEqual(sent.at(-1), { type: 'track-settings', mid: '1', width: 0, height: 0 });
  // A flood of changes is paced by the token bucket; what waits keeps its newest value.
  time.advance(10_000);
  const before = sent.length;
  for (let i = 0; i < 20; i++) {
    v.measure('bob', 100 + i * 50, 100 + i * 50);
    time.advance(DEBOUNCE_MS);
  }
  const burst = sent.length - before;
  assert.ok(burst <= BURST + Math.ceil((20 * DEBOUNCE_MS * PER_SEC) / 1000), `sent ${burst}`);
  time.advance(5000);
  // The server ends within 10 % of the final size.
  assert.equal(sent.at(-1).mid, '3');
  assert.ok(!sizeChanged(sent.at(-1), { width: 1050, height: 1050 }), JSON.stringify(sent.at(-1)));
  // A server offer (maybe a fresh session): every known size again.
  const n = sent.length;
  time.advance(10_000);
  v.setMids(new Map([['1', 'alice'], ['3', 'bob']]));
  time.advance(5000);
  assert.deepEqual(
    sent.slice(n).map((m) => [m.mid, m.width, m.height]).sort(),
    [['1', 0, 0], ['3', 1050, 1050]],
  );
  // A new connection: nothing is sent before its offer names the mids.
  v.reset();
  v.measure('alice', 800, 450);
  time.advance(5000);
  assert.equal(sent.length, n + 2);
});

test('layers per camera size: what Chromium will really send (at most 3 from 960×540, 2 from 480×270)', () => {
  const rids = (w, h) => (simulcastEncodings(w, h) ?? []).map((e) => `${e.rid}/${e.scaleResolutionDownBy}`).join(' ');
  assert.equal(rids(1280, 720), 'q/4 h/2 f/1');
  assert.equal(rids(1920, 1080), 'q/4 h/2 f/1');
  assert.equal(rids(960, 540), 'q/4 h/2 f/1');
  assert.equal(rids(640, 480), 'h/2 f/1');
  assert.equal(rids(480, 270), 'h/2 f/1');
  assert.equal(rids(400, 300), '');
  assert.equal(rids(undefined, undefined), 'q/4 h/2 f/1');
  // Lowest first, with a bitrate cap per layer.
  assert.deepEqual(simulcastEncodings(1280, 720).map((e) => e.maxBitrate), [150_000, 500_000, 1_500_000]);
});

/** The page's outbound video streams to the server: {rid, width, height, bytes, fps, limit}. */
function outboundVideo(page) {
  return page.evaluate(async () => {
    const pc = window.callsight.publisherConnection();
    const out = [];
    if (!pc) return out;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.push({
          rid: r.rid ?? null,
          width: r.frameWidth ?? 0,
          height: r.frameHeight ?? 0,
          bytes: r.bytesSent ?? 0,
          fps: r.framesPerSecond ?? 0,
          active: r.active,
          limit: r.qualityLimitationReason,
          encoder: r.encoderImplementation,
        });
      }
    });
    out.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
    return out;
  });
}

/** What the page's congestion control (with the server's REMB) lets it send to the server, kbit/s. */
function availableKbps(page) {
  return page.evaluate(async () => {
    let kbps = null;
    (await window.callsight.publisherConnection()?.getStats())?.forEach((r) => {
      if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate) kbps = Math.round(r.availableOutgoingBitrate / 1000);
    });
    return kbps;
  });
}

/** The page's inbound video from `participant` via the server: {mid, width, height, frames}, or null. */
function inboundFrom(page, participant) {
  return page.evaluate(async (pid) => {
    const pc = window.callsight.publisherConnection();
    if (!pc) return null;
    const stream = [...document.querySelectorAll('.tile')].find((el) => el.dataset.peer === pid)?.querySelector('video')?.srcObject;
    const track = stream?.getVideoTracks()[0];
    const tr = pc.getTransceivers().find((t) => track && t.receiver.track === track);
    if (!tr) return null;
    let got = null;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.mid === tr.mid) {
        got = { mid: tr.mid, width: r.frameWidth ?? 0, height: r.frameHeight ?? 0, frames: r.framesReceived ?? 0, decoded: r.framesDecoded ?? 0 };
      }
    });
    return got;
  }, participant);
}

/** The size (device pixels) of `participant`'s video tile on a page. */
function tileSize(page, participant) {
  return page.evaluate((pid) => {
    const v = [...document.querySelectorAll('.tile')].find((el) => el.dataset.peer === pid)?.querySelector('video');
    return v ? { width: Math.round(v.clientWidth * devicePixelRatio), height: Math.round(v.clientHeight * devicePixelRatio) } : null;
  }, participant);
}

test('a 1280×720 camera goes out as 3 layers; a small and a large tile get different layers; detections on 640×360; a hidden tile pauses', async (t) => {
  // Default fake camera (no y4m): it delivers the 1280×720 the lobby asks for.
  const { server, browser } = await serverAndBrowser(t, {
    args: ['--room-capacity', '3', '--max-detect-fps', '2', ...DETECT_ARGS],
  });
  const pages = [];
  try {
    await mediaConfig(server);
    const pub = await newPerson(browser, server.url, 'P');
    // Small: a small window; large: the video pinned (taller than 360, so only 720 fits).
    // (devicePixelRatio 2 is covered by the unit test: software rendering of a 2× page
    // starved this 2-core machine.)
    const small = await newPerson(browser, server.url, 'S', { viewport: { width: 800, height: 450 } });
    const large = await newPerson(browser, server.url, 'L', { viewport: { width: 1280, height: 800 } });
    pages.push(pub, small, large);
    await pub.goto('/');
    await pub.getByTestId('new-call').click();
    await pub.waitForURL(ROOM_URL);
    await joinFromLobby(pub, { analyse: true });
    const settings = await pub.evaluate(() => window.callsight.publisherConnection()?.getSenders()[0]?.track?.getSettings() ?? null);
    for (const p of [small, large]) {
      await p.goto(pub.url());
      // Cameras off on the subscribers: this test is about the publisher's layers (and
      // the machine is small); they still publish (black frames), nothing is analysed.
      await p.getByTestId('lobby').waitFor({ state: 'visible', timeout: 20_000 });
      await p.getByTestId('lobby-cam').click();
      await joinFromLobby(p, { analyse: false });
    }
    for (const p of pages) await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 30_000 });
    const pid = await pub.evaluate(() => window.callsight.id);

    // 1. The publisher sends three layers, q, h, f, each growing.
    const camera = await pub.evaluate(() => window.callsight.publisherConnection().getSenders()[0].track.getSettings());
    process.stdout.write(`publisher camera: ${camera.width}×${camera.height} @ ${camera.frameRate} (at join: ${JSON.stringify(settings)})\n`);
    let layers = [];
    let prev = [];
    const heights = () => Object.fromEntries(layers.map((l) => [l.rid, l.height]));
    await waitFor(
      async () => {
        layers = await outboundVideo(pub);
        const growing = layers.filter((l) => l.bytes > (prev.find((p) => p.rid === l.rid)?.bytes ?? Infinity));
        prev = layers;
        const h = heights();
        // Bandwidth estimation starts low: the top layer comes once it has ramped up.
        return growing.length === 3 && layers.every((l) => l.fps > 0) && h.q === 180 && h.h === 360 && h.f === 720;
      },
      { timeoutMs: 60_000, intervalMs: 1000, message: 'three layers sending at 180, 360 and 720 lines' },
    ).catch(async (err) => {
      throw new Error(`${err.message}; last ${JSON.stringify(layers)}, available ${await availableKbps(pub)} kbit/s`);
    });
    assert.deepEqual(layers.map((l) => l.rid), ['f', 'h', 'q']);
    process.stdout.write(`publisher layers at full size: ${JSON.stringify(layers)}, available ${await availableKbps(pub)} kbit/s\n`);

    // 2. Different tiles, different layers. L pins the publisher's video (large, ×2 pixels).
    await large.locator(`.tile[data-peer="${pid}"] [data-testid=pin]`).click();
    const sizes = { small: await tileSize(small, pid), large: await tileSize(large, pid) };
    process.stdout.write(`tiles (device px): ${JSON.stringify(sizes)}\n`);
    assert.ok(sizes.small.height < 360, `small tile ${JSON.stringify(sizes.small)}`);
    assert.ok(sizes.large.height > 360, `large tile ${JSON.stringify(sizes.large)}`);
    const settle = async (page, label, ok) => {
      let last = null;
      await waitFor(
        async () => {
          last = await inboundFrom(page, pid);
          return last && last.frames > 0 && ok(last.height);
        },
        { timeoutMs: 45_000, intervalMs: 500, message: `${label}: the publisher's video at the right layer` },
      ).catch(async (err) => {
        const told = await page.evaluate(() => window.callsight.trackSettings());
        throw new Error(`${err.message}; last ${JSON.stringify(last)}; told ${JSON.stringify(told)}`);
      });
      return last;
    };
    const gotSmall = await settle(small, 'small tile', (h) => h > 0 && h <= 360);
    const gotLarge = await settle(large, 'large tile', (h) => h === 720);
    process.stdout.write(`received: small ${gotSmall.width}×${gotSmall.height}, large ${gotLarge.width}×${gotLarge.height}\n`);
    // What each page told the server is its tile's size now (the layout may still have
    // moved a few pixels since the sizes above: the told size follows it, paced).
    for (const [label, page] of [['small', small], ['large', large]]) {
      let seen = null;
      await waitFor(
        async () => {
          const told = Object.values(await page.evaluate(() => window.callsight.trackSettings())).find((v) => v.participant === pid);
          const now = await tileSize(page, pid);
          seen = { told, now };
          return told && now && told.width === now.width && told.height === now.height;
        },
        { timeoutMs: 10_000, intervalMs: 250, message: `${label} page: the tile size it told the server` },
      ).catch((err) => {
        throw new Error(`${err.message}; last ${JSON.stringify(seen)}`);
      });
    }
    await screenshot(large, 'simulcast-large');
    await screenshot(small, 'simulcast-small');

    // 3. Detections for the publisher say 640×360: the layer the detector ran on.
    const det = await waitFor(() => small.evaluate((p) => window.callsight.latestDetection(p), pid), {
      timeoutMs: 30_000,
      message: 'detections for the publisher',
    });
    process.stdout.write(`detection: ${JSON.stringify(det)}\n`);
    assert.equal(det.width, 640);
    assert.equal(det.height, 360);

    // 4. Hidden (paged out): the small page's video from the publisher stops; shown again, it resumes.
    await small.evaluate((p) => {
      document.querySelector(`.tile[data-peer="${p}"]`).hidden = true;
    }, pid);
    let frames = [];
    await waitFor(
      async () => {
        frames.push((await inboundFrom(small, pid))?.frames ?? -1);
        frames = frames.slice(-3);
        return frames.length === 3 && frames[0] === frames[2];
      },
      { timeoutMs: 20_000, intervalMs: 1000, message: 'the hidden tile\'s video to stop' },
    );
    const stoppedAt = frames[2];
    await small.evaluate((p) => {
      document.querySelector(`.tile[data-peer="${p}"]`).hidden = false;
    }, pid);
    await waitFor(async () => ((await inboundFrom(small, pid))?.frames ?? 0) > stoppedAt + 10, {
      timeoutMs: 20_000,
      message: 'the video to resume once shown',
    });

    // 5. A screen share is one encoding (no rid); back on the camera, three layers again,
    //    and the small page tells the new session its tile so it gets a small layer again.
    await pub.getByTestId('share').click();
    await pub.locator('#share[aria-pressed=true]').waitFor({ state: 'attached', timeout: 10_000 });
    let shared = [];
    await waitFor(
      async () => {
        shared = await outboundVideo(pub);
        return shared.length === 1 && shared[0].rid === null && shared[0].bytes > 0;
      },
      { timeoutMs: 30_000, message: 'the screen share sent as one encoding' },
    ).catch((err) => {
      throw new Error(`${err.message}; last ${JSON.stringify(shared)}`);
    });
    process.stdout.write(`screen share: ${JSON.stringify(shared)}\n`);
    await pub.getByTestId('share').click();
    await pub.locator('#share[aria-pressed=false]').waitFor({ state: 'attached', timeout: 10_000 });
    await waitFor(async () => (await outboundVideo(pub)).map((l) => l.rid).join() === 'f,h,q', {
      timeoutMs: 30_000,
      message: 'the camera sent as three layers again',
    });
    const again = await settle(small, 'small tile after the re-publish', (h) => h > 0 && h <= 360);
    process.stdout.write(`after the re-publish: small ${again.width}×${again.height} on mid ${again.mid} (was ${gotSmall.mid})\n`);
  } catch (err) {
    await reportFailure(pages, 'PSL', server);
    throw err;
  }
});

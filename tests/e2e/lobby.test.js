// The pre-join lobby (consent): nothing reaches the server before Join, the analysis
// choice is the person's and is remembered, a link's token is taken out of the URL
// bar and sent in `join`. Real server with its media leg on, real Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverAndBrowser, mediaConfig, newPerson, joinFromLobby, ROOM_URL, waitFor, screenshot, dumpConsole } from './lib/browser.js';

/** Records the page's WebSockets and every frame it sends and receives (parsed JSON). */
function recordSockets(page) {
  const log = { sockets: 0, sent: [], received: [], waiters: [] };
  page.on('websocket', (ws) => {
    log.sockets += 1;
    const parse = (payload) => {
      try {
        return JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
      } catch {
        return { unparsed: String(payload) };
      }
    };
    ws.on('framesent', (f) => log.sent.push(parse(f.payload)));
    ws.on('framereceived', (f) => {
      const msg = parse(f.payload);
      log.received.push(msg);
      for (const w of [...log.waiters]) {
        if (w.pred(msg)) {
          log.waiters.splice(log.waiters.indexOf(w), 1);
          w.resolve(msg);
        }
      }
    });
  });
  /** Resolves with the first received frame (past or future) matching `pred`. */
  log.received.waitFor = (pred, timeoutMs, what) => {
    const seen = log.received.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      log.waiters.push(w);
      setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs).unref();
    });
  };
  return log;
}

async function healthz(server) {
  return (await fetch(`${server.url}/healthz`)).json();
}

test('lobby: no join or publish before Join; analysis off is never analysed; the choice is remembered; #token is hidden and sent', async (t) => {
  const { server, browser } = await serverAndBrowser(t);
  const pages = [];
  try {
    await mediaConfig(server);

    // B starts the call and allows analysis: the server publishes B's video and sends
    // B's detections to everyone in the room.
    const b = await newPerson(browser, server.url, 'B');
    const a = await newPerson(browser, server.url, 'A');
    pages.push(a, b);
    const bLog = recordSockets(b);
    const aLog = recordSockets(a);
    await b.goto('/');
    await b.getByTestId('new-call').click();
    await b.waitForURL(ROOM_URL);
    await joinFromLobby(b, { analyse: true });
    await b.locator('#status[data-state=waiting]').waitFor({ state: 'attached', timeout: 20_000 });
    const idB = await b.evaluate(() => window.callsight.id);
    await bLog.received.waitFor((m) => m.type === 'detections' && m.participant === idB, 45_000, "B's own detections");
    const roomUrl = b.url();

    // A opens the link with a token in the fragment: the lobby, preview playing.
    await a.goto(`${roomUrl}#token=e2e.tok-EN_42`);
    await a.getByTestId('lobby').waitFor({ state: 'visible' });
    assert.equal(a.url(), roomUrl, 'the token must leave the URL bar');
    await a.waitForFunction(() => {
      const v = document.querySelector('[data-testid=lobby-video]');
      return v.readyState >= 2 && v.videoWidth > 0;
    });
    // Device pickers list the (fake) devices by label.
    await waitFor(async () => (await a.getByTestId('lobby-camera').locator('option').count()) >= 1, { message: 'camera options' });
    await waitFor(async () => (await a.getByTestId('lobby-microphone').locator('option').count()) >= 1, { message: 'microphone options' });
    assert.ok((await a.getByTestId('lobby-camera').locator('option').first().textContent()).length > 0);
    // A fresh browser has not consented: analysis is off, and the copy says so.
    const analyse = a.getByTestId('lobby-analyse');
    assert.equal(await analyse.isVisible(), true);
    assert.equal(await analyse.isChecked(), false);
    assert.match(await a.getByTestId('lobby-where').textContent(), /not analysed/);
    await analyse.check();
    assert.match(await a.getByTestId('lobby-where').textContent(), /runs via this server/);

    // Remembered across reloads, both ways.
    await a.reload();
    await a.getByTestId('lobby').waitFor({ state: 'visible' });
    assert.equal(await a.getByTestId('lobby-analyse').isChecked(), true, 'consent remembered after reload');
    await a.getByTestId('lobby-analyse').uncheck();
    await a.reload();
    await a.getByTestId('lobby').waitFor({ state: 'visible' });
    assert.equal(await a.getByTestId('lobby-analyse').isChecked(), false, 'refusal remembered after reload');
    assert.equal(a.url(), roomUrl);

    // Picking another microphone in the lobby: that device is what the call sends.
    const mics = await a.getByTestId('lobby-microphone').locator('option').allTextContents();
    const otherMic = mics.at(-1);
    await a.getByTestId('lobby-microphone').selectOption({ label: otherMic });

    // Mic off in the lobby carries into the call.
    await a.getByTestId('lobby-mic').click();
    assert.equal(await a.getByTestId('lobby-mic').getAttribute('aria-pressed'), 'true');

    // Nothing has reached the server from A: no socket at all, the server counts only
    // B's connection, and B is still alone.
    await a.getByTestId('join').waitFor({ state: 'visible' });
    await a.waitForFunction(() => !document.querySelector('[data-testid=join]').disabled);
    assert.equal(aLog.sockets, 0, 'the lobby must not open the signaling socket');
    assert.equal((await healthz(server)).connections, 1);
    assert.equal(await b.locator('#status').getAttribute('data-state'), 'waiting');
    await screenshot(a, 'lobby-a');

    // Join with analysis off.
    await a.getByTestId('join').click();
    for (const p of [a, b]) await p.locator('#status[data-state=connected]').waitFor({ state: 'attached', timeout: 30_000 });
    const idA = await a.evaluate(() => window.callsight.id);
    const join = aLog.sent.find((m) => m.type === 'join');
    assert.equal(join?.token, 'e2e.tok-EN_42', 'the link token goes in join');
    // A receives B's detections (the media leg works for B) …
    await aLog.received.waitFor((m) => m.type === 'detections' && m.participant === idB, 30_000, "B's detections on A");
    // B allows analysis, so the call runs via the server (the topology rule): A sends its
    // media to the server too, but asked never to have it analysed. A full second of B's
    // results later, nobody ever received a result for A's video.
    assert.equal(await a.getByTestId('topology').textContent(), 'via server');
    const bCount = () => aLog.received.filter((m) => m.type === 'detections' && m.participant === idB).length;
    const n0 = bCount();
    await waitFor(() => bCount() >= n0 + 3, { timeoutMs: 30_000, message: 'three more results of B on A' });
    const published = aLog.sent.filter((m) => m.type === 'publish');
    assert.ok(published.length >= 1 && published.every((m) => m.subscribe === true && m.analyse === false), 'A publishes without analysis');
    await a.waitForFunction(() => window.callsight.publishState === 'publishing', null, { timeout: 20_000 });
    for (const log of [aLog, bLog]) {
      assert.equal(log.received.filter((m) => m.type === 'detections' && m.participant === idA).length, 0, "no result of A's video");
    }
    assert.match(await a.getByTestId('detect-note').textContent(), /not analysed/);
    // The lobby's mic-off reached the call: the audio A sends (to the server) is disabled.
    const mic = await a.evaluate(() => {
      for (const s of window.callsight.publisherConnection()?.getSenders() ?? []) {
        if (s.track?.kind === 'audio') return { enabled: s.track.enabled, label: s.track.label };
      }
      return null;
    });
    assert.deepEqual(mic, { enabled: false, label: otherMic });

    // Changing the choice in the call publishes again with analysis, and is remembered
    // like the lobby's; A's results then reach B.
    const before = aLog.sent.filter((m) => m.type === 'publish').length;
    await a.getByTestId('publish-toggle').check();
    await waitFor(() => aLog.sent.filter((m) => m.type === 'publish').length === before + 1, { message: 'a new publish' });
    assert.equal(aLog.sent.filter((m) => m.type === 'publish').at(-1).analyse, true);
    await bLog.received.waitFor((m) => m.type === 'detections' && m.participant === idA, 45_000, "A's detections on B");
    assert.equal(await a.evaluate(() => localStorage.getItem('callsight.analyse')), 'on');
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log (last 60 lines):\n${server.logs.slice(-60).join('\n')}\n`);
    throw err;
  }
});

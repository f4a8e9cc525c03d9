// Rooms via the server (SFU, docs/protocol.md "Via the server"): every page sends its
// camera once, to the server, and receives the others from it; detections are matched
// to the forwarded frames by RTP timestamp. A 1:1 room without analysis stays peer to
// peer, and a third person moves it via the server without a reload. Two browsers in
// network namespaces that reach the server but not each other fall back to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startServer, freePort } from './lib/server.js';
import { isolatedHosts, netnsAvailable } from './lib/netns.js';
import {
  serverAndBrowser,
  launchBrowser,
  ROOM_URL,
  mediaConfig,
  meetInNewCall,
  joinFromLobby,
  newPerson,
  waitFor,
  framesDecoded,
  videoStreams,
  screenshot,
  reportFailure,
} from './lib/browser.js';

const TEST_DATA = process.env.CALLSIGHT_TEST_DATA || path.join(REPO_ROOT, 'test-data');
const PERSON_Y4M = path.join(TEST_DATA, 'person.y4m');
const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);

async function health(server) {
  return (await fetch(`${server.url}/healthz`)).json();
}

/** Video streams a page is actually sending: bytesSent grows between two looks. */
async function sendingVideo(page) {
  const first = (await videoStreams(page)).outbound;
  await page.waitForTimeout(1500); // measurement window for a rate, not a wait for an event
  const second = (await videoStreams(page)).outbound;
  return second.filter((s) => s.bytes > (first.find((f) => f.id === s.id && f.where === s.where)?.bytes ?? 0));
}

test('a room of four via the server: one upload each, everyone decodes everyone, boxes on every tile', async (t) => {
  assert.ok(fs.existsSync(PERSON_Y4M), `missing ${PERSON_Y4M}: run scripts/fetch-test-data.sh`);
  const { server, browser } = await serverAndBrowser(t, {
    // Four cameras on a small machine: detection at 1 fps each keeps its latency under
    // the 2 s after which a result is too old to draw.
    args: ['--room-capacity', '4', '--max-detect-fps', '1', ...DETECT_ARGS],
    fakeVideo: PERSON_Y4M,
  });
  const pages = [];
  try {
    await mediaConfig(server);
    pages.push(...(await meetInNewCall(browser, server.url, ['A', 'B', 'C', 'D'], { analyse: true })));
    for (const p of pages) {
      await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 20_000 });
      assert.equal(await p.getByTestId('topology').textContent(), 'via server');
    }
    // Each page decodes the three others' videos, all from its one connection to the server.
    for (const [i, p] of pages.entries()) {
      await waitFor(async () => (await videoStreams(p)).inbound.filter((n) => n > 30).length === 3, {
        timeoutMs: 60_000,
        message: `page ${'ABCD'[i]} to decode three videos from the server`,
      });
    }
    // …and sends exactly one video stream: its camera, to the server.
    for (const [i, p] of pages.entries()) {
      const sending = await sendingVideo(p);
      assert.equal(sending.length, 1, `page ${'ABCD'[i]} sends ${JSON.stringify(sending)}`);
      assert.equal(sending[0].where, 'server');
    }
    // Boxes on every tile of every page: its own and the three forwarded videos.
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.callsight.id)));
    for (const [i, p] of pages.entries()) {
      const drawnOn = new Set(); // tiles a person was drawn on, at some displayed frame
      await waitFor(
        async () => {
          const d = await p.evaluate(() => window.callsight.drawn());
          for (const id of ids) if (d[id]?.boxes.some((x) => x.label === 'person')) drawnOn.add(id);
          return drawnOn.size === ids.length;
        },
        { timeoutMs: 90_000, message: `page ${'ABCD'[i]}: a person drawn on all four tiles` },
      );
    }
    // Audio is forwarded too: every page hears each of the three others (Chromium's fake
    // microphone beeps), and the tile of whoever is heard is marked as talking.
    for (const [i, p] of pages.entries()) {
      const heard = new Set();
      const talking = new Set();
      await waitFor(
        async () => {
          const tiles = await p.evaluate(() =>
            [...document.querySelectorAll('[data-role=remote]')].map((el) => [el.dataset.peer, Number(el.dataset.audioLevel ?? 0), el.dataset.speaking]),
          );
          for (const [id, level, speaking] of tiles) {
            if (level > 0) heard.add(id);
            if (speaking === 'true') talking.add(id);
          }
          return heard.size === 3 && talking.size >= 1;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `page ${'ABCD'[i]} to hear the three others` },
      );
    }
    // Pinning a video makes it span the first row; pinning it again undoes that.
    const pin = pages[0].locator('[data-role=remote] [data-testid=pin]').first();
    await pin.click();
    assert.equal(await pages[0].locator('[data-role=remote][data-pinned=true]').count(), 1);
    await screenshot(pages[0], 'sfu-four-a');
    await pin.click();
    assert.equal(await pages[0].locator('[data-pinned=true]').count(), 0);
    const h = await health(server);
    assert.equal(h.media.stats.sessions, 4, JSON.stringify(h.media.stats));
  } catch (err) {
    await reportFailure(pages, 'ABCD', server);
    throw err;
  }
});

test('a 1:1 room without analysis stays peer to peer; a third person moves it via the server', async (t) => {
  const { server, browser } = await serverAndBrowser(t, { args: ['--room-capacity', '3', '--max-detect-fps', '2', ...DETECT_ARGS] });
  const pages = [];
  try {
    await mediaConfig(server);
    pages.push(...(await meetInNewCall(browser, server.url, ['A', 'B'], { analyse: false })));
    const [a, b] = pages;
    for (const p of pages) {
      await p.locator('#status[data-state=connected]').waitFor({ state: 'attached', timeout: 30_000 });
      await waitFor(async () => (await framesDecoded(p)) > 30, { timeoutMs: 30_000, message: 'peer-to-peer frames' });
      assert.equal(await p.getByTestId('topology').textContent(), 'peer-to-peer');
      assert.equal(await p.evaluate(() => window.callsight.publisherConnection()), null);
    }
    // The server holds no media session: media never touched it.
    assert.equal((await health(server)).media.stats.sessions, 0);

    // A third person arrives: all three switch via the server, in place.
    const c = await newPerson(browser, server.url, 'C');
    pages.push(c);
    await c.goto(a.url());
    await joinFromLobby(c, { analyse: false });
    for (const [i, p] of pages.entries()) {
      await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 20_000 });
      await waitFor(async () => (await videoStreams(p)).inbound.filter((n) => n > 30).length === 2, {
        timeoutMs: 60_000,
        message: `page ${'ABC'[i]} to decode both others from the server`,
      });
      const sending = await sendingVideo(p);
      assert.deepEqual(sending.map((s) => s.where), ['server'], `page ${'ABC'[i]} sends ${JSON.stringify(sending)}`);
    }
    assert.equal((await health(server)).media.stats.sessions, 3);
    // Nobody allowed analysis: nothing is decoded or detected.
    const stats = (await health(server)).media.stats;
    assert.equal(stats.decoders, 0, JSON.stringify(stats));
    await screenshot(b, 'sfu-switch-b');
  } catch (err) {
    await reportFailure(pages, 'ABCD', server);
    throw err;
  }
});

test('two hosts that cannot reach each other fall back to the server by themselves', async (t) => {
  assert.ok(netnsAvailable(), 'this test needs root and `ip netns` (CI runs as root)');
  const { hosts, remove } = isolatedHosts(2);
  t.after(remove);
  const port = await freePort();
  const server = await startServer({
    host: '0.0.0.0',
    port,
    args: ['--room-capacity', '2', '--media-ip', hosts.map((h) => h.gateway).join(','), '--max-media-sessions-per-ip', '4'],
  });
  t.after(() => server.stop());
  // Each browser runs inside its namespace and knows the server by its own link's address.
  const people = [];
  for (const [i, h] of hosts.entries()) {
    const origin = `http://${h.gateway}:${port}`;
    const { browser, close } = await launchBrowser({
      executable: h.chromium,
      extraArgs: [`--unsafely-treat-insecure-origin-as-secure=${origin}`],
    });
    t.after(close);
    people.push({ page: await newPerson(browser, origin, 'AB'[i]), origin });
  }
  const pages = people.map((p) => p.page);
  try {
    await mediaConfig(server);
    const [a, b] = pages;
    await a.goto('/');
    await a.getByTestId('new-call').click();
    await a.waitForURL(ROOM_URL);
    await joinFromLobby(a, { analyse: false });
    const room = ROOM_URL.exec(a.url())[1];
    await b.goto(`/r/${room}`);
    const joinedAt = Date.now();
    await joinFromLobby(b, { analyse: false });
    // Nobody allowed analysis and they are two: the call starts peer to peer, its ICE
    // cannot succeed, and each page moves it via the server.
    for (const [i, p] of pages.entries()) {
      await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 60_000 });
      await waitFor(async () => (await videoStreams(p)).inbound.some((n) => n > 30), {
        timeoutMs: 60_000,
        message: `page ${'AB'[i]} to decode the other's video from the server`,
      });
      await p.locator('#status[data-state=connected]').waitFor({ state: 'attached', timeout: 10_000 });
    }
    process.stdout.write(`netns pair: both decode each other via the server ${Date.now() - joinedAt} ms after B joined\n`);
    // The peer-to-peer connection itself never came up.
    for (const p of pages) {
      const states = await p.evaluate(() => [...window.callsight.peerConnections().values()].map((pc) => pc.connectionState));
      assert.ok(!states.includes('connected'), `a direct connection came up: ${states}`);
    }
    assert.equal((await health(server)).media.stats.sessions, 2);
    await screenshot(b, 'sfu-netns-b');
  } catch (err) {
    await reportFailure(pages, 'ABCD', server);
    throw err;
  }
});

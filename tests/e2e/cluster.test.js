// Two nodes sharing rooms through Redis, behind nginx (docs/protocol.md "Several
// nodes"): two pages reach different nodes, call via the one node that runs the room's
// media, and see each other's boxes; that node is killed, and both pages get the call
// back by themselves — the one whose WebSocket died reconnects through nginx to the live
// node and resumes, the other is told `media-moved` — with the media now on the survivor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, startServer, freePort } from './lib/server.js';
import { startRedis, startNginx, cookieFor } from './lib/cluster.js';
import { launchBrowser, newPerson, joinFromLobby, waitFor, ROOM_URL, videoStreams, reportPages, screenshot } from './lib/browser.js';

const TEST_DATA = process.env.CALLSIGHT_TEST_DATA || path.join(REPO_ROOT, 'test-data');
const PERSON_Y4M = path.join(TEST_DATA, 'person.y4m');
const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);

async function health(node) {
  return (await fetch(`http://127.0.0.1:${node.port}/healthz`)).json();
}

/** Waits until page `p` draws a person on participant `id`'s tile. */
function personDrawnOn(p, id, label) {
  return waitFor(async () => (await p.evaluate(() => window.callsight.drawn()))[id]?.boxes.some((x) => x.label === 'person'), {
    timeoutMs: 90_000,
    message: `page ${label}: a person drawn on ${id}'s video`,
  });
}

test('two nodes behind nginx: one media node for the room, boxes on both pages, the call survives that node dying', async (t) => {
  assert.ok(fs.existsSync(PERSON_Y4M), `missing ${PERSON_Y4M}: run scripts/fetch-test-data.sh`);
  const redis = await startRedis();
  t.after(redis.stop);
  // One state dir: both nodes share the resume key, so a page resumes its id on either.
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'callsight-cluster-'));
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const args = ['--redis', redis.url, '--redis-presence-ttl-ms', '3000', '--state-dir', stateDir];
  args.push('--room-capacity', '4', '--max-detect-fps', '2', '--media-port', '0', ...DETECT_ARGS);
  // Each node's own address is its --public-url (WHIP/WHEP redirects go there).
  const ports = [await freePort(), await freePort()];
  const nodes = await Promise.all(
    ports.map((port) => startServer({ args: [...args, '--public-url', `http://127.0.0.1:${port}`], port, timeoutMs: 120_000 })),
  );
  t.after(() => Promise.all(nodes.map((n) => n.stop())));
  const proxy = await startNginx(nodes.map((n) => n.port));
  t.after(proxy.stop);
  const { browser, close } = await launchBrowser({ fakeVideo: PERSON_Y4M });
  t.after(close);

  const pages = [];
  try {
    // Page A's requests go to node 0, page B's to node 1 (nginx hashes a cookie).
    for (const [i, label] of ['A', 'B'].entries()) {
      const p = await newPerson(browser, proxy.url, label);
      await p.context().addCookies([{ name: 'node', value: await cookieFor(proxy.url, nodes[i].port), url: proxy.url }]);
      pages.push(p);
    }
    const [a, b] = pages;
    await a.goto('/');
    await a.getByTestId('new-call').click();
    await a.waitForURL(ROOM_URL);
    await joinFromLobby(a, { analyse: true });
    await b.goto(a.url());
    await joinFromLobby(b, { analyse: true });
    for (const node of nodes) assert.equal((await health(node)).connections, 1, 'one page on each node');

    // Via the server: each decodes the other's video and draws boxes on it.
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.callsight.id)));
    for (const [i, p] of pages.entries()) {
      await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 30_000 });
      await waitFor(async () => (await videoStreams(p)).inbound.some((n) => n > 30), {
        timeoutMs: 60_000,
        message: `page ${'AB'[i]} to decode the other's video from the server`,
      });
      await personDrawnOn(p, ids[1 - i], 'AB'[i]);
    }
    // Exactly one node runs the room's media.
    const rooms = await Promise.all(nodes.map(async (n) => (await health(n)).redis.media_rooms));
    assert.deepEqual([...rooms].sort(), [0, 1], `media rooms per node: ${rooms}`);
    const holder = rooms.indexOf(1);
    const survivor = nodes[1 - holder];

    // The watch page opened on the node that does not run the room's media: its WHEP
    // POST is redirected (307) to the one that does, which it then asks again with its
    // key (the browser drops it on a cross-origin redirect), and it plays with boxes.
    const link = await a.getByTestId('watch-link').inputValue();
    const viewer = await newPerson(browser, survivor.url, 'W');
    pages.push(viewer);
    await viewer.goto(`${survivor.url}/watch/${new URL(link).pathname.split('/').pop()}${new URL(link).hash}`);
    await waitFor(
      async () => {
        const s = await viewer.evaluate(() => {
          const v = document.querySelector('#watch-video');
          return { playing: v.videoWidth > 0 && !v.paused, drawn: window.callsight?.drawn() ?? null };
        });
        return s.playing && s.drawn?.boxes.some((x) => x.label === 'person');
      },
      { timeoutMs: 90_000, message: 'the watch page on the other node plays the room with boxes' },
    );
    await viewer.close();
    pages.pop();

    // The media node dies (SIGKILL: no goodbye to Redis).
    for (const p of pages) await p.evaluate(() => (window.__before = window.callsight.publisherConnection()));
    const killedAt = Date.now();
    nodes[holder].child.kill('SIGKILL');
    await nodes[holder].exited;

    // Both pages recover by themselves: a new connection to the server, decoding the
    // other's video, boxes on it again; the survivor runs the room's media.
    for (const [i, p] of pages.entries()) {
      await waitFor(
        () =>
          p.evaluate(async () => {
            const pc = window.callsight.publisherConnection();
            if (!pc || pc === window.__before) return false;
            let decoded = 0;
            (await pc.getStats()).forEach((r) => {
              if (r.type === 'inbound-rtp' && r.kind === 'video') decoded = Math.max(decoded, r.framesDecoded ?? 0);
            });
            return decoded > 30;
          }),
        { timeoutMs: 90_000, message: `page ${'AB'[i]} to decode the other's video on a new connection` },
      );
      // A figure for README (not asserted): from the kill to 30 frames decoded again.
      process.stderr.write(`page ${'AB'[i]} (${i === holder ? 'on the killed node' : 'on the survivor'}): video back ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill\n`);
    }
    const after = await Promise.all(pages.map((p) => p.evaluate(() => window.callsight.id)));
    assert.deepEqual(after, ids, 'both keep their ids (the page on the dead node resumed)');
    for (const [i, p] of pages.entries()) await personDrawnOn(p, ids[1 - i], 'AB'[i]);
    assert.equal((await health(survivor)).redis.media_rooms, 1);
    assert.equal((await health(survivor)).connections, 2, 'both pages are connected to the survivor');
    await screenshot(a, 'cluster-after-failover-a');
  } catch (err) {
    await reportPages(pages, 'AB');
    for (const [i, n] of nodes.entries()) process.stderr.write(`node ${i} log (last 60 lines):\n${n.logs.slice(-60).join('\n')}\n`);
    process.stderr.write(`nginx: ${proxy.logs.join('')}\n`);
    throw err;
  }
});

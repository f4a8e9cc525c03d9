// WHEP viewing in the browser (docs/whep.md): a Chromium participant publishes its camera
// (a person) for analysis; the room page offers the WHIP URL + ingest key and a watch link;
// a second page opens the watch link (/watch/<room>#key=…), plays the participant's video
// through the server and draws its boxes with overlay.js, matched by RTP timestamp. The
// viewer is no participant: the call page shows no tile for it. Then the participant form
// (/watch/<room>/<id>) and a wrong key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './lib/server.js';
import { serverAndBrowser, mediaConfig, meetInNewCall, newPerson, waitFor, screenshot, dumpConsole } from './lib/browser.js';

const TEST_DATA = process.env.CALLSIGHT_TEST_DATA || path.join(REPO_ROOT, 'test-data');
const PERSON_Y4M = path.join(TEST_DATA, 'person.y4m');
const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);

/** Waits until the watch page drew a person on a displayed frame of a playing video. */
async function personDrawn(page, what) {
  return waitFor(
    async () => {
      const s = await page.evaluate(() => {
        const v = document.querySelector('#watch-video');
        return { playing: v.videoWidth > 0 && !v.paused, drawn: window.callsight?.drawn() ?? null };
      });
      return s.playing && s.drawn?.boxes.some((b) => b.label === 'person') ? s : null;
    },
    { timeoutMs: 90_000, message: what },
  );
}

test('a watch link plays a participant through the server with its boxes', async (t) => {
  assert.ok(fs.existsSync(PERSON_Y4M), `missing ${PERSON_Y4M}: run scripts/fetch-test-data.sh`);
  const { server, browser } = await serverAndBrowser(t, { args: ['--max-detect-fps', '5', ...DETECT_ARGS], fakeVideo: PERSON_Y4M });
  const pages = [];
  try {
    await mediaConfig(server);
    const [host] = await meetInNewCall(browser, server.url, ['A'], { analyse: true });
    pages.push(host);
    const room = new URL(host.url()).pathname.split('/')[2];

    // The room page's publish/watch box: the WHIP URL, the ingest key, the watch link.
    await host.getByTestId('ingest-panel').waitFor({ state: 'attached', timeout: 20_000 });
    await waitFor(async () => (await host.getByTestId('ingest-key').inputValue()) !== '', { message: 'the ingest key shown' });
    assert.equal(await host.getByTestId('ingest-panel').isHidden(), false);
    assert.equal(await host.getByTestId('ingest-url').inputValue(), `${server.url}/whip/${room}?name=Camera`);
    const link = await host.getByTestId('watch-link').inputValue();
    assert.match(link, new RegExp(`^${server.url}/watch/${room}#key=[A-Za-z0-9_-]{43}$`));
    assert.notEqual(link.split('#key=')[1], await host.getByTestId('ingest-key').inputValue(), 'the view key is not the ingest key');

    // The room-wide watch link: the only publisher, with boxes drawn by RTP timestamp.
    const viewer = await newPerson(browser, server.url, 'W');
    pages.push(viewer);
    await viewer.goto(link);
    assert.equal(new URL(viewer.url()).hash, '', 'the key leaves the address bar');
    await personDrawn(viewer, 'the watch page draws a person on the video');
    const state = await viewer.evaluate(() => window.callsight.state());
    assert.equal(state.connection, 'connected');
    const hostId = await host.evaluate(() => window.callsight.id);
    assert.equal(state.shown, hostId, 'the room-wide form shows the publisher');
    await screenshot(viewer, 'watch-room');
    // A viewer is not a participant: the call page has its own tile only.
    assert.equal(await host.getByTestId('tile-self').count(), 1);
    assert.equal(await host.getByTestId('tile-remote').count(), 0);

    // The participant form, and a wrong key.
    const byId = await newPerson(browser, server.url, 'P');
    pages.push(byId);
    await byId.goto(`${server.url}/watch/${room}/${hostId}#key=${link.split('#key=')[1]}`);
    await personDrawn(byId, 'the participant watch page draws a person');
    const bad = await newPerson(browser, server.url, 'X');
    pages.push(bad);
    await bad.goto(`${server.url}/watch/${room}#key=not-the-key`);
    await bad.locator('#watch-status[data-state=failed]').waitFor({ timeout: 20_000 });
    assert.match(await bad.getByTestId('watch-status').textContent(), /no valid key/);
  } catch (err) {
    for (const [i, p] of pages.entries()) await screenshot(p, `watch-failure-${i}`).catch(() => {});
    dumpConsole(pages);
    throw err;
  }
});

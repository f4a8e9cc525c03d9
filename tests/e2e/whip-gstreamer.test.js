// WHIP from GStreamer into a call (docs/whip.md): a Chromium participant starts a call and
// reads the room's ingest key from its page; a GStreamer pipeline (webrtcbin + libnice with
// its stock DTLS certificate, driven by scripts/gst-whip-publish.py) publishes a photo of a
// bus through WHIP with that key; the page shows the WHIP participant's tile, plays its
// video and lists the objects detected in it (the tile's object list and the boxes drawn).
// Closing the publisher's stdin makes it DELETE its session: the tile goes away.
//
// The server binds 0.0.0.0 (its default deployment): libnice gathers no loopback
// candidates, so the server's answer must name an address of a real interface.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { REPO_ROOT, startServer } from './lib/server.js';
import { launchBrowser, mediaConfig, meetInNewCall, waitFor, screenshot, dumpConsole } from './lib/browser.js';

const TEST_DATA = process.env.CALLSIGHT_TEST_DATA || path.join(REPO_ROOT, 'test-data');
const BUS = path.join(TEST_DATA, 'bus.jpg');
const PUBLISHER = path.join(REPO_ROOT, 'scripts', 'gst-whip-publish.py');
const PYTHON = '/usr/bin/python3';
const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);

/** The remote tile named `name` on `page`: its peer id, whether its video plays, its listed labels. */
function remoteTile(page, name) {
  return page.evaluate((name) => {
    for (const el of document.querySelectorAll('[data-testid=tile-remote]')) {
      if (el.querySelector('.who')?.textContent !== name) continue;
      const v = el.querySelector('video');
      const listed = [...el.querySelectorAll('[data-testid=det-list] li')].map((li) => li.dataset.label);
      const state = el.querySelector('.peer-state')?.textContent;
      return { id: el.dataset.peer, playing: v.videoWidth > 0 && !v.paused, listed, state };
    }
    return null;
  }, name);
}

test('a GStreamer pipeline publishes through WHIP; the call lists the objects in its video', async (t) => {
  assert.ok(fs.existsSync(BUS), `missing ${BUS}: run scripts/fetch-test-data.sh`);
  const gi = spawnSync(PYTHON, ['-c', 'import gi; gi.require_version("GstWebRTC", "1.0")']);
  assert.equal(gi.status, 0, `${PYTHON} lacks GStreamer's WebRTC bindings (scripts/test.sh installs them): ${gi.stderr}`);

  const server = await startServer({ host: '0.0.0.0', args: ['--max-detect-fps', '5', ...DETECT_ARGS] });
  const url = server.url.replace('//0.0.0.0:', '//127.0.0.1:');
  const { browser, close } = await launchBrowser();
  let publisher = null;
  t.after(async () => {
    if (publisher && publisher.exitCode === null) publisher.kill('SIGKILL');
    await close();
    await server.stop();
  });
  const pages = [];
  const printed = [];
  try {
    await mediaConfig(server);
    const [host] = await meetInNewCall(browser, url, ['A'], { analyse: false });
    pages.push(host);
    const room = new URL(host.url()).pathname.split('/')[2];
    await host.getByTestId('ingest-panel').waitFor({ state: 'attached', timeout: 20_000 });
    const key = await waitFor(async () => host.getByTestId('ingest-key').inputValue(), { message: 'the ingest key shown' });

    publisher = spawn(PYTHON, [PUBLISHER, `${url}/whip/${room}?name=GStreamer`, '--key', key, '--image', BUS], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise((resolve) => publisher.on('exit', (code) => resolve(code)));
    publisher.stderr.on('data', (d) => printed.push(`stderr: ${d.toString().trim()}`));
    const lines = readline.createInterface({ input: publisher.stdout });
    const located = new Promise((resolve, reject) => {
      lines.on('line', (l) => {
        printed.push(l);
        if (l.startsWith('location ')) resolve(l.slice('location '.length));
        if (l.startsWith('refused ') || l.startsWith('error ')) reject(new Error(`the publisher: ${l}`));
      });
      exited.then((code) => reject(new Error(`the publisher exited (${code}) before its session was made`)));
    });
    const location = await located;
    assert.match(location, new RegExp(`/whip/${room}/[A-Za-z0-9_-]{22}$`));

    // The WHIP participant's tile plays its video and lists the bus found in it.
    const tile = await waitFor(
      async () => {
        const s = await remoteTile(host, 'GStreamer');
        return s?.playing && s.listed.includes('bus') ? s : null;
      },
      { timeoutMs: 90_000, message: "the GStreamer participant's tile playing and listing a bus" },
    );
    const drawn = await waitFor(
      async () => {
        const d = await host.evaluate((id) => window.callsight.drawn()[id] ?? null, tile.id);
        return d?.boxes.some((b) => b.label === 'bus') ? d : null;
      },
      { timeoutMs: 30_000, message: 'a bus box drawn on a displayed frame of the GStreamer video' },
    );
    assert.ok(drawn.boxes.length > 0);
    // Its video arrives via the server (an encoder opens no peer-to-peer link): the tile
    // says connected, not "connecting…".
    assert.equal((await remoteTile(host, 'GStreamer')).state, 'connected');
    await screenshot(host, 'whip-gstreamer');

    // Closing its stdin: it DELETEs the session (200) and exits; the tile goes away.
    publisher.stdin.end();
    assert.equal(await exited, 0, printed.join('\n'));
    assert.ok(printed.includes('deleted 200'), printed.join('\n'));
    await waitFor(async () => (await remoteTile(host, 'GStreamer')) === null, { message: 'the tile removed after DELETE' });
  } catch (err) {
    for (const [i, p] of pages.entries()) await screenshot(p, `whip-gstreamer-failure-${i}`).catch(() => {});
    dumpConsole(pages);
    console.error(`publisher output:\n${printed.join('\n')}`);
    throw err;
  }
});

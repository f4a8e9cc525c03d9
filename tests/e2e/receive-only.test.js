// A participant whose invitation may not publish (`callsight token --no-publish`): its
// page opens no camera or microphone, and in a room via the server it still decodes the
// others from its one connection to the server, which sends nothing
// (docs/protocol.md, `publish` without `canPublish`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, serverBinary } from './lib/server.js';
import { launchBrowser, newPerson, joinFromLobby, waitFor, videoStreams, reportFailure } from './lib/browser.js';

/** This process's environment without CALLSIGHT_TOKEN_SECRET (the file is the secret). */
function withoutSecretEnv() {
  const env = { ...process.env };
  delete env.CALLSIGHT_TOKEN_SECRET;
  return env;
}

/** A room token from the real `callsight token` command (its first output line). */
function mint(secretFile, room, identity, extra = []) {
  const out = execFileSync(
    serverBinary(),
    ['token', '--room', room, '--identity', identity, '--ttl', '1h', '--token-secret-file', secretFile, ...extra],
    { encoding: 'utf8', env: withoutSecretEnv() },
  );
  return out.split('\n')[0].trim();
}

/** Video streams a page is sending: bytesSent grows between two looks. */
async function sendingVideo(page) {
  const first = (await videoStreams(page)).outbound;
  await page.waitForTimeout(1500); // measurement window for a rate, not a wait for an event
  const second = (await videoStreams(page)).outbound;
  return second.filter((s) => s.bytes > (first.find((f) => f.id === s.id && f.where === s.where)?.bytes ?? 0));
}

test('a --no-publish invitation: no camera or microphone, the others decoded via the server, nothing sent', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callsight-e2e-tokens-'));
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, 'e2e-receive-only-secret-1\n', { mode: 0o600 });
  const server = await startServer({
    args: ['--require-token', '--token-secret-file', secretFile, '--room-capacity', '3'],
  });
  const { browser, close } = await launchBrowser();
  t.after(async () => {
    await close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const room = 'e2e-receive-only-room-1';
  const pages = [];
  try {
    for (const [label, extra] of [
      ['A', []],
      ['B', []],
      ['C', ['--no-publish']],
    ]) {
      const page = await newPerson(browser, server.url, label);
      // Counts camera/microphone requests (the page must make none for C).
      await page.addInitScript(() => {
        const md = navigator.mediaDevices;
        const open = md.getUserMedia.bind(md);
        window.__userMediaCalls = 0;
        md.getUserMedia = (c) => {
          window.__userMediaCalls += 1;
          return open(c);
        };
      });
      await page.goto(`/r/${room}#token=${mint(secretFile, room, label.toLowerCase(), extra)}`);
      await joinFromLobby(page, { analyse: false });
      pages.push(page);
    }
    const [a, b, c] = pages;
    assert.equal(await c.evaluate(() => window.__userMediaCalls), 0, 'C opened a camera or microphone');
    assert.ok((await a.evaluate(() => window.__userMediaCalls)) > 0, 'A opened its camera');
    assert.equal(await c.evaluate(() => window.callsight.receiveOnly), true);
    // Three people: via the server. C decodes A's and B's videos from its connection to it…
    for (const p of pages) await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 30_000 });
    await waitFor(async () => (await videoStreams(c)).inbound.filter((n) => n > 30).length === 2, {
      timeoutMs: 60_000,
      message: 'C to decode A and B from the server',
    });
    // …sends no video at all, and A and B each decode the other one only.
    assert.deepEqual(await sendingVideo(c), [], 'C sends video');
    for (const p of [a, b]) {
      await waitFor(async () => (await videoStreams(p)).inbound.filter((n) => n > 30).length === 1, {
        timeoutMs: 60_000,
        message: 'A and B to decode each other from the server',
      });
    }
    const h = await (await fetch(`${server.url}/healthz`)).json();
    assert.equal(h.media.stats.sessions, 3, JSON.stringify(h.media.stats));
  } catch (err) {
    await reportFailure(pages, 'ABC', server);
    throw err;
  }
});

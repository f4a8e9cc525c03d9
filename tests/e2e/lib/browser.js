// Headless Chromium (the Debian package) through playwright-core, with a fake camera
// and microphone, plus small helpers the tests share.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT, startServer } from './server.js';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO_ROOT, 'artifacts', 'e2e');

/**
 * @param {object} [o]
 * @param {string} [o.fakeVideo] a .y4m file for --use-file-for-fake-video-capture
 * @param {string} [o.executable] what to run instead of Chromium (e.g. a wrapper that
 *   starts it in a network namespace)
 * @param {string[]} [o.extraArgs]
 */
export async function launchBrowser({ fakeVideo, executable = CHROMIUM, extraArgs = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  }
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    // Pages of one test sit in background tabs of one browser: keep their timers and
    // video pipelines running at full speed.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    '--autoplay-policy=no-user-gesture-required',
  ];
  if (fakeVideo) args.push(`--use-file-for-fake-video-capture=${fakeVideo}`);
  args.push(...extraArgs);
  // playwright-core gives every launch a fresh temporary profile (its own --user-data-dir).
  const browser = await chromium.launch({ executablePath: executable, headless: true, args });
  const close = async () => {
    await browser.close().catch(() => {});
  };
  return { browser, close };
}

/**
 * A page in its own context (own storage, like a different person), logging its console
 * on failure. `viewport` and `deviceScaleFactor` (devicePixelRatio) size its window.
 */
export async function newPerson(browser, baseURL, label, { viewport = { width: 1280, height: 800 }, deviceScaleFactor = 1 } = {}) {
  const context = await browser.newContext({
    baseURL,
    viewport,
    deviceScaleFactor,
    // Only for --tls-self-signed servers on 127.0.0.1.
    ignoreHTTPSErrors: baseURL.startsWith('https:'),
  });
  await context.grantPermissions(['camera', 'microphone'], { origin: baseURL });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[${label}] pageerror: ${e.message}`));
  page.consoleLines = consoleLines;
  return page;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function waitFor(fn, { timeoutMs = 20_000, intervalMs = 250, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * What a page's server connection looks like, for failure reports: signaling and
 * connection state, its transceivers and what each receives.
 */
export function serverLinkState(page) {
  return page.evaluate(async () => {
    const pc = window.callsight.publisherConnection();
    if (!pc) return { topology: document.querySelector('#topology')?.dataset.mode ?? null, pc: null };
    const inbound = {};
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp') inbound[r.mid] = { kind: r.kind, packets: r.packetsReceived, decoded: r.framesDecoded, keyframes: r.keyFramesDecoded, plis: r.pliCount };
    });
    return {
      topology: document.querySelector('#topology')?.dataset.mode ?? null,
      signaling: pc.signalingState,
      connection: pc.connectionState,
      transceivers: pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, current: t.currentDirection, in: inbound[t.mid] })),
    };
  });
}

/** Highest framesDecoded over the page's inbound video streams (from peers or via the server). */
export function framesDecoded(page) {
  return page.evaluate(async () => {
    let max = 0;
    const server = window.callsight.publisherConnection();
    for (const pc of [...window.callsight.peerConnections().values(), ...(server ? [server] : [])]) {
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') max = Math.max(max, r.framesDecoded ?? 0);
      });
    }
    return max;
  });
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

export function dumpConsole(pages) {
  for (const p of pages) for (const l of p.consoleLines ?? []) process.stderr.write(`${l}\n`);
}

/**
 * On failure: each page's console and the state of its connection to the server
 * (`labels[i]` names page i).
 */
export async function reportPages(pages, labels) {
  dumpConsole(pages);
  for (const [i, p] of pages.entries()) {
    const state = await serverLinkState(p).catch((e) => `unavailable: ${e.message}`);
    process.stderr.write(`page ${labels[i]} server link: ${JSON.stringify(state)}\n`);
  }
}

/** On failure: [reportPages], then the last 80 lines of the server's log. */
export async function reportFailure(pages, labels, server) {
  await reportPages(pages, labels);
  process.stderr.write(`server log (last 80 lines):\n${server.logs.slice(-80).join('\n')}\n`);
}

/** The 22-character room link the landing page's "New call" leads to. */
export const ROOM_URL = /\/r\/([A-Za-z0-9_-]{22})$/;

/**
 * On a room page: waits for the lobby, sets the analysis choice when `analyse` is given
 * (only offered when the server analyses video), and clicks **Join** (enabled once the
 * preview is open).
 */
export async function joinFromLobby(page, { analyse } = {}) {
  await page.getByTestId('lobby').waitFor({ state: 'visible', timeout: 20_000 });
  if (analyse !== undefined && (await page.getByTestId('lobby-analyse').isVisible())) {
    await page.getByTestId('lobby-analyse').setChecked(analyse);
  }
  await page.getByTestId('join').click({ timeout: 20_000 });
  await page.getByTestId('room').waitFor({ state: 'visible', timeout: 20_000 });
}

/**
 * One new page per label; the first starts a call through the UI ("New call"), the
 * others open its link; each joins from the lobby (`analyse`: the analysis choice).
 * Returns the pages in label order.
 */
export async function meetInNewCall(browser, baseURL, labels = ['A', 'B'], { analyse } = {}) {
  const pages = [];
  for (const label of labels) pages.push(await newPerson(browser, baseURL, label));
  const [host, ...guests] = pages;
  await host.goto('/');
  await host.getByTestId('new-call').click();
  await host.waitForURL(ROOM_URL);
  await joinFromLobby(host, { analyse });
  for (const guest of guests) {
    await guest.goto(host.url());
    await joinFromLobby(guest, { analyse });
  }
  return pages;
}

/**
 * A server (extra `args`) and a browser (optional fake camera `fakeVideo`) for one test,
 * both stopped when the test ends.
 */
export async function serverAndBrowser(t, { args = [], fakeVideo } = {}) {
  const server = await startServer({ args });
  const { browser, close } = await launchBrowser({ fakeVideo });
  t.after(async () => {
    await close();
    await server.stop();
  });
  return { server, browser };
}

/** Fails unless the server runs its media leg (a detector): GET /api/config. */
export async function mediaConfig(server) {
  const config = await (await fetch(`${server.url}/api/config`)).json();
  if (config.media?.enabled !== true) throw new Error(`this test needs the server's media leg (/api/config: ${JSON.stringify(config)})`);
  return config;
}

/**
 * The page's video streams: `inbound` = framesDecoded of each inbound video stream of its
 * connection to the server; `outbound` = bytesSent of each outbound video stream over all
 * its connections (`where`: 'server' or 'peer'). A stream is one sending m-line: the
 * simulcast layers of a camera (one outbound-rtp per rid) count as one, bytes summed.
 */
export function videoStreams(page) {
  return page.evaluate(async () => {
    const server = window.callsight.publisherConnection();
    const inbound = [];
    const outbound = [];
    const pcs = [...window.callsight.peerConnections().values()].map((pc) => ['peer', pc]);
    if (server) pcs.push(['server', server]);
    for (const [i, [where, pc]] of pcs.entries()) {
      (await pc.getStats()).forEach((r) => {
        if (r.kind !== 'video') return;
        if (r.type === 'inbound-rtp' && where === 'server') inbound.push(r.framesDecoded ?? 0);
        if (r.type !== 'outbound-rtp') return;
        const id = r.mid !== undefined ? `${where}${i}:${r.mid}` : r.id;
        const same = outbound.find((o) => o.id === id);
        if (same) same.bytes += r.bytesSent ?? 0;
        else outbound.push({ where, id, bytes: r.bytesSent ?? 0 });
      });
    }
    return { inbound, outbound };
  });
}

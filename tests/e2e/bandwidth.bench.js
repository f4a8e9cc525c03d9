// Measured bandwidth adaptation via the server (issue 10): N headless Chromium pages in
// one room via the server (analysis off, so nothing but forwarding), each with the fake
// camera. After the call settles, per page for BENCH_SECONDS: the video bitrate it sends
// to the server (outbound-rtp bytesSent), its encoder's target (targetBitrate) and its
// congestion controller's available outgoing bitrate (candidate pair) — once with the
// server's downlink estimation on (REMB to publishers, the default) and once with
// `--downlink-bwe-start-kbps 0`.
//
//   cargo build --workspace --bins
//   CALLSIGHT_BIN=$CARGO_TARGET_DIR/debug/callsight node tests/e2e/bandwidth.bench.js
//
// Env: BENCH_PAGES (default 3), BENCH_SECONDS (default 10), BENCH_FAKE_VIDEO (a .y4m for
// the fake camera; default Chromium's built-in pattern).
// A benchmark: it prints a table and asserts nothing.
import { startServer } from './lib/server.js';
import { launchBrowser, meetInNewCall, waitFor, videoStreams, dumpConsole } from './lib/browser.js';

const PAGES = Number(process.env.BENCH_PAGES || 3);
const SECONDS = Number(process.env.BENCH_SECONDS || 10);
const LABELS = 'ABCDEFGHIJKLMNOP'.slice(0, PAGES).split('');

/** The page's sending to the server: bytes sent, encoder target, available outgoing bitrate. */
function sending(page) {
  return page.evaluate(async () => {
    const pc = window.callsight.publisherConnection();
    const out = { bytes: 0, target: null, available: null };
    if (!pc) return out;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out.bytes += r.bytesSent ?? 0;
        if (r.targetBitrate) out.target = (out.target ?? 0) + r.targetBitrate;
      }
      if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate) out.available = r.availableOutgoingBitrate;
    });
    return out;
  });
}

async function run(name, args) {
  const server = await startServer({ args: ['--room-capacity', String(Math.max(PAGES, 2)), ...args] });
  const { browser, close } = await launchBrowser({ fakeVideo: process.env.BENCH_FAKE_VIDEO });
  const pages = [];
  try {
    pages.push(...(await meetInNewCall(browser, server.url, LABELS, { analyse: false })));
    // Via the server (a 1:1 call without analysis would stay peer to peer: force it with 3+).
    for (const p of pages) await p.locator('#topology[data-mode=server]').waitFor({ state: 'attached', timeout: 60_000 });
    for (const p of pages) {
      await waitFor(async () => (await videoStreams(p)).inbound.filter((n) => n > 30).length === PAGES - 1, {
        timeoutMs: 90_000,
        message: 'every page decodes the others',
      });
    }
    // Settle: the encoders ramp up (or are held down) for a few seconds first.
    await new Promise((r) => setTimeout(r, 8000));
    const first = await Promise.all(pages.map(sending));
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000)); // the measurement window
    const last = await Promise.all(pages.map(sending));
    const secs = (Date.now() - t0) / 1000;
    const kbps = (x) => (x == null ? '–' : String(Math.round(x / 1000)));
    for (const [i, l] of last.entries()) {
      const sent = ((l.bytes - first[i].bytes) * 8) / secs;
      console.log(`| ${name} | ${PAGES} | ${LABELS[i]} | ${kbps(sent)} | ${kbps(l.target)} | ${kbps(l.available)} |`);
    }
  } catch (err) {
    dumpConsole(pages);
    throw err;
  } finally {
    await close();
    await server.stop();
  }
}

console.log('| server downlink estimation | pages | page | video sent kbit/s | encoder target kbit/s | available outgoing kbit/s |');
console.log('|---|---|---|---|---|---|');
await run('on (default)', []);
await run('off (`--downlink-bwe-start-kbps 0`)', ['--downlink-bwe-start-kbps', '0']);

// Measured overlay quality (issue 11): two pages call each other with a synthetic fake
// camera (scripts/make-overlay-video.py: two people moving on known paths, the frame
// number coded in the picture). On every displayed frame of page A's tiles, the frame
// is identified from its code and what the overlay drew there
// (window.callsight.drawn()) is compared with that frame's truth: mean IoU, the share
// of frames with IoU ≥ 0.5, id switches. One row per drawing mode × detection rate.
//
//   .venv/bin/python scripts/make-overlay-video.py     # once: test-data/overlay.{y4m,json}
//   cargo build -p callsight-server
//   CALLSIGHT_BIN=$CARGO_TARGET_DIR/debug/callsight node tests/e2e/overlay.bench.js
//
// Env: BENCH_PAGES (2 by default; 1 = page A alone in its room, analysed via the server,
// scored on its self-view only: one browser on the machine instead of two),
// BENCH_FRAMES (frames per row, default 240), BENCH_RATES (e.g. `natural,≤ 10/s`),
// BENCH_MODES (e.g. `asis-hold,asis`; all four by default), E2E_DETECT_ARGS (extra server
// flags, e.g. `--no-tracking` for the drawing before tracking).
// A benchmark: it prints a table and asserts nothing about speed or quality.
import fs from 'node:fs';
import path from 'node:path';
import { startServer, REPO_ROOT } from './lib/server.js';
import { launchBrowser, meetInNewCall, waitFor, dumpConsole } from './lib/browser.js';

const TEST_DATA = process.env.CALLSIGHT_TEST_DATA || path.join(REPO_ROOT, 'test-data');
const VIDEO = path.join(TEST_DATA, 'overlay.y4m');
const TRUTH = JSON.parse(fs.readFileSync(path.join(TEST_DATA, 'overlay-truth.json'), 'utf8'));
const FRAMES = Number(process.env.BENCH_FRAMES || 240);
const DETECT_ARGS = (process.env.E2E_DETECT_ARGS ?? '').split(/\s+/).filter(Boolean);
const PAGES = Number(process.env.BENCH_PAGES || 2);
if (PAGES !== 1 && PAGES !== 2) throw new Error(`BENCH_PAGES must be 1 or 2, not ${process.env.BENCH_PAGES}`);

const ALL_MODES = [
  { key: 'asis-hold', name: "today's drawing, hold on", predict: false, hold: true },
  { key: 'asis', name: "today's drawing, hold off", predict: false, hold: false },
  { key: 'predict-hold', name: 'tracking + prediction, hold on', predict: true, hold: true },
  { key: 'predict', name: 'tracking + prediction, hold off', predict: true, hold: false },
];
const onlyModes = process.env.BENCH_MODES?.split(',');
const MODES = ALL_MODES.filter((m) => !onlyModes || onlyModes.includes(m.key));
const RATES = [
  { name: 'natural', args: [] },
  { name: '≤ 10/s', args: ['--max-detect-fps', '10'] },
  { name: '≤ 5/s', args: ['--max-detect-fps', '5'] },
];

export function iou(a, b) {
  const x0 = Math.max(a[0], b[0]);
  const y0 = Math.max(a[1], b[1]);
  const x1 = Math.min(a[0] + a[2], b[0] + b[2]);
  const y1 = Math.min(a[1] + a[3], b[1] + b[3]);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0;
}

/** Per recorded frame: each truth object's IoU with the drawn box matched to it (greedy). */
function score(records) {
  const ious = [];
  const lastId = new Map();
  let switches = 0;
  let tracked = 0;
  let frames = 0;
  for (const r of records) {
    const truth = TRUTH.truth[r.code];
    if (!truth) continue;
    frames += 1;
    const drawn = r.boxes.filter((b) => b.label === 'person');
    const pairs = [];
    for (const t of truth) for (const [j, d] of drawn.entries()) pairs.push({ t, j, d, v: iou(t.box, d.box) });
    pairs.sort((p, q) => q.v - p.v);
    const usedT = new Set();
    const usedD = new Set();
    const best = new Map(truth.map((t) => [t.id, { v: 0, d: null }]));
    for (const p of pairs) {
      if (usedT.has(p.t.id) || usedD.has(p.j) || p.v <= 0) continue;
      usedT.add(p.t.id);
      usedD.add(p.j);
      best.set(p.t.id, { v: p.v, d: p.d });
    }
    for (const [id, { v, d }] of best) {
      ious.push(v);
      if (d && v >= 0.3 && d.track_id !== null && d.track_id !== undefined) {
        tracked += 1;
        if (lastId.has(id) && lastId.get(id) !== d.track_id) switches += 1;
        lastId.set(id, d.track_id);
      }
    }
  }
  const mean = ious.reduce((a, b) => a + b, 0) / Math.max(1, ious.length);
  return { frames, mean, good: ious.filter((v) => v >= 0.5).length / Math.max(1, ious.length), switches, tracked: tracked / Math.max(1, ious.length) };
}

/** Records `count` displayed frames of a tile: the frame's code and what was drawn on it. */
function record(page, key, participant, count) {
  return page.evaluate(
    ([key, pid, count, code]) =>
      new Promise((resolve) => {
        const video = document.querySelector(`[data-peer="${key}"] video`);
        const canvas = document.createElement('canvas');
        canvas.width = 640;
        canvas.height = 480;
        const ctx = canvas.getContext('2d', { willReadFrequently: true });
        const out = [];
        const misses = { code: 0, drawn: 0 };
        let done = false;
        const finish = () => {
          done = true;
          resolve({ records: out, misses });
        };
        // A loaded machine may show few frames: stop after 90 s with what there is.
        const timer = setTimeout(finish, 90_000);
        const onFrame = (now, meta) => {
          ctx.drawImage(video, 0, 0, 640, 480);
          const px = ctx.getImageData(0, code.y, (code.bits + 2) * code.cell, code.cell).data;
          const cell = (i) => px[(Math.floor(code.cell / 2) * (code.bits + 2) * code.cell + i * code.cell + Math.floor(code.cell / 2)) * 4] > 128;
          const d = window.callsight.drawn()[pid];
          if (done) return;
          if (!(cell(0) && !cell(code.bits + 1))) {
            misses.code += 1;
          } else if (!d || d.presentedFrames !== meta.presentedFrames) {
            misses.drawn += 1;
          } else {
            let n = 0;
            for (let i = 1; i <= code.bits; i++) n = (n << 1) | (cell(i) ? 1 : 0);
            out.push({ code: n, boxes: d.boxes, g2g: d.glassToGlassMs });
          }
          if (out.length >= count) {
            clearTimeout(timer);
            finish();
          } else {
            video.requestVideoFrameCallback(onFrame);
          }
        };
        video.requestVideoFrameCallback(onFrame);
      }),
    [key, participant, count, TRUTH.code],
  );
}

async function setMode(page, { predict, hold }) {
  await page.getByTestId('predict').setChecked(predict);
  await page.getByTestId('sync-hold').setChecked(hold);
}

async function detRate(page) {
  return page.evaluate(() => [...document.querySelectorAll('[data-testid=det-stats]')].map((e) => e.textContent).join(' / '));
}

async function runRate(rate) {
  const server = await startServer({ args: [...rate.args, ...DETECT_ARGS] });
  const { browser, close } = await launchBrowser({ fakeVideo: VIDEO });
  const pages = [];
  const rows = [];
  try {
    const met = await meetInNewCall(browser, server.url, PAGES === 1 ? ['A'] : ['A', 'B'], { analyse: true });
    pages.push(...met);
    const [a, b] = met;
    // Alone, page A has no peer to connect to: its connection to the server carries its camera.
    if (b) for (const p of met) await p.locator('#status[data-state=connected]').waitFor({ state: 'attached', timeout: 30_000 });
    const ids = { a: await a.evaluate(() => window.callsight.id), b: b && (await b.evaluate(() => window.callsight.id)) };
    await waitFor(
      async () => {
        const d = await a.evaluate(() => window.callsight.drawn());
        return d[ids.a]?.boxes.length > 0 && (!b || d[ids.b]?.boxes.length > 0);
      },
      { timeoutMs: 60_000, message: b ? 'boxes on both tiles of A' : "boxes on A's self-view" },
    );
    for (const mode of MODES) {
      await setMode(a, mode);
      // Let the hold controller (1 Hz) move to its new setting before measuring.
      await record(a, 'self', ids.a, 90);
      const detected = await detRate(a);
      const [self, remote] = await Promise.all([
        record(a, 'self', ids.a, FRAMES),
        b ? record(a, ids.b, ids.b, FRAMES) : { records: [], misses: {} },
      ]);
      const g2g = (recs) => {
        const v = recs.map((r) => r.g2g).filter((x) => x !== null).sort((x, y) => x - y);
        return v.length ? v[v.length >> 1] : null;
      };
      if (b) rows.push({ rate: rate.name, mode: mode.name, view: 'remote', detected, ...score(remote.records), g2g: g2g(remote.records), misses: remote.misses });
      rows.push({ rate: rate.name, mode: mode.name, view: 'self', detected, ...score(self.records), g2g: g2g(self.records), misses: self.misses });
      process.stderr.write(
        `${rate.name} / ${mode.name}: ${detected} → ${await detRate(a)}; frames not counted (no code / drawn() of another frame): ` +
          `self ${JSON.stringify(self.misses)}, remote ${JSON.stringify(remote.misses)}\n`,
      );
    }
  } catch (err) {
    dumpConsole(pages);
    process.stderr.write(`server log (last 40):\n${server.logs.slice(-40).join('\n')}\n`);
    throw err;
  } finally {
    await close();
    await server.stop();
  }
  return rows;
}

const all = [];
const only = process.env.BENCH_RATES?.split(',');
for (const rate of RATES.filter((r) => !only || only.includes(r.name))) all.push(...(await runRate(rate)));
const pct = (x) => `${(x * 100).toFixed(0)} %`;
const lines = [
  `Overlay quality against truth (${FRAMES} frames per row, page A of ${PAGES}, server flags: ${DETECT_ARGS.join(' ') || 'defaults'}; ${TRUTH.objects.map((o) => `${o.id} ${o.speed_px_per_s} px/s`).join(', ')})`,
  '| detection | drawing | view | detection stats at the start of the row | frames | mean IoU | IoU ≥ 0.5 | id switches | boxes with an id | glass to glass (median) |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...all.map(
    (r) =>
      `| ${r.rate} | ${r.mode} | ${r.view} | ${r.detected} | ${r.frames} | ${r.mean.toFixed(2)} | ${pct(r.good)} | ${r.switches} | ${pct(r.tracked)} | ${r.g2g === null ? '–' : `${Math.round(r.g2g)} ms`} |`,
  ),
];
process.stdout.write(`${lines.join('\n')}\n`);

// Anchor: TF.js wasm backend in Node on the ORIGINAL TF.js models (the runtime of the classic
// in-browser approach).
//
//   node bench/models/tfjs_bench.mjs [--json] [--models centernet,nanodet] [--runs 20] [--warmup 3]
//
// Needs `npm ci` in tools/models (TF.js 4.22 + wasm backend), `tools/models/convert.sh
// --extract-only` (the original models) and scripts/fetch-test-data.sh (.venv + bus.jpg): the
// input tensor is made by tools/models/make_input.py, so it is byte-identical to what
// bench/models/ort_bench.py feeds onnxruntime (bus.jpg letterboxed to 512 / 416).
// Per model: warm-up runs, then timed execute() + reading every output back; median and p95
// (nearest rank) in ms. Single-threaded: TF.js's wasm backend in Node runs its non-threaded
// build (SIMD on). --json prints one JSON object per line instead of the table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const tools = path.join(root, 'tools/models');
if (!fs.existsSync(path.join(tools, 'node_modules/@tensorflow/tfjs-backend-wasm'))) {
  console.error('missing tools/models/node_modules: run `npm ci` in tools/models');
  process.exit(1);
}
const { tf, initWasm, loadModel, OUTPUTS } = await import(pathToFileURL(path.join(tools, 'tfjs_model.mjs')).href);

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const json = args.includes('--json');
const models = opt('--models', 'centernet,nanodet').split(',');
const runs = parseInt(opt('--runs', '20'), 10);
const warmup = parseInt(opt('--warmup', '3'), 10);
const data = process.env.CALLSIGHT_TEST_DATA || path.join(root, 'test-data');
const photo = path.join(data, 'bus.jpg');
const python = path.join(root, '.venv/bin/python');
if (!fs.existsSync(photo) || !fs.existsSync(python)) {
  console.error(`missing ${photo} or ${python}: run scripts/fetch-test-data.sh`);
  process.exit(1);
}

// tfjs prints a hint about tfjs-node on stdout when imported; keep stdout for results.
const log = console.log;
const backend = await initWasm(1);
const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
const rows = [];
for (const name of models) {
  const tmp = path.join(os.tmpdir(), `callsight-tfjs-bench-${process.pid}-${name}.bin`);
  const shape = JSON.parse(execFileSync(python, [path.join(tools, 'make_input.py'), name, photo, tmp], { encoding: 'utf8' }));
  const raw = fs.readFileSync(tmp);
  fs.unlinkSync(tmp);
  const input = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), shape, 'float32');
  const model = await loadModel(name);
  // CenterNet: only the detections output, as the Human library asks for.
  const outputs = name === 'centernet' ? ['tower_0/detections'] : OUTPUTS[name];
  const once = async () => {
    const t0 = performance.now();
    const outs = [model.execute(input, outputs)].flat();
    for (const t of outs) await t.data();
    const ms = performance.now() - t0;
    tf.dispose(outs);
    return ms;
  };
  for (let i = 0; i < warmup; i++) await once();
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await once());
  times.sort((a, b) => a - b);
  const median = runs % 2 ? times[(runs - 1) / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
  const p95 = times[Math.max(0, Math.ceil(0.95 * runs) - 1)];
  const row = {
    bench: 'tfjs-wasm',
    runtime: `TF.js ${tf.version.tfjs} ${backend}${simd ? ' simd' : ''} (Node ${process.version})`,
    model: name,
    input: shape,
    image: 'bus.jpg',
    threads: 1,
    warmup,
    runs,
    median_ms: +median.toFixed(3),
    p95_ms: +p95.toFixed(3),
    min_ms: +times[0].toFixed(3),
  };
  rows.push(row);
  if (json) log(JSON.stringify(row));
  tf.dispose(input);
  model.dispose();
}
if (!json) {
  log(`${'runtime'.padEnd(40)} ${'model'.padEnd(10)} ${'input'.padEnd(14)} thr  median ms    p95 ms`);
  for (const r of rows) {
    log(`${r.runtime.padEnd(40)} ${r.model.padEnd(10)} ${r.input.join('x').padEnd(14)} ${String(r.threads).padStart(3)} ${r.median_ms.toFixed(1).padStart(10)} ${r.p95_ms.toFixed(1).padStart(9)}`);
  }
}

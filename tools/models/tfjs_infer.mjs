// Run the original TF.js models on prepared input tensors and write the raw outputs.
//   node tfjs_infer.mjs JOBS.json
// JOBS.json: [{"model": "centernet"|"nanodet", "input": "x.bin" (float32 LE), "shape": [...],
//              "out": "prefix"}]
// Writes prefix.<i>.bin (float32 LE) per output in OUTPUTS[model] order and prefix.json with
// {"names": [...], "shapes": [...], "backend": ..., "tfjs": version}.
import fs from 'node:fs';
import { tf, initWasm, loadModel, OUTPUTS } from './tfjs_model.mjs';

const jobs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const backend = await initWasm(1);
const models = {};
for (const job of jobs) {
  models[job.model] ??= await loadModel(job.model);
  const raw = fs.readFileSync(job.input);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const input = tf.tensor(data, job.shape, 'float32');
  const names = OUTPUTS[job.model];
  const outs = models[job.model].execute(input, names);
  const shapes = [];
  for (const [i, t] of outs.entries()) {
    const v = await t.data();
    fs.writeFileSync(`${job.out}.${i}.bin`, Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    shapes.push(t.shape);
  }
  fs.writeFileSync(`${job.out}.json`, JSON.stringify({ names, shapes, backend, tfjs: tf.version.tfjs }));
  tf.dispose([input, ...outs]);
}

// temporary profiling helper (not part of the project)
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs-core');
const converter = require('@tensorflow/tfjs-converter');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep);
tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
await tf.setBackend('wasm'); await tf.ready();
const modelJson = path.resolve(process.argv[2]);
const shape = JSON.parse(process.argv[3]);
const inName = process.argv[4];
const handler = { load: async () => {
  const m = JSON.parse(fs.readFileSync(modelJson)); const dir = path.dirname(modelJson);
  const specs = []; const bufs = [];
  for (const g of m.weightsManifest) { specs.push(...g.weights); for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p))); }
  const all = Buffer.concat(bufs);
  return { modelTopology: m.modelTopology, weightSpecs: specs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), signature: m.signature };
} };
const model = await converter.loadGraphModel(handler);
const x = tf.randomNormal(shape);
for (let i = 0; i < 3; i++) { const o = model.execute({ [inName]: x }); await Promise.all((Array.isArray(o) ? o : [o]).map(t => t.data())); tf.dispose(o); }
const times = [];
for (let i = 0; i < 10; i++) { const t0 = performance.now(); const o = model.execute({ [inName]: x }); await Promise.all((Array.isArray(o) ? o : [o]).map(t => t.data())); times.push(performance.now() - t0); tf.dispose(o); }
times.sort((a, b) => a - b);
const prof = await tf.profile(async () => { const o = model.execute({ [inName]: x }); await Promise.all((Array.isArray(o) ? o : [o]).map(t => t.data())); tf.dispose(o); });
const agg = {};
let total = 0;
for (const k of prof.kernels) { const ms = await k.kernelTimeMs; const key = k.name; agg[key] = agg[key] || { n: 0, ms: 0 }; agg[key].n++; agg[key].ms += ms; total += ms; }
console.log('median', times[5].toFixed(1), 'kernel total', total.toFixed(1));
for (const [k, v] of Object.entries(agg).sort((a, b) => b[1].ms - a[1].ms)) console.log(k.padEnd(28), v.n, v.ms.toFixed(1));
if (process.argv[5]) { for (const k of prof.kernels) console.log('K', k.name, (await k.kernelTimeMs).toFixed(2), JSON.stringify(k.inputShapes)); }

import path from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs-core');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep);
tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
await tf.setBackend('wasm'); await tf.ready();
const H = 52, C2 = 58, P = H * H;
const x1 = tf.randomNormal([1, H, H, C2]); const y = tf.randomNormal([1, H, H, C2]);
const z = tf.randomNormal([1, H, H, 2 * C2]); const z2 = tf.randomNormal([2, P, C2]);
const idxA = tf.tensor1d(Array.from({length: C2}, (_, k) => 2 * k), 'int32'); const idxB = tf.tensor1d(Array.from({length: C2}, (_, k) => 2 * k + 1), 'int32');
const eye = tf.eye(2 * C2); const selA = tf.reshape(tf.gather(eye, idxA, 1), [1, 1, 2 * C2, C2]); const selB = tf.reshape(tf.gather(eye, idxB, 1), [1, 1, 2 * C2, C2]);
const f0 = tf.reshape(tf.stack([tf.ones([C2]), tf.zeros([C2])]), [1, 2, C2, 1]); const f1 = tf.reshape(tf.stack([tf.zeros([C2]), tf.ones([C2])]), [1, 2, C2, 1]);
{ const v = tf.reshape(z, [1, P, 2, C2]); const a = tf.reshape(tf.depthwiseConv2d(v, f1, 1, 'valid'), [1, H, H, C2]); const b = tf.split(z, 2, 3)[1]; console.log('maxdiff', tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]); }
const variants = {
  split4d: () => tf.split(z, 2, 3),
  dwselect_strided: () => { const v = tf.reshape(z, [1, H, 2 * H, C2]); return [tf.depthwiseConv2d(v, f0, [1, 2], 'valid'), tf.depthwiseConv2d(v, f1, [1, 2], 'valid')]; },
  maxpool_sel: () => tf.maxPool(tf.reshape(z, [1, H, 2 * H, C2]), [1, 1], [1, 2], 'valid'),
  avgpool_sel: () => tf.avgPool(tf.reshape(z, [1, H, 2 * H, C2]), [1, 1], [1, 2], 'valid'),
};
for (const rep of [0, 1, 2]) for (const [k, f] of Object.entries(variants)) {
  for (let i = 0; i < 3; i++) tf.tidy(() => { f(); });
  const n = 100; const t0 = performance.now();
  for (let i = 0; i < n; i++) tf.tidy(() => { f(); });
  if (rep) console.log(k.padEnd(22), ((performance.now() - t0) / n).toFixed(3), 'ms');
}

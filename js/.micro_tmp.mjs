import path from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs-core');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep);
tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
await tf.setBackend('wasm'); await tf.ready();
const x = tf.randomNormal([1, 52, 52, 58]); const w = tf.randomNormal([1, 1, 58, 58]); const b = tf.randomNormal([58]); const a = tf.fill([58], 0.1);
const variants = {
  conv: () => tf.conv2d(x, w, 1, 'valid'),
  conv_bias: () => tf.fused.conv2d({ x, filter: w, strides: 1, pad: 'valid', bias: b }),
  conv_bias_relu: () => tf.fused.conv2d({ x, filter: w, strides: 1, pad: 'valid', bias: b, activation: 'relu' }),
  conv_bias_leaky: () => tf.fused.conv2d({ x, filter: w, strides: 1, pad: 'valid', bias: b, activation: 'leakyrelu', leakyreluAlpha: 0.1 }),
  conv_then_add_leaky: () => tf.leakyRelu(tf.add(tf.conv2d(x, w, 1, 'valid'), b), 0.1),
  conv_bias_prelu: () => tf.fused.conv2d({ x, filter: w, strides: 1, pad: 'valid', bias: b, activation: 'prelu', preluActivationWeights: a }),
  prelu: () => tf.prelu(x, a),
  relu: () => tf.relu(x),
  add: () => tf.add(x, x),
  leaky: () => tf.leakyRelu(x, 0.1),
  concat_c: () => tf.concat([x, x], 3),
  split_c: () => tf.split(tf.concat([x, x], 3), 2, 3),
  concat_0: () => tf.concat([tf.reshape(x,[1, 2704, 58]), tf.reshape(x,[1, 2704, 58])], 0),
};
for (const rep of [0,1]) for (const [k, f] of Object.entries(variants)) {
  for (let i = 0; i < 5; i++) tf.tidy(() => { const o = f(); (Array.isArray(o) ? o : [o]).forEach(t => t.dataSync()); });
  const t0 = performance.now(); const n = 100;
  for (let i = 0; i < n; i++) tf.tidy(() => { f(); });
  console.log(k.padEnd(22), ((performance.now() - t0) / n).toFixed(3), 'ms');
}

#!/usr/bin/env node
// Run an ONNX model with onnxruntime-web (wasm) in Node, on a batch of inputs: the runtime a JS user would pick
// instead of TFJS, measured the way js/run_graph_model.mjs measures TFJS (load, warm-up, one timed inference per
// input, outputs read back).
//
// Usage:
//   node js/run_onnx_web.mjs --model model.sim.onnx --input in.ndtb --output out.ndtb [--threads N] [--warmup N]
//        [--outputs name1,name2]
// --threads: onnxruntime-web's env.wasm.numThreads (0: its default); meta.threads is what it settled on after
// creating the session (1 where threads are unavailable). The wasm files come from node_modules/onnxruntime-web.
// Tensor bundles (.ndtb): see js/browser/bundle.mjs.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { timeEach } from './browser/timing.mjs';
import { fail, readBundleFile, writeBundleFile } from './node_io.mjs';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const args = { threads: '1', warmup: '0', outputs: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (!key.startsWith('--') || argv[i + 1] === undefined) fail(`bad argument '${key}' (see run_onnx_web.mjs)`);
    const name = key.slice(2);
    if (!['model', 'input', 'output', 'threads', 'warmup', 'outputs'].includes(name)) fail(`unknown option ${key}`);
    args[name] = argv[i + 1];
  }
  for (const need of ['model', 'input', 'output']) if (!args[need]) fail(`--${need} is required`);
  if (!fs.existsSync(args.model)) fail(`${args.model}: ONNX model not found`);
  return { ...args, threads: Number.parseInt(args.threads, 10) || 0, warmup: Number.parseInt(args.warmup, 10) || 0,
    outputs: args.outputs ? args.outputs.split(',').filter(Boolean) : null };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ort = require('onnxruntime-web');
  const dist = path.dirname(require.resolve('onnxruntime-web')) + path.sep; // .../onnxruntime-web/dist/
  ort.env.wasm.wasmPaths = dist;
  ort.env.wasm.numThreads = args.threads;
  ort.env.logLevel = 'error';
  const bundle = readBundleFile(args.input);
  let t0 = performance.now();
  const session = await ort.InferenceSession.create(fs.readFileSync(args.model), { executionProviders: ['wasm'] });
  const loadMs = performance.now() - t0;
  const names = args.outputs || session.outputNames;
  const executeMs = [];
  async function infer(tensors) {
    const feeds = {};
    for (const t of tensors) feeds[t.name] = new ort.Tensor(t.dtype, t.values, t.shape);
    const started = performance.now();
    const outs = await session.run(feeds, names);
    executeMs.push(performance.now() - started);
    return names.map((n) => ({ name: n, dtype: 'float32', shape: outs[n].dims, values: outs[n].data }));
  }
  const warmupMs = bundle.items.length ? await timeEach(args.warmup, () => infer(bundle.items[0])) : [];
  const results = [];
  const inferMs = [];
  for (const item of bundle.items) {
    t0 = performance.now();
    results.push(await infer(item));
    inferMs.push(performance.now() - t0);
  }
  const meta = { runtime: 'onnxruntime-web', ort: ort.env.versions.web, backend: 'wasm',
    threads: ort.env.wasm.numThreads, requested_threads: args.threads || null, load_ms: loadMs,
    warmup_ms: warmupMs, infer_ms: inferMs, execute_ms: executeMs.slice(warmupMs.length) };
  writeBundleFile(args.output, results, meta);
  await session.release();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => fail(String(err && err.message ? err.message : err).split('\n')[0], 1));
}

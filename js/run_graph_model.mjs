#!/usr/bin/env node
// Run a TFJS graph model from disk in Node, on a whole batch of inputs, with TFJS's own kernels.
//
// Why: TFJS artifacts are validated by running TFJS itself (wasm or cpu backend), never by re-running TF.
// No tfjs-node (it cannot install offline): the model is read with fs through a custom IO handler.
//
// Usage:
//   node js/run_graph_model.mjs --model DIR/model.json --input in.ndtb --output out.ndtb
//        [--backend wasm|cpu] [--outputs name1,name2 | --outputs-file names.json] [--warmup N] [--profile 1]
//
// --outputs / --outputs-file: what to fetch (default: the model's outputs). Any node of the graph may be named,
// internal ones included ("StatefulPartitionedCall/.../LeakyRelu" or "name:k" for a node's k-th output):
// GraphModel.execute runs the graph up to them. --outputs-file is a JSON array of names, for long lists
// (validation.localize fetches every tapped tensor of a graph).
//
// --profile 1: every timed inference runs inside tf.profile; meta.kernel_ms has, per inference, the time spent
// in each kernel (by registered kernel name, summed over its calls). Profiling reads every kernel's output, so
// the infer_ms of such a run are not latencies: time and profile in separate runs. meta.kernel_records has, per
// inference, every kernel call in execution order: {name, input_shapes, output_shapes, ms} (what attributes the
// time to layers: a conv's output shape and filter shape give its multiply-adds).
//
// Tensor bundle format (.ndtb), the same for input and output files:
//   8 bytes magic "NDTB0001", uint32 LE header length L, 4 zero bytes, L bytes of UTF-8 JSON header,
//   then the data section (the header length is padded so the data starts at an 8-byte boundary).
//   header = {"items": [{"tensors": [{"name", "dtype": "float32"|"int32"|"uint8", "shape": [...],
//             "offset": bytes from the data start, "nbytes"}]}, ...], "meta": {...}}
//   Input file: one item per inference (its tensors are the feeds by TFJS input name).
//   Output file: one item per inference (tensors by output name); meta has the backend and timings in ms.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { timeEach } from './browser/timing.mjs';
import { fail, readBundleFile, writeBundleFile } from './node_io.mjs';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const args = { backend: 'wasm', warmup: 0, outputs: null, profile: false };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key.startsWith('--') || value === undefined) fail(`bad argument '${key}' (see the usage in run_graph_model.mjs)`);
    const name = key.slice(2);
    if (!['model', 'input', 'output', 'backend', 'outputs', 'outputs-file', 'warmup', 'profile'].includes(name)) fail(`unknown option ${key}`);
    args[name] = value;
    i += 1;
  }
  for (const need of ['model', 'input', 'output']) if (!args[need]) fail(`--${need} is required`);
  if (!['wasm', 'cpu'].includes(args.backend)) fail(`--backend must be wasm or cpu, got '${args.backend}'`);
  args.warmup = Number.parseInt(args.warmup, 10) || 0;
  if (args.outputs && args['outputs-file']) fail('give --outputs or --outputs-file, not both');
  args.outputs = args.outputs ? args.outputs.split(',').filter(Boolean) : null;
  if (args['outputs-file']) args.outputs = readNameList(args['outputs-file']);
  args.profile = args.profile === '1' || args.profile === 'true';
  return args;
}

function readNameList(file) {
  let names;
  try {
    names = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`${file}: cannot read the list of node names (${err.message.split('\n')[0]})`);
  }
  if (!Array.isArray(names) || !names.length || !names.every((n) => typeof n === 'string' && n)) {
    fail(`${file}: expected a JSON array of node names`);
  }
  return names;
}

// IO handler: model.json + its weight shards, read with fs and concatenated in manifest order.
function fileHandler(modelJson) {
  return {
    async load() {
      let model;
      try {
        model = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
      } catch (err) {
        fail(`${modelJson}: cannot read TFJS model.json (${err.message.split('\n')[0]})`);
      }
      if (!model.modelTopology || !model.weightsManifest) fail(`${modelJson}: not a TFJS graph model (no modelTopology/weightsManifest)`);
      const dir = path.dirname(modelJson);
      const weightSpecs = [];
      const buffers = [];
      for (const group of model.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const shard of group.paths) {
          const shardPath = path.join(dir, shard);
          if (!fs.existsSync(shardPath)) fail(`${shardPath}: weight shard named in ${modelJson} not found`);
          buffers.push(fs.readFileSync(shardPath));
        }
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: model.modelTopology,
        weightSpecs,
        weightData,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        userDefinedMetadata: model.userDefinedMetadata,
        modelInitializer: model.modelInitializer,
      };
    },
  };
}

async function setBackend(tf, backend) {
  if (backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
    wasm.setWasmPaths(dist);
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // single-threaded SIMD: reproducible, no workers
  } else {
    require('@tensorflow/tfjs-backend-cpu');
  }
  const ok = await tf.setBackend(backend);
  if (!ok) fail(`TFJS backend '${backend}' failed to initialise`);
  await tf.ready();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tf = require('@tensorflow/tfjs-core');
  const converter = require('@tensorflow/tfjs-converter');
  await setBackend(tf, args.backend);
  const modelJson = path.resolve(args.model);
  if (!fs.existsSync(modelJson)) fail(`${modelJson}: TFJS model.json not found`);
  const bundle = readBundleFile(args.input);

  let t0 = performance.now();
  const model = await converter.loadGraphModel(fileHandler(modelJson));
  const loadMs = performance.now() - t0;
  const outputNames = args.outputs || model.outputNodes;
  let useAsync = false;
  const executeMs = []; // model.execute alone, without making the feed tensors and reading the outputs

  async function infer(tensors) {
    const feeds = {};
    for (const t of tensors) feeds[t.name] = tf.tensor(t.values, t.shape, t.dtype === 'uint8' ? 'int32' : t.dtype);
    let outs;
    try {
      const started = performance.now();
      if (!useAsync) {
        try {
          outs = model.execute(feeds, outputNames);
        } catch (err) {
          if (!/executeAsync/.test(String(err && err.message))) throw err;
          useAsync = true; // graph has dynamic ops (Where, NonMaxSuppression...)
        }
      }
      if (useAsync) outs = await model.executeAsync(feeds, outputNames);
      executeMs.push(performance.now() - started); // wasm and cpu run their kernels inside execute()
      if (!Array.isArray(outs)) outs = [outs];
      const result = [];
      for (let i = 0; i < outs.length; i += 1) {
        const o = outs[i];
        const values = await o.data();
        const dtype = o.dtype === 'bool' ? 'uint8' : o.dtype;
        const typed = dtype === 'uint8' ? Uint8Array.from(values) : values;
        result.push({ name: outputNames[i], dtype, shape: o.shape, values: typed });
      }
      return result;
    } finally {
      tf.dispose(Object.values(feeds));
      if (outs) tf.dispose(outs);
    }
  }

  const warmupMs = bundle.items.length ? await timeEach(args.warmup, () => infer(bundle.items[0])) : [];
  const results = [];
  const inferMs = [];
  const kernelMs = [];
  const kernelRecords = [];
  for (const item of bundle.items) {
    t0 = performance.now();
    if (args.profile) {
      let result;
      const info = await tf.profile(async () => { result = await infer(item); });
      const perKernel = {};
      const records = [];
      for (const k of info.kernels) {
        if (k.name.endsWith('__op')) continue; // op wrappers: their kernels are listed on their own
        const ms = await k.kernelTimeMs;
        if (typeof ms !== 'number') continue;
        perKernel[k.name] = (perKernel[k.name] || 0) + ms;
        records.push({ name: k.name, input_shapes: k.inputShapes, output_shapes: k.outputShapes, ms });
      }
      kernelMs.push(perKernel);
      kernelRecords.push(records);
      results.push(result);
    } else {
      results.push(await infer(item));
    }
    inferMs.push(performance.now() - t0);
  }
  const meta = {
    backend: tf.getBackend(),
    simd: args.backend === 'wasm' ? await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT') : null,
    threads: args.backend === 'wasm' ? 1 : null,
    tfjs_version: tf.version_core,
    execute_async: useAsync,
    output_names: outputNames,
    input_names: model.inputNodes,
    load_ms: loadMs,
    warmup_ms: warmupMs,
    infer_ms: inferMs,
    execute_ms: executeMs.slice(warmupMs.length),
    kernel_ms: args.profile ? kernelMs : null,
    kernel_records: args.profile ? kernelRecords : null,
  };
  writeBundleFile(args.output, results, meta);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => fail(String(err && err.message ? err.message : err).split('\n')[0], 1));
}

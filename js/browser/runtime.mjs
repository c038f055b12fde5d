// The runner's runtime half: tfjs (wasm or webgl) or onnxruntime-web (wasm) set up once, input tensor bundles, models,
// timed runs. Scope-agnostic: it runs on a page's main thread (page.mjs calls it directly) and in a dedicated Web
// Worker (worker.mjs, where WebAssembly threads block in Atomics.wait instead of spinning); tfjs is the global
// `tf` of the scope (the page's script tags, the worker's imports).
//   setup({runtime: 'tfjs'|'ort', backend: 'wasm'|'webgl', threads, liftCap, flags, ortProxy}) -> what it got
//   loadInputs(set, url)                  an input tensor bundle (one item per image), kept as `set`
//   loadModel(key, url)                   a TFJS model.json or an .onnx file -> {load_ms, inputs, outputs}
//   run(key, {inputs: set, outputs, warmup, count, upload}) -> timings; with upload (a URL), the outputs are PUT
//                                         there as a tensor bundle
// Timings: infer = feed tensors made, model executed, every output read back to JS (as the Node runner times
// it); execute = the execute call alone (wasm runs its kernels inside it; webgl only queues GPU work there).
import { parseBundle, serializeBundle } from './bundle.mjs';
import { timeEach } from './timing.mjs';
import { requestWasmThreads, wasmThreadFacts } from './wasm_threads.mjs';

const ORT_DIST = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
const TFJS_WASM_DIST = new URL('../node_modules/@tensorflow/tfjs-backend-wasm/dist/', import.meta.url).href;
const state = { setup: null, inputs: {}, models: {}, ort: null };

function scratchCanvas() {
  return typeof document !== 'undefined' ? document.createElement('canvas') : new OffscreenCanvas(1, 1);
}

function webglRenderer() {
  const gl = scratchCanvas().getContext('webgl2') || scratchCanvas().getContext('webgl');
  if (!gl) return null;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
}

async function setupTfjs(config) {
  const tf = globalThis.tf;
  const facts = { runtime: 'tfjs', tfjs: tf.version_core };
  for (const [flag, value] of Object.entries(config.flags || {})) tf.env().set(flag, value);
  if (config.backend === 'wasm') {
    tf.wasm.setWasmPaths(TFJS_WASM_DIST);
    facts.thread_request = requestWasmThreads(tf, config.threads || 0, config.liftCap !== false);
  }
  if (!(await tf.setBackend(config.backend))) throw new Error(`TFJS backend '${config.backend}' unavailable`);
  await tf.ready();
  facts.backend = tf.getBackend();
  if (config.backend === 'wasm') Object.assign(facts, await wasmThreadFacts(tf));
  if (config.backend === 'webgl') {
    facts.renderer = webglRenderer();
    facts.webgl_version = tf.env().get('WEBGL_VERSION');
    facts.flags = Object.fromEntries(['WEBGL_FORCE_F16_TEXTURES', 'WEBGL_RENDER_FLOAT32_ENABLED',
      'WEBGL_PACK'].map((f) => [f, tf.env().get(f)]));
    facts.threads = null;
  }
  return facts;
}

async function setupOrt(config) {
  if (config.backend !== 'wasm') throw new Error(`onnxruntime-web runs here on wasm only, not '${config.backend}'`);
  const ort = await import(new URL('ort.wasm.min.mjs', ORT_DIST).href);
  ort.env.wasm.wasmPaths = ORT_DIST;   // the package's own files, never a CDN
  ort.env.wasm.numThreads = config.threads || 0;
  // its own worker proxy: sessions run in a worker that onnxruntime-web starts (main thread only)
  ort.env.wasm.proxy = config.ortProxy === true;
  ort.env.logLevel = 'error';
  state.ort = ort;
  return { runtime: 'onnxruntime-web', ort: ort.env.versions.web, backend: 'wasm', ort_proxy: ort.env.wasm.proxy,
    cross_origin_isolated: self.crossOriginIsolated === true,
    thread_request: { requested: config.threads || null, hardware_concurrency: navigator.hardwareConcurrency } };
}

export async function setup(config) {
  state.setup = config.runtime === 'ort' ? await setupOrt(config) : await setupTfjs(config);
  state.setup.hosting = typeof document !== 'undefined' ? 'main' : 'worker';
  return state.setup;
}

export async function loadInputs(set, url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  state.inputs[set] = parseBundle(await response.arrayBuffer()).items;
  return state.inputs[set].length;
}

export async function loadModel(key, url) {
  const t0 = performance.now();
  let info;
  if (state.setup.runtime === 'onnxruntime-web') {
    const session = await state.ort.InferenceSession.create(url, { executionProviders: ['wasm'] });
    info = { session, inputs: session.inputNames, outputs: session.outputNames };
    // onnxruntime-web settles numThreads at its first session: 1 where the page cannot run threads
    state.setup.threads = state.ort.env.wasm.numThreads;
  } else {
    const model = await globalThis.tf.loadGraphModel(url);
    info = { model, inputs: model.inputNodes, outputs: model.outputNodes };
  }
  state.models[key] = info;
  return { load_ms: performance.now() - t0, inputs: info.inputs, outputs: info.outputs, threads: state.setup.threads };
}

async function inferTfjs(model, tensors, names, executeMs) {
  const tf = globalThis.tf;
  const feeds = {};
  for (const t of tensors) feeds[t.name] = tf.tensor(t.values, t.shape, t.dtype === 'uint8' ? 'int32' : t.dtype);
  let outs;
  try {
    const started = performance.now();
    outs = model.execute(feeds, names);
    executeMs.push(performance.now() - started);
    if (!Array.isArray(outs)) outs = [outs];
    const result = [];
    for (let i = 0; i < outs.length; i += 1) {
      result.push({ name: names[i], dtype: 'float32', shape: outs[i].shape, values: await outs[i].data() });
    }
    return result;
  } finally {
    tf.dispose(Object.values(feeds));
    if (outs) tf.dispose(outs);
  }
}

async function inferOrt(session, tensors, names, executeMs) {
  const feeds = {};
  // the proxy transfers (detaches) its inputs' buffers to its worker: it gets a copy, the set stays reusable
  const proxied = state.setup.ort_proxy;
  for (const t of tensors) {
    feeds[t.name] = new state.ort.Tensor(t.dtype, proxied ? t.values.slice() : t.values, t.shape);
  }
  const started = performance.now();
  const outs = await session.run(feeds, names);
  executeMs.push(performance.now() - started);
  const result = names.map((n) => ({ name: n, dtype: 'float32', shape: outs[n].dims, values: outs[n].data }));
  for (const n of names) outs[n].dispose();
  return result;
}

export async function run(key, options) {
  const info = state.models[key];
  if (!info) throw new Error(`model '${key}' not loaded`);
  const names = options.outputs || info.outputs;
  const infer = state.setup.runtime === 'onnxruntime-web'
    ? (tensors, ms) => inferOrt(info.session, tensors, names, ms)
    : (tensors, ms) => inferTfjs(info.model, tensors, names, ms);
  const inputs = state.inputs[options.inputs];
  if (!inputs) throw new Error(`input set '${options.inputs}' not loaded`);
  const count = Math.min(options.count || inputs.length, inputs.length);
  const scratch = [];
  const warmupMs = await timeEach(options.warmup || 0, () => infer(inputs[0], scratch));
  const inferMs = [];
  const executeMs = [];
  const results = [];
  for (let i = 0; i < count; i += 1) {
    const t0 = performance.now();
    const result = await infer(inputs[i], executeMs);
    inferMs.push(performance.now() - t0);
    if (options.upload) results.push(result);
  }
  if (options.upload) {
    const body = serializeBundle(results, {});
    const response = await fetch(options.upload, { method: 'PUT', body });
    if (!response.ok) throw new Error(`${options.upload}: upload failed, HTTP ${response.status}`);
  }
  return { warmup_ms: warmupMs, infer_ms: inferMs, execute_ms: executeMs, runs: count };
}


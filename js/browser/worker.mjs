// The runner's runtime (runtime.mjs) in a dedicated module Web Worker, for page.mjs's `hosting: 'worker'`.
//
// Why: on a page's main thread WebAssembly may not block (Atomics.wait throws there), so emscripten's pthread code
// spins while it waits, and the calling thread is one of XNNPACK's workers; in a worker it blocks. The worker is
// served like the page (COOP/COEP: a worker's script falls under COEP require-corp too), so it is cross-origin
// isolated as well and tfjs-backend-wasm loads its threaded build. tfjs's UMD bundles set the worker's global `tf`;
// the thread cap is lifted on the worker's own navigator (wasm_threads.mjs), which is what tfjs reads here.
//
// Messages (worker_client.mjs): the page posts {id, fn, args}; the worker answers {id, ok: true, value} or
// {id, ok: false, error}, and {ready: true} once loaded.
import '../node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js';
import '../node_modules/@tensorflow/tfjs-converter/dist/tf-converter.min.js';
import '../node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js';
import '../node_modules/@tensorflow/tfjs-backend-webgl/dist/tf-backend-webgl.min.js';
import * as runtime from './runtime.mjs';

const CALLS = { setup: runtime.setup, loadInputs: runtime.loadInputs, loadModel: runtime.loadModel, run: runtime.run };

async function answer({ id, fn, args }) {
  try {
    if (!CALLS[fn]) throw new Error(`unknown call '${fn}'`);
    self.postMessage({ id, ok: true, value: await CALLS[fn](...(args || [])) });
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err && err.message ? err.message : err) });
  }
}

self.onmessage = (event) => answer(event.data);
self.postMessage({ ready: true });

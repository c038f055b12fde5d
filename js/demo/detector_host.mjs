// The demo's model half, scope-agnostic: demo.js calls it directly (webgl, cpu: the page's main thread) or through
// detector_worker.mjs (wasm: a dedicated Web Worker, where tfjs-backend-wasm's threads block instead of spinning;
// docs/benchmark.md measures the difference). tfjs is the scope's global `tf`.
import { requestWasmThreads, wasmThreadFacts } from '../browser/wasm_threads.mjs';

const WASM_DIST = new URL('../node_modules/@tensorflow/tfjs-backend-wasm/dist/', import.meta.url).href;
let detector = null;
let threadRequest = null;

// Load the artifact's nanodet.mjs and its model on `backend`, asking for `threads` wasm threads (the first wasm
// load decides them: setThreadsCount counts only before the backend starts). Returns what the scope got.
export async function loadDetector({ modelUrl, backend, threads }) {
  const tf = globalThis.tf;
  if (tf.wasm) tf.wasm.setWasmPaths(WASM_DIST);
  if (detector) detector.dispose();
  detector = null;
  // The module written next to the model carries that model's constants (size, layout, names, classes).
  const { load } = await import(new URL('nanodet.mjs', modelUrl).href);
  if (backend === 'wasm' && tf.wasm && !threadRequest) threadRequest = requestWasmThreads(tf, threads, true);
  const t0 = performance.now();
  detector = await load(modelUrl, { tf, backend });
  const loadMs = performance.now() - t0;
  const got = tf.getBackend();
  const facts = got === 'wasm' ? await wasmThreadFacts(tf) : { threads: null };
  return { backend: got, ...facts, requested: threadRequest ? threadRequest.requested : null, loadMs,
    config: detector.config, hosting: typeof document === 'undefined' ? 'worker' : 'main' };
}

export function detect(image) {
  if (!detector) throw new Error('no model loaded');
  return detector.detect(image);
}

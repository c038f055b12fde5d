// detector_host.mjs in a dedicated module Web Worker (served, like the page, with COOP/COEP, so it is cross-origin
// isolated and tfjs-backend-wasm may run threads). Messages (js/browser/worker_client.mjs): {id, fn:
// 'loadDetector'|'detect', args} -> {id, ok, value | error}; {ready: true} once loaded. detect takes an ImageBitmap
// (transferred by the page).
import '../node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js';
import '../node_modules/@tensorflow/tfjs-converter/dist/tf-converter.min.js';
import '../node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js';
import { detect, loadDetector } from './detector_host.mjs';

const CALLS = { loadDetector, detect };

self.onmessage = async ({ data }) => {
  try {
    if (!CALLS[data.fn]) throw new Error(`unknown call '${data.fn}'`);
    self.postMessage({ id: data.id, ok: true, value: await CALLS[data.fn](...(data.args || [])) });
  } catch (err) {
    self.postMessage({ id: data.id, ok: false, error: String(err && err.message ? err.message : err) });
  } finally {
    for (const arg of data.args || []) if (arg instanceof ImageBitmap) arg.close();
  }
};
self.postMessage({ ready: true });

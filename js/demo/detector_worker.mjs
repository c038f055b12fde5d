// detector_host.mjs in a dedicated module Web Worker (served, like the page, with COOP/COEP, so it is cross-origin
// isolated and tfjs-backend-wasm may run threads). Messages (js/browser/worker_client.mjs): {id, fn:
// 'loadDetector'|'detect', args} -> {id, ok, value | error}; {ready: true} once loaded. detect takes an ImageBitmap
// (transferred by the page).
import '../node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js';
import '../node_modules/@tensorflow/tfjs-converter/dist/tf-converter.min.js';
import '../node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js';
import { answerCalls } from '../browser/worker_client.mjs';
import { detect, loadDetector } from './detector_host.mjs';

function closeBitmaps(args) {
  for (const arg of args) if (arg instanceof ImageBitmap) arg.close();
}

answerCalls({ loadDetector, detect }, closeBitmaps);

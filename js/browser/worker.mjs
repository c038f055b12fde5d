// The runner's runtime (runtime.mjs) in a dedicated module Web Worker, for page.mjs's `hosting: 'worker'`.
//
// Why: on a page's main thread WebAssembly may not block (Atomics.wait throws there), so emscripten's pthread code
// spins while it waits, and the calling thread is one of XNNPACK's workers; in a worker it blocks. The worker is
// served like the page (COOP/COEP: a worker's script falls under COEP require-corp too), so it is cross-origin
// isolated as well and tfjs-backend-wasm loads its threaded build. tfjs's UMD bundles set the worker's global `tf`;
// the thread cap is lifted on the worker's own navigator (wasm_threads.mjs), which is what tfjs reads here.
//
// Messages: worker_client.mjs (both sides).
import '../node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js';
import '../node_modules/@tensorflow/tfjs-converter/dist/tf-converter.min.js';
import '../node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js';
import '../node_modules/@tensorflow/tfjs-backend-webgl/dist/tf-backend-webgl.min.js';
import * as runtime from './runtime.mjs';
import { answerCalls } from './worker_client.mjs';

answerCalls({ setup: runtime.setup, loadInputs: runtime.loadInputs, loadModel: runtime.loadModel, run: runtime.run });

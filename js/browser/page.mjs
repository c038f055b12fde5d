// window.nanodetBench: what validation/runners/chromium_session.py calls in the page, one page per runtime setup.
// The calls are runtime.mjs's (setup, loadInputs, loadModel, run). setup's `hosting` says where the runtime runs:
// 'main' (default): on this page's main thread; 'worker': in a dedicated module Web Worker (worker.mjs), every
// later call forwarded to it (the timings are the worker's own, as the page's are the page's).
import * as runtime from './runtime.mjs';
import { startWorker } from './worker_client.mjs';

const WORKER_URL = new URL('worker.mjs', import.meta.url);
let remote = null;

async function setup(config) {
  let facts;
  if (config.hosting === 'worker') {
    remote = await startWorker(WORKER_URL);
    facts = await remote('setup', [config]);
  } else {
    facts = await runtime.setup(config);
  }
  document.getElementById('state').textContent = JSON.stringify(facts, null, 1);
  return facts;
}

function forward(fn) {
  return (...args) => (remote ? remote(fn, args) : runtime[fn](...args));
}

window.nanodetBench = { setup, loadInputs: forward('loadInputs'), loadModel: forward('loadModel'),
  run: forward('run'), ready: true };

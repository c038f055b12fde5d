// The demo page's logic: load an artifact's nanodet.mjs (the module the toolkit writes beside model.json),
// run detect() on an image and draw the boxes. State for automated tests is published on window.nanodetDemo
// ({state: 'loading'|'ready'|'done'|'error', backend, threads, hosting, crossOriginIsolated, model, detections,
// error}). wasm runs in a dedicated Web Worker (detector_worker.mjs: there its threads block instead of spinning,
// docs/benchmark.md); webgl and cpu run on this page's thread (detector_host.mjs either way).
// wasm threads: `threads=N` asks for N (default: every logical core where the page is cross-origin isolated, as
// `make demo` serves it; else 1); the page shows what tfjs gave (js/browser/wasm_threads.mjs explains the cap).
import { startWorker } from '../browser/worker_client.mjs';
import * as inline from './detector_host.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const demo = { state: 'loading', backend: null, threads: null, hosting: null,
  crossOriginIsolated: self.crossOriginIsolated === true, model: null, detections: null, error: null };
window.nanodetDemo = demo;
let host = null;         // (fn, args, transfer) -> Promise: the scope that holds the model
let workerHost = null;
let lastImage = null;

function wantedThreads() {
  const asked = Number.parseInt(params.get('threads') || '', 10);
  if (asked > 0) return asked;
  return demo.crossOriginIsolated ? navigator.hardwareConcurrency : 1;
}

async function hostFor(backend) {
  if (backend !== 'wasm') return async (fn, args) => inline[fn](...args);
  if (!workerHost) workerHost = await startWorker(new URL('detector_worker.mjs', import.meta.url));
  return workerHost;
}

function showRuntime(facts) {
  demo.threads = facts.threads;
  demo.hosting = facts.hosting;
  const where = facts.hosting === 'worker' ? 'in a Web Worker' : 'on the page\'s thread';
  const threads = demo.backend === 'wasm'
    ? `, ${facts.threads} thread${facts.threads === 1 ? '' : 's'} (asked ${facts.requested}; `
      + `${facts.cross_origin_isolated ? 'cross-origin isolated' : 'NOT cross-origin isolated: no threads'}, `
      + `${facts.wasm_binary})`
    : '';
  $('runtime').textContent = `backend: ${demo.backend}${threads}, ${where}`;
}

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function fail(err) {
  demo.state = 'error';
  demo.error = String(err && err.message ? err.message : err);
  setStatus(`error: ${demo.error}`, true);
  console.error(err);
}

async function loadModel() {
  demo.state = 'loading';
  const modelUrl = new URL($('model').value, location.href);
  const backend = $('backend').value;
  setStatus(`loading ${modelUrl.pathname} on ${backend}...`);
  host = null;
  const next = await hostFor(backend);
  const t0 = performance.now();
  const facts = await next('loadDetector', [{ modelUrl: modelUrl.href, backend, threads: wantedThreads() }]);
  host = next;
  demo.backend = facts.backend;
  showRuntime(facts);
  // Everything model-specific (input size, letterbox or stretch warp, strides, priors, classes) comes from the
  // module's own config: legacy NanoDet and NanoDet-Plus artifacts run on the same page.
  const cfg = facts.config;
  demo.model = cfg.model;
  demo.state = 'ready';
  setStatus(`${cfg.model} ready on ${demo.backend}: ${cfg.inputWidth}x${cfg.inputHeight} `
    + `${cfg.keepRatio ? 'letterbox' : 'stretch'}, strides ${cfg.strides.join('/')} `
    + `(${(performance.now() - t0).toFixed(0)} ms incl. warm-up)`);
  if (lastImage) await run(lastImage);
}

function draw(image, detections) {
  const canvas = $('canvas');
  canvas.width = image.naturalWidth || image.width;
  canvas.height = image.naturalHeight || image.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  const minScore = Number($('min-score').value) || 0;
  const line = Math.max(2, Math.round(canvas.width / 300));
  ctx.font = `${6 * line + 4}px sans-serif`;
  ctx.textBaseline = 'bottom';
  const rows = [];
  for (const d of detections) {
    if (d.score < minScore) continue;
    const [x1, y1, x2, y2] = d.box;
    const hue = (d.label * 47) % 360;
    ctx.strokeStyle = `hsl(${hue} 90% 45%)`;
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.className} ${d.score.toFixed(2)}`;
    const w = ctx.measureText(text).width + 2 * line;
    const h = 6 * line + 6;
    const ty = y1 > h ? y1 : y1 + h;
    ctx.fillStyle = `hsl(${hue} 90% 45%)`;
    ctx.fillRect(x1, ty - h, w, h);
    ctx.fillStyle = '#fff';
    ctx.fillText(text, x1 + line, ty - 1);
    rows.push(`<tr><td>${d.className}</td><td>${d.score.toFixed(3)}</td>${d.box.map((v) => `<td>${v.toFixed(1)}</td>`).join('')}</tr>`);
  }
  $('table').querySelector('tbody').innerHTML = rows.join('');
  return rows.length;
}

async function run(image) {
  lastImage = image;
  if (!host) return;
  setStatus('detecting...');
  const t0 = performance.now();
  let detections;
  if (demo.hosting === 'worker') {
    const bitmap = await createImageBitmap(image);   // moved to the worker, not copied
    detections = await host('detect', [bitmap], [bitmap]);
  } else {
    detections = await host('detect', [image]);
  }
  const ms = performance.now() - t0;
  const drawn = draw(image, detections);
  demo.detections = detections;
  demo.state = 'done';
  setStatus(`${detections.length} detections (${drawn} drawn) by ${demo.model} in ${ms.toFixed(0)} ms `
    + `on ${demo.backend}`);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load image ${src}`));
    img.src = src;
  });
}

$('model').value = params.get('model') || '../../artifacts/m-416/tfjs/model.json';
$('backend').value = params.get('backend') || 'wasm';
$('load').addEventListener('click', () => loadModel().catch(fail));
$('min-score').addEventListener('change', () => { if (lastImage && demo.detections) draw(lastImage, demo.detections); });
$('file').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    const url = URL.createObjectURL(file);
    const img = await loadImage(url);
    await run(img);
  } catch (err) { fail(err); }
});

(async () => {
  await loadModel();
  if (params.get('image')) await run(await loadImage(params.get('image')));
})().catch(fail);

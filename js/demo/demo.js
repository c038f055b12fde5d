// The demo page's logic: load an artifact's nanodet.mjs (the module the toolkit writes beside model.json),
// run detect() on an image and draw the boxes. State for automated tests is published on window.nanodetDemo
// ({state: 'loading'|'ready'|'done'|'error', backend, threads, crossOriginIsolated, model, detections, error}).
// wasm threads: `threads=N` asks for N (default: every logical core where the page is cross-origin isolated, as
// `make demo` serves it; else 1); the page shows what tfjs gave (js/browser/wasm_threads.mjs explains the cap).
import { requestWasmThreads, wasmThreadFacts } from '../browser/wasm_threads.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const tf = window.tf;
const demo = { state: 'loading', backend: null, threads: null, crossOriginIsolated: self.crossOriginIsolated === true,
  model: null, detections: null, error: null };
window.nanodetDemo = demo;
let detector = null;
let lastImage = null;
let threadRequest = null;

function wantedThreads() {
  const asked = Number.parseInt(params.get('threads') || '', 10);
  if (asked > 0) return asked;
  return demo.crossOriginIsolated ? navigator.hardwareConcurrency : 1;
}

async function showRuntime() {
  const facts = demo.backend === 'wasm' ? await wasmThreadFacts(tf) : { threads: null };
  demo.threads = facts.threads;
  const threads = demo.backend === 'wasm'
    ? `, ${facts.threads} thread${facts.threads === 1 ? '' : 's'} (asked ${threadRequest.requested}; `
      + `${demo.crossOriginIsolated ? 'cross-origin isolated' : 'NOT cross-origin isolated: no threads'}, `
      + `${facts.wasm_binary})`
    : '';
  $('runtime').textContent = `backend: ${demo.backend}${threads}`;
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
  if (tf.wasm) tf.wasm.setWasmPaths(new URL('../node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
  if (detector) detector.dispose();
  detector = null;
  // The module written next to the model carries that model's constants (size, layout, names, classes).
  const { load } = await import(new URL('nanodet.mjs', modelUrl).href);
  // setThreadsCount only counts before the wasm backend starts: the first load decides the page's threads
  if (backend === 'wasm' && tf.wasm && !threadRequest) threadRequest = requestWasmThreads(tf, wantedThreads(), true);
  const t0 = performance.now();
  detector = await load(modelUrl.href, { tf, backend });
  demo.backend = tf.getBackend();
  await showRuntime();
  // Everything model-specific (input size, letterbox or stretch warp, strides, priors, classes) comes from the
  // module's own config: legacy NanoDet and NanoDet-Plus artifacts run on the same page.
  const cfg = detector.config;
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
  if (!detector) return;
  setStatus('detecting...');
  const t0 = performance.now();
  const detections = await detector.detect(image);
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

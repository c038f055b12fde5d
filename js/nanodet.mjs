// NanoDet detection for TensorFlow.js: load a converted graph model and detect objects in an image.
//
// This file is a TEMPLATE: the toolkit (converters/js_module.py) renders it next to every TFJS artifact's
// model.json as `nanodet.mjs`, with that model's own constants (input size and layout, tensor names,
// mean/std, strides, reg_max, decode thresholds, class names) in `config` below.
//
// Pre- and post-processing follow the toolkit's Python reference exactly (nanodet_ref/preprocess.py and
// nanodet_ref/decode.py), as the config says: the keep-ratio warp centred into the input (legacy NanoDet) or the
// stretch warp (NanoDet-Plus, keepRatio false), computed as cv2.warpPerspective does, bit for bit
// (nanodet_warp.mjs), BGR, mean/std; sigmoid scores come from the model; points at (col + priorOffset) * stride
// for every stride of the config; box distances are the softmax expectation over the bins; per-class NMS; the
// best `maxDetections`; boxes in image pixels (nanodet_decode.mjs). Ship the three files together.
//
//   import { load } from './nanodet.mjs';
//   const detector = await load('path/or/url/model.json', { tf });   // tf: tfjs-core + tfjs-converter
//   const detections = await detector.detect(image);   // [{box: [x1, y1, x2, y2], score, label, className}]
//   detector.dispose();
//
// `image` is a tf.Tensor3D [h, w, 3] RGB (uint8 values), decoded pixels {data, width, height} (RGBA or
// RGB, e.g. ImageData or raw pixels from sharp), or, in browsers, an HTMLImageElement, HTMLCanvasElement,
// HTMLVideoElement, ImageBitmap or OffscreenCanvas.

import { decodeOutputs, invert3x3 } from './nanodet_decode.mjs';
import { warpBilinear } from './nanodet_warp.mjs';

export { invert3x3 };

/** The model's constants, written by the toolkit when it renders this template (null in the template). */
export const config = /*@NANODET_CONFIG@*/ null;

const IS_NODE = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

function requireConfig(cfg) {
  if (cfg == null) {
    throw new Error('nanodet.mjs: this is the template; use the nanodet.mjs written next to a converted model.json');
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------------------------
// Geometry: the warp matrix (nanodet_ref.preprocess.warp_matrix): keep-ratio (letterbox) or stretch.
// ---------------------------------------------------------------------------------------------------------

/** 3x3 matrix (row-major, 9 numbers) mapping image pixels to input-tensor pixels: T @ S @ C. */
export function warpMatrix(srcWidth, srcHeight, dstWidth, dstHeight, keepRatio = true) {
  if (!keepRatio) return [dstWidth / srcWidth, 0, 0, 0, dstHeight / srcHeight, 0, 0, 0, 1];
  const ratio = srcWidth / srcHeight < dstWidth / dstHeight ? dstHeight / srcHeight : dstWidth / srcWidth;
  // move @ scale @ centre, multiplied out.
  return [ratio, 0, dstWidth / 2 - ratio * srcWidth / 2, 0, ratio, dstHeight / 2 - ratio * srcHeight / 2, 0, 0, 1];
}


// ---------------------------------------------------------------------------------------------------------
// Preprocessing (pure JS on pixels; no tensors).
// ---------------------------------------------------------------------------------------------------------

/**
 * Pixels {data, width, height, channels?} (RGB or RGBA, values 0..255) -> {input, shape, warp, width, height}.
 * `input` is a Float32Array in the model's layout (NCHW or NHWC), BGR, normalised with mean/std; `warp` is the
 * image -> input matrix. The warp is cv2.warpPerspective's bilinear warp with border 0, bit for bit
 * (nanodet_warp.mjs; `options.fused: false` gives OpenCV's result on CPUs without AVX2), then (v - mean) / std
 * in float32 as numpy computes it: the input equals the Python reference's (nanodet_ref/preprocess.py) exactly.
 */
export function preprocess(pixels, cfg = config, options = {}) {
  cfg = requireConfig(cfg);
  const { data, width, height } = pixels;
  if (!(width > 0 && height > 0) || data == null) throw new Error('nanodet: image has no pixels');
  const channels = pixels.channels || data.length / (width * height);
  if ((channels !== 3 && channels !== 4) || data.length !== width * height * channels) {
    throw new Error(`nanodet: image data must be RGB or RGBA (got ${data.length} values for ${width}x${height})`);
  }
  const [W, H] = [cfg.inputWidth, cfg.inputHeight];
  const warp = warpMatrix(width, height, W, H, cfg.keepRatio);
  const rgb = warpBilinear({ data, width, height, channels }, warp, W, H, options);
  const plane = W * H;
  const input = new Float32Array(3 * plane);
  const nchw = cfg.inputLayout === 'NCHW';
  const f32 = Math.fround;
  const mean = cfg.mean.map(f32); // BGR
  const std = cfg.std.map(f32);
  const [oB, oG, oR] = nchw ? [0, plane, 2 * plane] : [0, 1, 2];
  const step = nchw ? 1 : 3;
  for (let i = 0; i < plane; i += 1) {
    // float32 (v - mean) then float32 / std: each rounded once (the double result of either rounds to the same
    // float32 as a float32 operation would).
    const o = i * step;
    input[o + oB] = f32(f32(rgb[i * 3 + 2] - mean[0]) / std[0]);
    input[o + oG] = f32(f32(rgb[i * 3 + 1] - mean[1]) / std[1]);
    input[o + oR] = f32(f32(rgb[i * 3] - mean[2]) / std[2]);
  }
  return { input, shape: nchw ? [1, 3, H, W] : [1, H, W, 3], warp, width, height };
}

function isTensor(image) {
  return image != null && typeof image.dataSync === 'function' && Array.isArray(image.shape);
}

/** Any supported image -> {data, width, height, channels} (RGB or RGBA values). */
export async function toPixels(image) {
  if (image == null) throw new Error('nanodet: no image given');
  if (isTensor(image)) {
    if (image.shape.length !== 3 || (image.shape[2] !== 3 && image.shape[2] !== 4)) {
      throw new Error(`nanodet: image tensor must be [h, w, 3] RGB, got shape [${image.shape}]`);
    }
    return { data: await image.data(), height: image.shape[0], width: image.shape[1], channels: image.shape[2] };
  }
  if (image.data != null && image.width > 0 && image.height > 0) return image; // ImageData, sharp raw output, ...
  const width = image.naturalWidth || image.videoWidth || image.width;
  const height = image.naturalHeight || image.videoHeight || image.height;
  if (!(width > 0 && height > 0)) throw new Error('nanodet: image has no size (not loaded yet?)');
  let canvas;
  if (typeof OffscreenCanvas !== 'undefined') canvas = new OffscreenCanvas(width, height);
  else if (typeof document !== 'undefined') {
    canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
  } else throw new Error('nanodet: unsupported image type (give a tf.Tensor3D or {data, width, height})');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(image, 0, 0, width, height);
  const { data } = ctx.getImageData(0, 0, width, height);
  return { data, width, height, channels: 4 };
}

// ---------------------------------------------------------------------------------------------------------
// Decoding: nanodet_decode.mjs (shipped beside this file), with this model's config as the default.
// ---------------------------------------------------------------------------------------------------------

/**
 * Detections from raw head outputs {cls_pred_stride_S: [HW*C], dis_pred_stride_S: [HW*4(reg_max+1)]}, or from
 * upstream's single {output} where config.layout is 'upstream' (typed arrays, batch of one), as
 * nanodet_ref.decode.decode computes them; see nanodet_decode.mjs.
 */
export function decode(outputs, options = {}, cfg = config) {
  return decodeOutputs(outputs, options, requireConfig(cfg));
}

// ---------------------------------------------------------------------------------------------------------
// Loading and running the model.
// ---------------------------------------------------------------------------------------------------------

async function importTf() {
  // No tf given: the npm packages (tfjs-core + tfjs-converter, and a backend if installed).
  let core;
  let converter;
  try {
    core = await import('@tensorflow/tfjs-core');
    converter = await import('@tensorflow/tfjs-converter');
  } catch (err) {
    throw new Error('nanodet: pass {tf} to load(), or install @tensorflow/tfjs-core and @tensorflow/tfjs-converter '
      + `where this module can import them (${err.message})`);
  }
  for (const backend of ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-cpu']) {
    try { await import(backend); } catch { /* optional */ }
  }
  return { ...core, loadGraphModel: converter.loadGraphModel };
}

function isFileLocation(url) {
  if (url instanceof URL) return url.protocol === 'file:';
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(String(url)) || String(url).startsWith('file://');
}

/** An IO handler reading model.json and its weight shards from disk (Node; no tfjs-node needed). */
async function nodeFileHandler(tf, location) {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const file = (location instanceof URL || String(location).startsWith('file://'))
    ? fileURLToPath(location) : String(location);
  return {
    load: async () => {
      const json = JSON.parse(await fs.readFile(file, 'utf8'));
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = [];
        const parts = [];
        for (const group of manifest) {
          for (const p of group.paths) {
            const buf = await fs.readFile(path.join(path.dirname(file), decodeURIComponent(p)));
            parts.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
          }
          specs.push(...group.weights);
        }
        return [specs, tf.io.concatenateArrayBuffers(parts)];
      });
    },
  };
}

/** The detector returned by load(). */
export class Detector {
  constructor(tf, model, cfg) {
    this.tf = tf;
    this.model = model;
    this.config = cfg;
    // cfg.outputs: signature name -> the artifact's tensor name, or {name, transpose} (to [1, HW, C]).
    this.signatureNames = Object.keys(cfg.outputs);
    const targets = this.signatureNames.map((k) => cfg.outputs[k]);
    this.outputTensorNames = targets.map((t) => (typeof t === 'string' ? t : t.name));
    this.transposes = targets.map((t) => (typeof t === 'string' ? null : t.transpose || null));
    this.useAsync = false;
  }

  /** Raw outputs {output name: Float32Array} (per level, or upstream's one `output`: config.layout) for an input
   * Float32Array in `layout` (default: the model's). */
  async infer(input, layout = this.config.inputLayout) {
    const { tf } = this;
    const cfg = this.config;
    const [W, H] = [cfg.inputWidth, cfg.inputHeight];
    const x = tf.tidy(() => {
      const t = tf.tensor(input, layout === 'NCHW' ? [1, 3, H, W] : [1, H, W, 3], 'float32');
      if (layout === cfg.inputLayout) return t;
      return tf.transpose(t, layout === 'NCHW' ? [0, 2, 3, 1] : [0, 3, 1, 2]);
    });
    let outs = [];
    try {
      const feeds = { [cfg.inputName]: x };
      if (!this.useAsync) {
        try {
          outs = this.model.execute(feeds, this.outputTensorNames);
        } catch (err) {
          if (!/executeAsync|dynamic/i.test(String(err && err.message))) throw err;
          this.useAsync = true;
        }
      }
      if (this.useAsync) outs = await this.model.executeAsync(feeds, this.outputTensorNames);
      if (!Array.isArray(outs)) outs = [outs];
      outs = outs.map((t, i) => {
        if (!this.transposes[i]) return t;
        const moved = tf.transpose(t, this.transposes[i]);
        t.dispose();
        return moved;
      });
      const values = await Promise.all(outs.map((t) => t.data()));
      const result = {};
      this.signatureNames.forEach((name, i) => { result[name] = values[i]; });
      return result;
    } finally {
      x.dispose();
      for (const t of outs) t.dispose();
    }
  }

  /** Preprocess an image for this model (see preprocess()). */
  async preprocess(image) {
    return preprocess(await toPixels(image), this.config);
  }

  /** Decode raw outputs (see decode()). */
  decode(outputs, options = {}) {
    return decode(outputs, options, this.config);
  }

  /** Detections [{box: [x1, y1, x2, y2] in image pixels, score, label, className}], best first. */
  async detect(image, options = {}) {
    const pre = await this.preprocess(image);
    const outputs = await this.infer(pre.input);
    return decode(outputs, { ...options, warp: pre.warp, imageWidth: pre.width, imageHeight: pre.height },
      this.config);
  }

  dispose() {
    if (this.model) this.model.dispose();
    this.model = null;
  }
}

/**
 * Load the model. `modelUrl`: the model.json (a URL in browsers; a path or file:// URL in Node; default:
 * the model.json beside this file). Options: `tf` (the TensorFlow.js namespace with loadGraphModel; default:
 * imported from the npm packages), `backend` ('wasm', 'webgl', 'cpu': set before loading), `warmup` (one
 * run on zeros, default true).
 */
export async function load(modelUrl, options = {}) {
  const cfg = requireConfig(options.config || config);
  const tf = options.tf || await importTf();
  if (typeof tf.loadGraphModel !== 'function') {
    throw new Error('nanodet: options.tf must include loadGraphModel (tfjs-converter)');
  }
  if (options.backend) {
    if (!(await tf.setBackend(options.backend))) throw new Error(`nanodet: backend '${options.backend}' unavailable`);
  }
  await tf.ready();
  const location = modelUrl || new URL(`./${cfg.modelFile}`, import.meta.url);
  const handler = IS_NODE && isFileLocation(location) ? await nodeFileHandler(tf, location) : String(location);
  const model = await tf.loadGraphModel(handler);
  const detector = new Detector(tf, model, cfg);
  if (options.warmup !== false) await detector.infer(new Float32Array(3 * cfg.inputWidth * cfg.inputHeight));
  return detector;
}

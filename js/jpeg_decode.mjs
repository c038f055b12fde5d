// Decode a JPEG file to RGB pixels in pure JS, as close to libjpeg(-turbo) (what OpenCV, and so the Python
// reference, uses) as jpeg-js allows.
//
// Why: jpeg-js (pure JS) converts YCbCr to RGB by truncating (a bias of about -0.4 grey levels) and replicates
// chroma samples, where libjpeg rounds with fixed-point tables and interpolates chroma ("fancy upsampling",
// a triangle filter). Here jpeg-js decodes the Y, Cb, Cr planes only (colorTransform: false); the chroma planes
// are recovered at their stored resolution, upsampled with libjpeg's h2v1 / h2v2 / h1v2 fancy filters and
// converted with libjpeg's ycc->rgb tables. The remaining differences come from jpeg-js's IDCT (±1 level).
// Files that are not plain 3-component YCbCr (grey, CMYK, Adobe-marked) use jpeg-js's own colour output.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Sampling factors [{h, v}] of the frame's components (from the SOFn marker), or null. */
export function samplingFactors(bytes) {
  let i = 2;
  let adobe = false;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) { i += 1; continue; }
    const marker = bytes[i + 1];
    if (marker === 0xff) { i += 1; continue; }
    const length = (bytes[i + 2] << 8) | bytes[i + 3];
    if (marker === 0xee) adobe = true;
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      const n = bytes[i + 9];
      const comps = [];
      for (let c = 0; c < n; c += 1) {
        const f = bytes[i + 11 + c * 3];
        comps.push({ h: f >> 4, v: f & 15 });
      }
      return { comps, adobe };
    }
    i += 2 + length;
  }
  return null;
}

function fancyH2V1(src, dw, dh) { // -> [dh][2*dw]
  const out = new Uint8Array(dh * dw * 2);
  for (let y = 0; y < dh; y += 1) {
    const s = y * dw;
    const o = y * dw * 2;
    if (dw === 1) { out[o] = src[s]; out[o + 1] = src[s]; continue; }
    out[o] = src[s];
    out[o + 1] = (src[s] * 3 + src[s + 1] + 2) >> 2;
    for (let x = 1; x < dw - 1; x += 1) {
      const v = src[s + x] * 3;
      out[o + 2 * x] = (v + src[s + x - 1] + 1) >> 2;
      out[o + 2 * x + 1] = (v + src[s + x + 1] + 2) >> 2;
    }
    const x = dw - 1;
    out[o + 2 * x] = (src[s + x] * 3 + src[s + x - 1] + 1) >> 2;
    out[o + 2 * x + 1] = src[s + x];
  }
  return out;
}

function fancyV2(src, dw, dh, h2) { // vertical triangle filter (+ horizontal when h2) -> [2*dh][dw or 2*dw]
  const ow = h2 ? 2 * dw : dw;
  const out = new Uint8Array(2 * dh * ow);
  for (let y = 0; y < dh; y += 1) {
    for (let v = 0; v < 2; v += 1) {
      const near = y * dw;
      const farRow = v === 0 ? Math.max(0, y - 1) : Math.min(dh - 1, y + 1); // edge rows replicated
      const far = farRow * dw;
      const o = (2 * y + v) * ow;
      if (!h2) {
        for (let x = 0; x < dw; x += 1) {
          out[o + x] = (src[near + x] * 3 + src[far + x] + (v === 0 ? 1 : 2)) >> 2;
        }
        continue;
      }
      let thiscol = src[near] * 3 + src[far];
      if (dw === 1) {
        out[o] = (thiscol * 4 + 8) >> 4;
        out[o + 1] = (thiscol * 4 + 7) >> 4;
        continue;
      }
      let nextcol = src[near + 1] * 3 + src[far + 1];
      out[o] = (thiscol * 4 + 8) >> 4;
      out[o + 1] = (thiscol * 3 + nextcol + 7) >> 4;
      let lastcol = thiscol;
      thiscol = nextcol;
      for (let x = 1; x < dw - 1; x += 1) {
        nextcol = src[near + x + 1] * 3 + src[far + x + 1];
        out[o + 2 * x] = (thiscol * 3 + lastcol + 8) >> 4;
        out[o + 2 * x + 1] = (thiscol * 3 + nextcol + 7) >> 4;
        lastcol = thiscol;
        thiscol = nextcol;
      }
      const x = dw - 1;
      out[o + 2 * x] = (thiscol * 3 + lastcol + 8) >> 4;
      out[o + 2 * x + 1] = (thiscol * 4 + 7) >> 4;
    }
  }
  return out;
}

const FIX = (x) => Math.floor(x * 65536 + 0.5);
const HALF = 1 << 15;
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i += 1) {
  const x = i - 128;
  CR_R[i] = (FIX(1.402) * x + HALF) >> 16;
  CB_B[i] = (FIX(1.772) * x + HALF) >> 16;
  CR_G[i] = -FIX(0.71414) * x;
  CB_G[i] = -FIX(0.34414) * x + HALF;
}
const clamp = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

/** JPEG bytes -> {data: RGB Uint8Array, width, height, channels: 3}. */
export function decodeJpeg(bytes) {
  const jpeg = require('jpeg-js');
  const opts = { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 };
  const info = samplingFactors(bytes);
  if (!info || info.comps.length !== 3 || info.adobe) {
    const img = jpeg.decode(bytes, opts);
    return { data: img.data, width: img.width, height: img.height, channels: 3 };
  }
  const ycc = jpeg.decode(bytes, { ...opts, colorTransform: false });
  const { width, height } = ycc;
  const maxH = Math.max(...info.comps.map((c) => c.h));
  const maxV = Math.max(...info.comps.map((c) => c.v));
  const planes = [1, 2].map((c) => {
    const sx = maxH / info.comps[c].h;
    const sy = maxV / info.comps[c].v;
    const full = new Uint8Array(width * height);
    for (let i = 0; i < width * height; i += 1) full[i] = ycc.data[i * 3 + c];
    const fancy = (sx === 2 || sx === 1) && (sy === 2 || sy === 1) && info.comps[0].h === maxH
      && info.comps[0].v === maxV;
    if ((sx === 1 && sy === 1) || !fancy) return full; // no subsampling, or an unusual layout: as jpeg-js gives
    const dw = Math.ceil(width / sx);
    const dh = Math.ceil(height / sy);
    const small = new Uint8Array(dw * dh); // jpeg-js replicated each stored sample: take one of each
    for (let y = 0; y < dh; y += 1) for (let x = 0; x < dw; x += 1) small[y * dw + x] = full[y * sy * width + x * sx];
    const up = sy === 1 ? fancyH2V1(small, dw, dh) : fancyV2(small, dw, dh, sx === 2);
    const uw = dw * sx;
    for (let y = 0; y < height; y += 1) for (let x = 0; x < width; x += 1) full[y * width + x] = up[y * uw + x];
    return full;
  });
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i += 1) {
    const y = ycc.data[i * 3];
    const cb = planes[0][i];
    const cr = planes[1][i];
    data[i * 3] = clamp(y + CR_R[cr]);
    data[i * 3 + 1] = clamp(y + ((CB_G[cb] + CR_G[cr]) >> 16));
    data[i * 3 + 2] = clamp(y + CB_B[cb]);
  }
  return { data, width, height, channels: 3 };
}

// The bilinear image warp of nanodet.mjs, shipped beside it: cv2.warpPerspective(img, M, dsize) with the default
// flags (INTER_LINEAR, BORDER_CONSTANT, border 0) on 8-bit pixels, reproduced bit for bit in pure JS.
//
// What OpenCV 5.0 computes (modules/imgproc/src/warp_kernels.simd.hpp, warpPerspectiveLinearInvoker_8UC3; read,
// not copied), and what this file repeats step by step:
//   1. M (image -> output) is inverted in double by cv::invert's closed form for 3x3 (core/src/lapack.cpp), then
//      each entry is rounded to float32.
//   2. Per output row y, in float32: Mx = y*M1 + M2, My = y*M4 + M5, Mw = y*M7 + M8 (a product, then a sum: two
//      roundings). Per output pixel x of the vectorised part of a row: sx = fma(M0, x, Mx), sy = fma(M3, x, My),
//      w = fma(M6, x, Mw), then sx/w and sy/w. The scalar tail of a row (its last W mod `lanes` pixels) computes
//      (fma(x, M0, y*M1) + M2) / (fma(x, M6, y*M7) + M8) instead (likewise sy).
//   3. ix = floor(sx), ax = sx - ix (float32), likewise y. Source pixels outside the image read as the border 0.
//   4. v0 = fma(ax, p01 - p00, p00), v1 = fma(ax, p11 - p10, p10), v = fma(ay, v1 - v0, v0) in float32, rounded
//      half to even and saturated to 0..255.
// No fixed-point tables: in OpenCV 5.0 this float32 kernel serves 8-bit INTER_LINEAR warpPerspective and returns
// before the older WarpPerspectiveInvoker (INTER_TAB_SIZE=32 coordinates, 15-bit remap coefficients) is reached.
//
// The kernel is compiled per CPU (SSE2, SSE4.1, AVX2; NEON on ARM) and dispatched at run time, and the results
// differ. With AVX2 (x86 CPUs since 2013; OpenCV has no AVX-512 build of it) the multiply-adds of steps 2 (per
// pixel) and 4 are fused (one rounding), and so is x*M0 + y*M1 in the scalar tail (the compiler contracts it), 16
// pixels per vector step. On an x86 CPU without AVX2, the SSE4.1 build does each as a multiply then an add (two
// roundings), 8 pixels per step. `fused: true` (default) reproduces the AVX2 result, `fused: false` the SSE4.1
// one; both were checked against OpenCV 5.0.0 forced onto each path (tests/test_js_warp_exact.py). On the 40
// shared COCO images the two OpenCV paths differ by 1 level in 6 letterbox warps at 416 (396 values), 3 stretch
// warps at 416 (3 values) and 1 at 320 (4 values). ARM NEON (aarch64) fuses too, 8 pixels per step: read from
// the source, not run; for 320 and 416 inputs (no tail at 8 or 16) it should equal the AVX2 result.

const f32 = Math.fround;

/** The inverse of a 3x3 row-major matrix as cv::invert (DECOMP_LU) computes it for 3x3 doubles. */
export function invertLikeOpenCV(m) {
  const [a, b, c, d, e, f, g, h, i] = m;
  let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  if (det === 0) throw new Error('nanodet: warp matrix is singular');
  det = 1 / det;
  return [
    (e * i - f * h) * det, (c * h - b * i) * det, (b * f - c * e) * det,
    (f * g - d * i) * det, (a * i - c * g) * det, (c * d - a * f) * det,
    (d * h - e * g) * det, (b * g - a * h) * det, (a * e - b * d) * det,
  ];
}

/**
 * fma(a, b, c) for float32 a, b, c, rounded once to float32 (C's fmaf, AVX2's vfmadd). a*b is exact in double;
 * the sum is rounded to double and then to float32, which is wrong only when the double sum lands exactly on a
 * float32 tie while the exact sum is not: then the exact error decides.
 */
export function fmaf(a, b, c) {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  return r === s ? r : roundSumOnce(p, c, s, r);
}

/** float32 of p + c, given s = p + c rounded to double and r = float32(s), with s not a float32. */
function roundSumOnce(p, c, s, r) {
  const t = s - p;
  const err = (p - (s - t)) + (c - t); // exact: s + err === p + c (TwoSum)
  if (err === 0) return r;
  const other = f32(s + (s - r)); // the float32 on the other side of s, when s is the tie between the two
  if (other - s !== s - r) return r;
  return (err > 0) === (other > r) ? other : r;
}

function mulAdd(a, b, c) {
  return f32(f32(a * b) + c);
}

/** Round half to even and saturate to 0..255, as cvRound / v_round then saturate_cast<uchar>. */
function toByte(v) {
  let r = Math.round(v);
  if (r - v === 0.5 && (r & 1) === 1) r -= 1;
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/**
 * The source position of every pixel of output row y (step 2 and 3 of the file's head): writes floor(sx),
 * floor(sy) to ix, iy and the float32 fractions to ax, ay.
 */
function mapRow(M, y, vectorEnd, fma3, ix, iy, ax, ay) {
  const Mx = f32(f32(y * M[1]) + M[2]);
  const My = f32(f32(y * M[4]) + M[5]);
  const Mw = f32(f32(y * M[7]) + M[8]);
  const yM1 = f32(y * M[1]);
  const yM4 = f32(y * M[4]);
  const yM7 = f32(y * M[7]);
  for (let x = 0; x < ix.length; x += 1) {
    let sx;
    let sy;
    if (x < vectorEnd) {
      const w = fma3(M[6], x, Mw);
      sx = f32(fma3(M[0], x, Mx) / w);
      sy = f32(fma3(M[3], x, My) / w);
    } else {
      const w = f32(fma3(x, M[6], yM7) + M[8]);
      sx = f32(f32(fma3(x, M[0], yM1) + M[2]) / w);
      sy = f32(f32(fma3(x, M[3], yM4) + M[5]) / w);
    }
    ix[x] = Math.floor(sx);
    iy[x] = Math.floor(sy);
    ax[x] = f32(sx - ix[x]);
    ay[x] = f32(sy - iy[x]);
  }
}

/** One channel value (step 4): bilinear in float32 from the four neighbours, rounded to a byte. */
function interpolate(p00, p01, p10, p11, ax, ay, fma3) {
  const v0 = fma3(ax, p01 - p00, p00);
  const v1 = fma3(ax, p11 - p10, p10);
  return toByte(fma3(ay, f32(v1 - v0), v0));
}

/** A source value, or the border 0 outside the image. */
function valueAt(data, width, height, channels, x, y, k) {
  return x >= 0 && x < width && y >= 0 && y < height ? data[(y * width + x) * channels + k] : 0;
}

/**
 * Warp 8-bit pixels as cv2.warpPerspective(src, matrix, (dstWidth, dstHeight)) does (bilinear, border 0).
 * `pixels`: {data, width, height, channels} with 3 or 4 interleaved channels (only the first 3 are read);
 * `matrix`: 9 numbers, row-major, mapping image pixels to output pixels. Returns a Uint8Array of
 * dstWidth * dstHeight * 3 values, in the channel order of the input. Options: `fused` (see the file's head).
 */
export function warpBilinear(pixels, matrix, dstWidth, dstHeight, { fused = true } = {}) {
  const { data, width, height } = pixels;
  const channels = pixels.channels || data.length / (width * height);
  const M = invertLikeOpenCV(matrix).map(f32);
  const out = new Uint8Array(dstWidth * dstHeight * 3);
  const vectorEnd = dstWidth - (dstWidth % (fused ? 16 : 8));
  const fma3 = fused ? fmaf : mulAdd;
  const stride = width * channels;
  const ix = new Float64Array(dstWidth); // integers, kept as doubles: a far-off position must not wrap into the image
  const iy = new Float64Array(dstWidth);
  const ax = new Float32Array(dstWidth);
  const ay = new Float32Array(dstWidth);
  for (let y = 0; y < dstHeight; y += 1) {
    mapRow(M, y, vectorEnd, fma3, ix, iy, ax, ay);
    for (let x = 0; x < dstWidth; x += 1) {
      const x0 = ix[x];
      const y0 = iy[x];
      const o = (y * dstWidth + x) * 3;
      if (x0 >= 0 && x0 < width - 1 && y0 >= 0 && y0 < height - 1) { // all four neighbours inside
        const a = y0 * stride + x0 * channels;
        const b = a + stride;
        for (let k = 0; k < 3; k += 1) {
          out[o + k] = interpolate(data[a + k], data[a + channels + k], data[b + k], data[b + channels + k],
            ax[x], ay[x], fma3);
        }
      } else if (x0 >= -1 && x0 < width && y0 >= -1 && y0 < height) { // some inside (else all border: 0)
        for (let k = 0; k < 3; k += 1) {
          out[o + k] = interpolate(
            valueAt(data, width, height, channels, x0, y0, k), valueAt(data, width, height, channels, x0 + 1, y0, k),
            valueAt(data, width, height, channels, x0, y0 + 1, k),
            valueAt(data, width, height, channels, x0 + 1, y0 + 1, k), ax[x], ay[x], fma3);
        }
      }
    }
  }
  return out;
}

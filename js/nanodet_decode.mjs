// NanoDet decoding for TensorFlow.js, shipped beside nanodet.mjs (which passes its model's config): raw head
// outputs -> detections exactly as the toolkit's Python decoder (nanodet_ref/decode.py) computes them: points at
// (col + priorOffset) * stride, box distances as the softmax expectation over the bins, the per-level top-k
// (nmsPre), per-class greedy NMS, the best `maxDetections`, boxes mapped back through the inverse warp.
// Pure JS on typed arrays; float32 where the reference computes in float32.

/** Inverse of a 3x3 row-major matrix. */
export function invert3x3(m) {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (det === 0) throw new Error('nanodet: warp matrix is singular');
  return [
    A / det, -(b * i - c * h) / det, (b * f - c * e) / det,
    B / det, (a * i - c * g) / det, -(a * f - c * d) / det,
    C / det, -(a * h - b * g) / det, (a * e - b * d) / det,
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Decoding (pure JS; float32 where the reference computes in float32).
// ---------------------------------------------------------------------------------------------------------

const f32 = Math.fround;

function stableOrderDescending(values, indices) {
  // Like numpy's argsort(-values, kind="stable"): descending, ties keep their original order.
  const idx = indices || Array.from(values, (_, i) => i);
  const positions = Array.from(idx, (_, p) => p);
  positions.sort((a, b) => (values[idx[b]] - values[idx[a]]) || (a - b));
  return positions.map((p) => idx[p]);
}

/** One level's candidates: boxes (input pixels, float32) and their score rows, in the reference's order. */
function levelCandidates(scores, logits, stride, cfg) {
  const C = cfg.numClasses;
  const bins = cfg.regMax + 1;
  const W = cfg.inputWidth;
  const H = cfg.inputHeight;
  const h = Math.ceil(H / stride);
  const w = Math.ceil(W / stride);
  const n = scores.length / C;
  if (n !== h * w || logits.length !== n * 4 * bins) {
    throw new Error(`nanodet: stride ${stride}: ${n} rows, expected ${h}x${w}=${h * w}`);
  }
  let rows = null;
  if (cfg.nmsPre && n > cfg.nmsPre) {
    const best = new Float32Array(n);
    for (let r = 0; r < n; r += 1) {
      let m = -Infinity;
      for (let c = 0; c < C; c += 1) if (scores[r * C + c] > m) m = scores[r * C + c];
      best[r] = m;
    }
    rows = stableOrderDescending(best).slice(0, cfg.nmsPre);
  } else rows = Array.from({ length: n }, (_, i) => i);
  const boxes = new Float32Array(rows.length * 4);
  const d = [0, 0, 0, 0];
  rows.forEach((r, k) => {
    for (let side = 0; side < 4; side += 1) {
      const base = (r * 4 + side) * bins;
      let m = -Infinity;
      for (let j = 0; j < bins; j += 1) m = Math.max(m, logits[base + j]);
      let sum = 0;
      let dot = 0;
      for (let j = 0; j < bins; j += 1) {
        const p = Math.exp(logits[base + j] - m);
        sum += p;
        dot += p * j;
      }
      d[side] = f32(f32(dot / sum) * stride);
    }
    const cx = f32((r % w + cfg.priorOffset) * stride);
    const cy = f32((Math.floor(r / w) + cfg.priorOffset) * stride);
    boxes[k * 4] = Math.min(W, Math.max(0, f32(cx - d[0])));
    boxes[k * 4 + 1] = Math.min(H, Math.max(0, f32(cy - d[1])));
    boxes[k * 4 + 2] = Math.min(W, Math.max(0, f32(cx + d[2])));
    boxes[k * 4 + 3] = Math.min(H, Math.max(0, f32(cy + d[3])));
  });
  return { rows, boxes };
}

function iou(boxes, i, j) {
  const x1 = Math.max(boxes[i * 4], boxes[j * 4]);
  const y1 = Math.max(boxes[i * 4 + 1], boxes[j * 4 + 1]);
  const x2 = Math.min(boxes[i * 4 + 2], boxes[j * 4 + 2]);
  const y2 = Math.min(boxes[i * 4 + 3], boxes[j * 4 + 3]);
  const inter = f32(Math.max(0, f32(x2 - x1)) * Math.max(0, f32(y2 - y1)));
  const area = f32(f32(boxes[i * 4 + 2] - boxes[i * 4]) * f32(boxes[i * 4 + 3] - boxes[i * 4 + 1]));
  const areaJ = f32(f32(boxes[j * 4 + 2] - boxes[j * 4]) * f32(boxes[j * 4 + 3] - boxes[j * 4 + 1]));
  const union = f32(f32(area + areaJ) - inter);
  return union > 0 ? f32(inter / union) : 0;
}

/** Greedy NMS over candidate indices `idx` (all one class); kept indices, best first. */
function nms(boxes, scores, idx, threshold) {
  const order = stableOrderDescending(scores, idx);
  const suppressed = new Uint8Array(order.length);
  const keep = [];
  for (let p = 0; p < order.length; p += 1) {
    if (suppressed[p]) continue;
    keep.push(order[p]);
    for (let q = p + 1; q < order.length; q += 1) {
      if (!suppressed[q] && iou(boxes, order[p], order[q]) > threshold) suppressed[q] = 1;
    }
  }
  return keep;
}

function toArray(x) {
  if (x == null) return x;
  if (ArrayBuffer.isView(x)) return x;
  if (Array.isArray(x)) return Float32Array.from(x.flat(Infinity));
  throw new Error('nanodet: decode() takes typed arrays (await tensor.data() first)');
}

/**
 * Upstream's single output {output: [N*(C + 4(reg_max+1))]} (a model converted with `--layout upstream`:
 * cfg.layout 'upstream'; per point the C scores then the logits, the levels one after the other in stride order,
 * each level's map row-major) -> the per-level outputs decode reads. Other outputs are returned unchanged.
 */
export function perLevelOutputs(outputs, cfg) {
  if (cfg.layout !== 'upstream' || outputs.output == null) return outputs;
  const packed = toArray(outputs.output);
  const C = cfg.numClasses;
  const L = 4 * (cfg.regMax + 1);
  const result = {};
  let start = 0;
  for (const stride of cfg.strides) {
    const n = Math.ceil(cfg.inputHeight / stride) * Math.ceil(cfg.inputWidth / stride);
    const scores = new Float32Array(n * C);
    const logits = new Float32Array(n * L);
    for (let r = 0; r < n; r += 1) {
      const base = (start + r) * (C + L);
      scores.set(packed.subarray(base, base + C), r * C);
      logits.set(packed.subarray(base + C, base + C + L), r * L);
    }
    result[`cls_pred_stride_${stride}`] = scores;
    result[`dis_pred_stride_${stride}`] = logits;
    start += n;
  }
  if (start * (C + L) !== packed.length) {
    throw new Error(`nanodet: output has ${packed.length} values, expected ${start}x${C + L}`);
  }
  return result;
}

/**
 * Detections from raw head outputs {cls_pred_stride_S: [HW*C], dis_pred_stride_S: [HW*4(reg_max+1)]}, or
 * upstream's single {output} (see perLevelOutputs), as typed arrays of a batch of one, as
 * nanodet_ref.decode.decode computes them.
 * Boxes are in input-tensor pixels, or in image pixels when `warp` (image -> input, 3x3 row-major) and
 * `imageWidth`/`imageHeight` are given. Options override the config's thresholds.
 */
export function decodeOutputs(rawOutputs, options, cfg) {
  const outputs = perLevelOutputs(rawOutputs, cfg);
  const scoreThreshold = f32(options.scoreThreshold ?? cfg.scoreThreshold);
  const iouThreshold = f32(options.iouThreshold ?? cfg.nmsIou);
  const maxDetections = options.maxDetections ?? cfg.maxDetections;
  const C = cfg.numClasses;
  // Candidates over all levels, in the reference's order (level, then top-k rank).
  const candBoxes = []; // 4 numbers per candidate
  const candScores = [];
  const candLabels = [];
  for (const stride of cfg.strides) {
    const scores = toArray(outputs[`cls_pred_stride_${stride}`]);
    const logits = toArray(outputs[`dis_pred_stride_${stride}`]);
    if (scores == null || logits == null) throw new Error(`nanodet: outputs for stride ${stride} missing`);
    const { rows, boxes } = levelCandidates(scores, logits, stride, cfg);
    for (let k = 0; k < rows.length; k += 1) {
      const base = rows[k] * C;
      for (let c = 0; c < C; c += 1) {
        const s = scores[base + c];
        if (s > scoreThreshold) {
          candBoxes.push(boxes[k * 4], boxes[k * 4 + 1], boxes[k * 4 + 2], boxes[k * 4 + 3]);
          candScores.push(s);
          candLabels.push(c);
        }
      }
    }
  }
  const boxes = Float32Array.from(candBoxes);
  const byLabel = new Map();
  candLabels.forEach((label, k) => {
    if (!byLabel.has(label)) byLabel.set(label, []);
    byLabel.get(label).push(k);
  });
  let kept = [];
  for (const label of [...byLabel.keys()].sort((a, b) => a - b)) {
    kept = kept.concat(nms(boxes, candScores, byLabel.get(label), iouThreshold));
  }
  kept = stableOrderDescending(candScores, kept).slice(0, maxDetections);
  const inv = options.warp ? invert3x3(options.warp) : null;
  return kept.map((k) => {
    let box = [boxes[k * 4], boxes[k * 4 + 1], boxes[k * 4 + 2], boxes[k * 4 + 3]];
    if (inv && options.imageWidth && options.imageHeight) box = mapBox(box, inv, options.imageWidth, options.imageHeight);
    const label = candLabels[k];
    return { box, score: candScores[k], label, className: cfg.classNames[label] };
  });
}

/** Map a box through a 3x3 matrix (its four corners, then min/max), clipped to the image. */
function mapBox([x1, y1, x2, y2], m, width, height) {
  const xs = [];
  const ys = [];
  for (const [x, y] of [[x1, y1], [x2, y2], [x2, y1], [x1, y2]]) {
    const z = m[6] * x + m[7] * y + m[8];
    xs.push((m[0] * x + m[1] * y + m[2]) / z);
    ys.push((m[3] * x + m[4] * y + m[5]) / z);
  }
  const clip = (v, hi) => Math.min(hi, Math.max(0, v));
  return [clip(Math.min(...xs), width), clip(Math.min(...ys), height),
    clip(Math.max(...xs), width), clip(Math.max(...ys), height)];
}


#!/usr/bin/env node
// Drive a rendered nanodet.mjs (the JS detection module written next to a TFJS model.json) in Node, for the
// toolkit's checks (validation/js_module_check.py, run by `python -m commands js-check`): TFJS runs with its own kernels (wasm or cpu backend).
//
// Usage: node js/nanodet_module_check.mjs COMMAND --module DIR/nanodet.mjs [--model DIR/model.json]
//        [--backend wasm|cpu] ...
//   parity  --list list.json --out DIR   list: [{id, input: file of float32 NCHW, warp: [9], width, height}]
//           Runs the model on each given input tensor, writes the raw outputs (DIR/<id>.<signature name>.f32)
//           and the module's decode() of them (DIR/detections.json: {id: [detections in image pixels]}).
//   detect  --list list.json --out file.json   list: [{id, file: image}] or [{id, raw: RGB bytes, width, height}]
//           detect() on each image -> {id: [detections]} (+ timing). Files (JPEG, PNG, ...) are decoded by
//           sharp (libvips + mozjpeg/libjpeg-turbo) the way OpenCV's IMREAD_COLOR decodes them: embedded ICC
//           profiles ignored, EXIF orientation applied, 8-bit RGB (grey expanded, alpha dropped).
//   memory  --image FILE --calls N --out file.json
//           tf.memory().numTensors before and after N detect() calls.
// Without a model (the module's pure-JS parts, or the image decoder only):
//   pixels     --list list.json   list: [{file: image, out: file}] -> the RGB bytes detect uses (+ out.json: size)
//   preprocess --list list.json   list: [{raw: RGB bytes, width, height, out: file, fused?}] -> float32 input
//           tensors (out) and {warp} (out.json); fused: false warps as OpenCV does on CPUs without AVX2
//   warp       --list list.json   list: [{raw: RGB bytes, width, height, matrix: [9], dstWidth, dstHeight, out,
//           fused?}] -> the warped RGB bytes (nanodet_warp.mjs beside the module: cv2.warpPerspective's bilinear warp)
//   decode     --list list.json --out file.json
//           list: [{id, outputs: {signature name: float32 file}, warp: [9] or null, width, height}]
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  if (!['parity', 'detect', 'memory', 'preprocess', 'warp', 'decode', 'pixels'].includes(command)) {
    fail(`unknown command '${command}' (parity|detect|memory|preprocess|warp|decode|pixels)`);
  }
  const args = { command, backend: 'wasm', calls: '500' };
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith('--') || rest[i + 1] === undefined) fail(`bad argument '${rest[i]}'`);
    args[rest[i].slice(2)] = rest[i + 1];
  }
  if (!args.module && command !== 'pixels') fail('--module is required');
  return args;
}

async function makeTf(backend) {
  const core = require('@tensorflow/tfjs-core');
  const converter = require('@tensorflow/tfjs-converter');
  if (backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    const pkg = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    wasm.setWasmPaths(path.join(pkg, 'dist') + path.sep);
    core.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  } else if (backend === 'cpu') {
    require('@tensorflow/tfjs-backend-cpu');
  } else fail(`--backend must be wasm or cpu, got '${backend}'`);
  return { ...core, loadGraphModel: converter.loadGraphModel };
}

// sharp by default converts pixels through an embedded ICC profile to sRGB; OpenCV does not (on the shared COCO
// set 8 of 40 JPEGs carry one and would differ by up to 70 levels), so the profile is ignored.
async function decodeImageFile(file) {
  const sharp = require('sharp');
  const { data, info } = await sharp(file, { ignoreIcc: true, autoOrient: true })
    .toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) fail(`${file}: decoded to ${info.channels} channels, expected 3`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width,
    height: info.height, channels: 3 };
}

async function readImage(entry) {
  if (entry.raw) {
    return { data: new Uint8Array(fs.readFileSync(entry.raw)), width: entry.width, height: entry.height, channels: 3 };
  }
  return decodeImageFile(entry.file);
}

function readF32(file) {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.command === 'pixels') {
    for (const item of JSON.parse(fs.readFileSync(args.list, 'utf8'))) {
      const { data, width, height, channels } = await decodeImageFile(item.file);
      fs.writeFileSync(item.out, data);
      fs.writeFileSync(`${item.out}.json`, JSON.stringify({ width, height, channels }));
    }
    return;
  }
  const mod = await import(pathToFileURL(path.resolve(args.module)).href);
  if (args.command === 'preprocess') {
    for (const item of JSON.parse(fs.readFileSync(args.list, 'utf8'))) {
      const { input, warp } = mod.preprocess(await readImage(item), mod.config, { fused: item.fused !== false });
      fs.writeFileSync(item.out, Buffer.from(input.buffer, input.byteOffset, input.byteLength));
      fs.writeFileSync(`${item.out}.json`, JSON.stringify({ warp }));
    }
    return;
  }
  if (args.command === 'warp') {
    const { warpBilinear } = await import(new URL('nanodet_warp.mjs', pathToFileURL(path.resolve(args.module))).href);
    for (const item of JSON.parse(fs.readFileSync(args.list, 'utf8'))) {
      const out = warpBilinear(await readImage(item), item.matrix, item.dstWidth, item.dstHeight,
        { fused: item.fused !== false });
      fs.writeFileSync(item.out, out);
    }
    return;
  }
  if (args.command === 'decode') {
    const detections = {};
    for (const item of JSON.parse(fs.readFileSync(args.list, 'utf8'))) {
      const outputs = {};
      for (const [name, file] of Object.entries(item.outputs)) outputs[name] = readF32(file);
      detections[item.id] = mod.decode(outputs, { warp: item.warp, imageWidth: item.width, imageHeight: item.height });
    }
    fs.writeFileSync(args.out, JSON.stringify({ detections }));
    return;
  }
  const tf = await makeTf(args.backend);
  const modelUrl = args.model ? path.resolve(args.model) : undefined;
  const detector = await mod.load(modelUrl, { tf, backend: args.backend });
  const report = { backend: tf.getBackend() };
  if (args.command === 'parity') {
    const list = JSON.parse(fs.readFileSync(args.list, 'utf8'));
    const detections = {};
    for (const item of list) {
      const outputs = await detector.infer(readF32(item.input), 'NCHW');
      for (const [name, values] of Object.entries(outputs)) {
        fs.writeFileSync(path.join(args.out, `${item.id}.${name}.f32`), Buffer.from(values.buffer, values.byteOffset,
          values.byteLength));
      }
      detections[item.id] = detector.decode(outputs, { warp: item.warp, imageWidth: item.width,
        imageHeight: item.height });
    }
    fs.writeFileSync(path.join(args.out, 'detections.json'), JSON.stringify({ ...report, detections }));
  } else if (args.command === 'detect') {
    const list = JSON.parse(fs.readFileSync(args.list, 'utf8'));
    const detections = {};
    let ms = 0;
    for (const item of list) {
      const image = await readImage(item);
      const t0 = performance.now();
      detections[item.id] = await detector.detect(image);
      ms += performance.now() - t0;
    }
    fs.writeFileSync(args.out, JSON.stringify({ ...report, detect_ms_mean: ms / Math.max(1, list.length), detections }));
  } else {
    const image = await decodeImageFile(args.image);
    const calls = Number.parseInt(args.calls, 10);
    await detector.detect(image); // first call may allocate backend caches
    const before = tf.memory().numTensors;
    const rssBefore = process.memoryUsage().rss;
    let count = 0;
    for (let i = 0; i < calls; i += 1) count += (await detector.detect(image)).length;
    const after = tf.memory().numTensors;
    fs.writeFileSync(args.out, JSON.stringify({ ...report, calls, numTensorsBefore: before, numTensorsAfter: after,
      rssBeforeMB: rssBefore / 2 ** 20, rssAfterMB: process.memoryUsage().rss / 2 ** 20,
      detectionsPerCall: count / Math.max(1, calls) }));
  }
  detector.dispose();
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));

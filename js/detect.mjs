#!/usr/bin/env node
// Detect objects in an image with a converted model (the README's JavaScript quick start):
//
//   node js/detect.mjs artifacts/m-416/tfjs/model.json IMAGE [--backend wasm|cpu]
//
// Prints one line per detection with score >= 0.35: class, score, box [x1, y1, x2, y2] in image pixels.
// It uses `nanodet.mjs`, the module the toolkit writes beside every model.json with that model's constants, and
// hands it TensorFlow.js from this folder's node_modules: Node resolves packages relative to the importing file,
// and the artifact's module lives outside js/, so it is given `tf` instead of importing the packages itself.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';

const USAGE = 'usage: node js/detect.mjs MODEL_JSON IMAGE [--backend wasm|cpu]';
const MIN_SCORE = 0.35;

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const at = args.indexOf('--backend');
const backend = at >= 0 ? args.splice(at, 2)[1] : 'wasm';
if (args.length !== 2 || !['wasm', 'cpu'].includes(backend)) fail(USAGE);
const [modelJson, imageFile] = args.map((a) => path.resolve(a));
const moduleFile = path.join(path.dirname(modelJson), 'nanodet.mjs');
for (const file of [modelJson, moduleFile, imageFile]) {
  if (!fs.existsSync(file)) fail(`${path.relative(process.cwd(), file)}: no such file`);
}

const { load } = await import(pathToFileURL(moduleFile).href);
const detector = await load(modelJson, { tf: { ...tf, loadGraphModel }, backend });

// Decoded as OpenCV (and the Python reference) decodes: embedded ICC profiles ignored, EXIF orientation applied.
const { data, info } = await sharp(imageFile, { ignoreIcc: true, autoOrient: true })
  .toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true })
  .catch((err) => fail(`${path.relative(process.cwd(), imageFile)}: not an image sharp can decode (${err.message})`));
const image = { data, width: info.width, height: info.height, channels: 3 };
for (const d of await detector.detect(image, { scoreThreshold: MIN_SCORE })) {
  console.log(`${d.className.padEnd(16)} ${d.score.toFixed(3)}  [${d.box.map((v) => v.toFixed(1)).join(', ')}]`);
}
detector.dispose();

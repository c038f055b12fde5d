// The Node runners' shared file side (run_graph_model.mjs, run_onnx_web.mjs): the one-line `error:` exit, and
// tensor bundle files read with the file named in every error and written atomically (a temporary file renamed
// into place, so a killed run never leaves a half-written bundle under the final name). The bundle layout itself
// lives in browser/bundle.mjs, shared with the browser pages.
import fs from 'node:fs';
import { parseBundle, serializeBundle } from './browser/bundle.mjs';

// Print `error: message` on stderr and exit (2: bad input, 1: the run failed).
export function fail(message, code = 2) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

export function readBundleFile(file) {
  const buf = fs.readFileSync(file);
  try {
    return parseBundle(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  } catch (err) {
    return fail(`${file}: ${err.message}`);
  }
}

export function writeBundleFile(file, items, meta) {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, serializeBundle(items, meta));
  fs.renameSync(tmp, file);
}

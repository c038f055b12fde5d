// Tensor bundles (.ndtb) on ArrayBuffers: the same layout as validation/runners/tensor_bundle.py, readable and
// writable in a browser page and in Node alike (no Buffer, no fs); js/run_graph_model.mjs and js/run_onnx_web.mjs
// add the file I/O.
//   8 bytes magic "NDTB0001", uint32 LE header length L, 4 zero bytes, L bytes of UTF-8 JSON header (padded so
//   that the data starts at an 8-byte boundary), then the data section.
//   header = {"items": [{"tensors": [{"name", "dtype", "shape", "offset", "nbytes"}]}], "meta": {...}}
const MAGIC = 'NDTB0001';
const CTORS = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array };

// items: one list of {name, dtype, shape, values} per inference; meta: the bundle's JSON meta.
export function parseBundle(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 16 || new TextDecoder('latin1').decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new Error('not a tensor bundle (bad magic)');
  }
  const headerLength = new DataView(buffer).getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  const dataStart = 16 + headerLength;
  const items = header.items.map((item) => item.tensors.map((t) => {
    const Ctor = CTORS[t.dtype];
    if (!Ctor) throw new Error(`unsupported dtype '${t.dtype}' for tensor ${t.name}`);
    const copy = buffer.slice(dataStart + t.offset, dataStart + t.offset + t.nbytes); // aligned for the view
    return { name: t.name, dtype: t.dtype, shape: t.shape, values: new Ctor(copy) };
  }));
  return { items, meta: header.meta || {} };
}

export function serializeBundle(items, meta) {
  let offset = 0;
  const chunks = [];
  const headerItems = items.map((tensors) => ({
    tensors: tensors.map((t) => {
      const data = new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength);
      const entry = { name: t.name, dtype: t.dtype, shape: t.shape, offset, nbytes: data.length };
      const pad = (8 - (data.length % 8)) % 8;
      chunks.push(data);
      if (pad) chunks.push(new Uint8Array(pad));
      offset += data.length + pad;
      return entry;
    }),
  }));
  let headerText = JSON.stringify({ items: headerItems, meta });
  let header = new TextEncoder().encode(headerText);
  const pad = (8 - ((16 + header.length) % 8)) % 8;
  if (pad) {
    headerText += ' '.repeat(pad);
    header = new TextEncoder().encode(headerText);
  }
  const out = new Uint8Array(16 + header.length + offset);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, 16);
  let at = 16 + header.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

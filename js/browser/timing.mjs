// Timed repetitions, the way every runner times its warm-up (browser/runtime.mjs, run_graph_model.mjs,
// run_onnx_web.mjs): `fn(i)` awaited `count` times in sequence; resolves to the wall-clock ms of each call.
export async function timeEach(count, fn) {
  const ms = [];
  for (let i = 0; i < count; i += 1) {
    const t0 = performance.now();
    await fn(i);
    ms.push(performance.now() - t0);
  }
  return ms;
}

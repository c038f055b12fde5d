// Threads for tfjs-backend-wasm 4.22 in a page, and what the page got.
//
// Why a page must do something: the threaded SIMD build of tfjs-backend-wasm 4.22 caps its XNNPACK thread pool at
// navigator.hardwareConcurrency / 2 (tfjs-backend-wasm/src/cc/backend.cc: `num_cores =
// emscripten_num_logical_cores() / 2`, then `init_with_threads_count` takes min(requested, 8, num_cores)), on the
// assumption that every core runs two hyper-threads. On a 2-core machine (or any machine reporting 2 logical
// cores) that is 1: setThreadsCount(2) is silently cut to 1. The cap is read once, when the wasm module is
// instantiated (tf.setBackend('wasm')), from navigator.hardwareConcurrency of the scope that starts the backend (the
// page's main thread, or the Web Worker hosting tfjs: its WorkerNavigator), so that scope can lift it by reporting
// twice the threads it wants before that. Threads also need SharedArrayBuffer, i.e. a
// cross-origin isolated page (COOP: same-origin + COEP: require-corp); without it tfjs loads the non-threaded
// SIMD build.

// Before tf.setBackend('wasm'): ask for `threads` XNNPACK threads (0 or less: tfjs's own default) and, with
// `liftCap`, make tfjs's hardwareConcurrency / 2 cap no lower than that. Returns what it changed.
export function requestWasmThreads(tf, threads, liftCap = true) {
  const native = navigator.hardwareConcurrency;
  let reported = native;
  if (threads > 0) {
    tf.wasm.setThreadsCount(threads);
    if (liftCap && Math.floor(native / 2) < threads) {
      reported = 2 * threads;
      // Navigator on a page, WorkerNavigator in a worker: the prototype of the scope's own navigator
      Object.defineProperty(Object.getPrototypeOf(navigator), 'hardwareConcurrency',
        { configurable: true, get: () => reported });
    }
  }
  return { requested: threads > 0 ? threads : null, hardware_concurrency: native, reported_concurrency: reported,
    cap_lifted: reported !== native };
}

// After the backend is ready: the threads XNNPACK got, and the conditions that decide them.
export async function wasmThreadFacts(tf) {
  const wasmFiles = performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.wasm'))
    .map((n) => n.slice(n.lastIndexOf('/') + 1));
  return {
    threads: tf.getBackend() === 'wasm' ? tf.wasm.getThreadsCount() : null,
    cross_origin_isolated: self.crossOriginIsolated === true,
    shared_array_buffer: typeof SharedArrayBuffer === 'function',
    simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
    multithread_support: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
    wasm_binary: wasmFiles.find((n) => n.startsWith('tfjs-backend-wasm')) || null,
  };
}

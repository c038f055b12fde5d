// Both sides of a dedicated module Web Worker that answers calls: used by the bench page (page.mjs -> worker.mjs)
// and the demo (demo.js -> detector_worker.mjs). The worker posts {ready: true} once loaded, then answers each
// {id, fn, args} with {id, ok: true, value} or {id, ok: false, error}.

// Start the worker at `url`; resolves, once it is ready, to call(fn, args, transfer) -> Promise of the value.
export function startWorker(url) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(url, { type: 'module' });
    const pending = new Map();
    let next = 0;
    // a worker that fails (to start, or later) fails every call still waiting, instead of leaving it hanging
    worker.onerror = (event) => {
      const err = new Error(`${url.pathname || url} failed: ${event.message || 'error event'}`);
      reject(err);
      for (const call of pending.values()) call.fail(err);
      pending.clear();
    };
    worker.onmessage = ({ data }) => {
      if (data.ready) {
        resolve((fn, args = [], transfer = []) => new Promise((ok, fail) => {
          next += 1;
          pending.set(next, { ok, fail });
          worker.postMessage({ id: next, fn, args }, transfer);
        }));
        return;
      }
      const call = pending.get(data.id);
      pending.delete(data.id);
      if (data.ok) call.ok(data.value);
      else call.fail(new Error(data.error));
    };
  });
}

// The worker's side: answer each call with `calls[fn](...args)` (awaited); `after(args)`, where given, runs once a
// call is answered (the demo closes the ImageBitmaps it was handed). Then tell the page this worker is ready.
export function answerCalls(calls, after = null) {
  self.onmessage = async ({ data }) => {
    try {
      if (!calls[data.fn]) throw new Error(`unknown call '${data.fn}'`);
      self.postMessage({ id: data.id, ok: true, value: await calls[data.fn](...(data.args || [])) });
    } catch (err) {
      self.postMessage({ id: data.id, ok: false, error: String(err && err.message ? err.message : err) });
    } finally {
      if (after) after(data.args || []);
    }
  };
  self.postMessage({ ready: true });
}

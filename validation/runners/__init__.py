"""Runners: one per engine, all with ``name`` and ``run(batch NCHW float32) -> {signature name: [N, HW, C]}``.

``pytorch`` (the reference), ``onnxruntime_runner`` (model.onnx / model.sim.onnx), ``saved_model`` (TF),
``tfjs_node`` (TFJS in Node, wasm or cpu), ``tfjs_chromium`` (TFJS in headless Chromium, wasm or WebGL) and
``onnx_web`` (onnxruntime-web in Node or Chromium), the browser ones through ``chromium_session`` and the
cross-origin isolated ``isolated_server``. Imports are lazy so that using one engine never loads the others; the
io specs they take are ``contracts.io_spec.IoSpec``.
"""

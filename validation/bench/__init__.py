"""The bench (``python -m commands bench``, ``make bench``): size, graph ops, latency and AP of every artifact.

One run measures, for each artifact: size on disk (model.json + weight shards), graph op count and Transposes
(from model.json), latency in Node with TFJS itself (wasm, single-threaded SIMD, and cpu; load, first inference,
median of the warm ones) and COCO AP on the shared images. Rows: PyTorch and onnxruntime (latency in Python),
our TFJS models from the onnx-tf, onnx2tf and tf_nhwc backends in float32 / float16 / uint8, and the peer artifact
(the vladmandic TFJS NanoDet-m). Ratios are to the peer. All TFJS rows run with the same wasm runtime in the same
run. Every model runs through validation's own runners, on validation's images.

Modules, in the order a run uses them:

- ``variants``: which artifacts a run measures, and building the missing ones with the converter's command line;
- ``artifact_facts``: what model.json says (size on disk, graph ops);
- ``data``: the shared COCO images, preprocessed once, and the AP of a model's outputs on them;
- ``measurement``: latency (TFJS in Node, PyTorch and onnxruntime in Python), interleaved rounds, kernel profile;
- ``rows``: one table row per artifact, a failed one marked with its error;
- ``ort_web``: onnxruntime-web on our model.sim.onnx in Node (1 thread, all cores), rows of the main table;
- ``browser``: the Chromium rows (``chromium_rows``: wasm at 1 thread and all cores, WebGL) and the browser
  fidelity stages;
- ``rendering``: the markdown table, the kernel split and the target lines; ``runtime_table``: latency by runtime,
  ratios to the peer and to onnxruntime-web, and the browser targets;
- the command line is ``commands.bench``.
"""
from .artifact_facts import op_counts, tfjs_size

__all__ = ["op_counts", "tfjs_size"]

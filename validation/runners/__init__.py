"""Runners: one per engine, all with ``name`` and ``run(batch NCHW float32) -> {signature name: [N, HW, C]}``.

``pytorch`` (the reference), ``onnxruntime_runner`` (model.onnx / model.sim.onnx), ``saved_model`` (TF),
``tfjs_node`` (TFJS in Node, wasm or cpu). Imports are lazy so that using one engine never loads the others.
"""
from __future__ import annotations

from .base import IoSpec, Runner, load_io_spec

# io specs of foreign artifacts we know (``validation.cli foreign --preset NAME``)
PRESETS = {
    "vladmandic-nanodet-m": {
        "model": "m-416",
        "shared_path": ["reference", "vladmandic-nanodet-m", "nanodet-m.json"],
        "io_spec": {
            "input": {"name": "input_1:0", "layout": "NCHW"},
            "outputs": {
                "cls_pred_stride_8": "Identity:0", "cls_pred_stride_16": "Identity_1:0",
                "cls_pred_stride_32": "Identity_2:0", "dis_pred_stride_8": "Identity_3:0",
                "dis_pred_stride_16": "Identity_4:0", "dis_pred_stride_32": "Identity_5:0",
            },
        },
    },
}

__all__ = ["IoSpec", "Runner", "load_io_spec", "PRESETS"]

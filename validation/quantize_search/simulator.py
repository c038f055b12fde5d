"""The simplified ONNX model under onnxruntime with some weights replaced: what the search estimates with.

Every float initializer is also declared a graph input, which makes it overridable (onnxruntime uses the
initializer unless a feed of that name is given), so one session serves every assignment: a run feeds only the
weights that differ from float32, already turned into what TFJS computes with (``affine.as_stored``). Outputs
come back in the model signature through the stage's io spec, as the validation's ONNX runner gives them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.io_spec import IoSpec
from validation.runners.base import stack_items


class WeightSimulator:
    def __init__(self, onnx_path: Path, io_spec: IoSpec):
        import onnx
        import onnxruntime as ort

        from .weight_units import onnx_float_initializers

        model = onnx.load(str(onnx_path))
        self.initializers = onnx_float_initializers(model)
        declared = {i.name for i in model.graph.input}
        for name, values in self.initializers.items():
            if name not in declared:
                model.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                            list(values.shape)))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.model = model   # with the initializers declared as inputs
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.io = io_spec
        self.where = str(onnx_path)

    def run(self, batch: np.ndarray, overrides: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Signature outputs for the NCHW ``batch`` with the initializers in ``overrides`` replaced."""
        feeds = dict(overrides or {})
        x = self.io.prepare_input(batch)
        wanted = self.io.artifact_outputs()
        items = []
        for i in range(len(x)):
            outs = self.session.run(wanted, {self.io.input_name: x[i:i + 1], **feeds})
            items.append(self.io.collect(dict(zip(wanted, outs)), self.where))
        return stack_items(items)

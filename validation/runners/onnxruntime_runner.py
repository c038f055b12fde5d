"""ONNX models (``model.onnx``, ``model.sim.onnx``) under onnxruntime's CPU provider, one image at a time
(exports are usually batch 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.io_spec import IoSpec

from .base import stack_items


class OnnxRunner:
    def __init__(self, path: Path, io_spec: IoSpec | None = None, name: str = "onnx", output_names=None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"{self.path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:160]})") from None
        if io_spec is None:
            inputs = self.session.get_inputs()
            names = output_names or [o.name for o in self.session.get_outputs()]
            io_spec = IoSpec.identity(list(names), inputs[0].name)
        self.io = io_spec
        self.name = name

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self.io.prepare_input(batch)
        wanted = self.io.artifact_outputs()
        items = []
        for i in range(len(x)):
            outs = self.session.run(wanted, {self.io.input_name: x[i:i + 1]})
            items.append(self.io.collect(dict(zip(wanted, outs)), str(self.path)))
        return stack_items(items)

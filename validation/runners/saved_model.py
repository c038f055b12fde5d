"""TF SavedModels through ``tf.saved_model.load`` and their serving signature, one image at a time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.io_spec import IoSpec

from .base import stack_items


def _tf():
    from contracts.tf_environment import import_tensorflow
    return import_tensorflow()


class SavedModelRunner:
    def __init__(self, path: Path, io_spec: IoSpec | None = None, name: str = "saved_model",
                 signature: str = "serving_default", output_names=None):
        tf = _tf()
        self.tf = tf
        self.path = Path(path)
        if not (self.path / "saved_model.pb").is_file():
            raise UserError(f"{self.path}: not a TF SavedModel folder (no saved_model.pb)")
        from contracts.stderr_filter import filtered_stderr
        from contracts.tf_environment import RUNTIME_NOISE
        # TF's first device probe ("failed call to cuInit" without a GPU)
        with filtered_stderr(RUNTIME_NOISE, label=f"validation {name} runner"):
            self.loaded = tf.saved_model.load(str(self.path))
        sigs = self.loaded.signatures
        if signature not in sigs:
            raise UserError(f"{self.path}: SavedModel has no signature '{signature}' (has {', '.join(sigs)})")
        self.fn = sigs[signature]
        _, kwargs = self.fn.structured_input_signature
        self.input_keys = list(kwargs)
        out_keys = list(self.fn.structured_outputs)
        if io_spec is None:
            io_spec = IoSpec.identity(list(output_names or out_keys), self.input_keys[0] if self.input_keys else "input")
        self.io = io_spec
        self.name = name

    def _input_key(self) -> str:
        name = self.io.input_name
        for cand in (name, name.split(":")[0]):
            if cand in self.input_keys:
                return cand
        if len(self.input_keys) == 1:
            return self.input_keys[0]
        raise UserError(f"{self.path}: SavedModel has no input '{name}' (has {', '.join(self.input_keys)})")

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self.io.prepare_input(batch)
        key = self._input_key()
        items = []
        for i in range(len(x)):
            outs = self.fn(**{key: self.tf.constant(x[i:i + 1])})
            items.append(self.io.collect({k: v.numpy() for k, v in outs.items()}, str(self.path)))
        return stack_items(items)

"""The PyTorch reference as a runner: ``nanodet_ref`` built from the config, with the artifact's weights."""
from __future__ import annotations

import numpy as np

from nanodet_ref.checkpoint import load_weights
from nanodet_ref.model import build_model, run_model


class TorchRunner:
    name = "pytorch"

    def __init__(self, model, provenance: dict | None = None):
        self.model = model.eval()
        self.provenance = provenance or {}

    @classmethod
    def from_config(cls, cfg, checkpoint=None, seed: int = 0) -> "TorchRunner":
        model = build_model(cfg)
        provenance = load_weights(model, cfg, checkpoint=checkpoint, seed=seed)
        return cls(model, provenance)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_model(self.model, np.ascontiguousarray(batch, dtype=np.float32))

"""The PyTorch reference as a runner: ``nanodet_ref`` built from the config, with the artifact's weights.

Built in the artifact's output layout (``contracts.signature``): in upstream's, the model gives its one output
and ``run`` splits it into the per-level views (``split_upstream``) as every other runner's io spec does, so the
comparators and the decoder see the same per-level outputs from both sides.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from contracts.signature import DEFAULT_LAYOUT, UPSTREAM_LAYOUT, UPSTREAM_OUTPUT_NAME, split_upstream
from nanodet_ref.checkpoint import load_weights
from nanodet_ref.model import build_model, run_model


class TorchRunner:
    name = "pytorch"

    def __init__(self, model, provenance: dict | None = None, cfg=None):
        self.model = model.eval()
        self.provenance = provenance or {}
        self.cfg = cfg   # needed to split upstream's one output (a model built with layout="upstream")

    @classmethod
    def from_config(cls, cfg, checkpoint=None, seed: int = 0, layout: str = DEFAULT_LAYOUT) -> "TorchRunner":
        model = build_model(cfg, layout)
        provenance = load_weights(model, cfg, checkpoint=checkpoint, seed=seed)
        return cls(model, provenance, cfg)

    def float64(self) -> "TorchRunner":
        """The same model and weights computed in float64 (a copy): the model's exact function to the precision
        that matters for float32 stages (``validation.float64_error``)."""
        return TorchRunner(copy.deepcopy(self.model).double(), self.provenance, self.cfg)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        dtype = np.float64 if next(self.model.parameters()).dtype == torch.float64 else np.float32
        outs = run_model(self.model, np.ascontiguousarray(batch, dtype=dtype))
        if getattr(self.model, "layout", DEFAULT_LAYOUT) != UPSTREAM_LAYOUT:
            return outs
        return {n: np.ascontiguousarray(v) for n, v in split_upstream(outs[UPSTREAM_OUTPUT_NAME], self.cfg).items()}

"""The one runner interface: ``run`` takes a float32 NCHW batch and returns the model signature's outputs.

How an artifact's own names and layout map onto the signature is its io spec (``contracts.io_spec.IoSpec``):
a runner prepares its input and collects its outputs through it, so comparators always see [N, HW, C].
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    """``run`` takes a float32 NCHW batch [N,3,H,W] and returns {signature output name: [N, HW, C]}."""

    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def stack_items(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image results [1, ...] -> one batch [N, ...] per name."""
    return {k: np.concatenate([it[k] for it in items], axis=0) for k in items[0]} if items else {}

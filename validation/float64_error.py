"""Each runtime's own float32 error: its raw outputs against the model computed in float64.

The validation compares every stage with PyTorch in float32, which rounds too: a stage's max |diff| to PyTorch
mixes both roundings. Here PyTorch runs the same weights in float64 (``TorchRunner.float64``), the model's
function to well below float32's precision, and every runtime of an artifact, PyTorch float32 included, is
measured against it on the same input tensors. So a figure says how far that runtime's float32 arithmetic is
from the exact result, and two runtimes' figures bound how far they can be apart.

Rows: ``pytorch`` (float32), each stage the artifact has (``onnx``, ``onnx_sim``: onnxruntime; ``saved_model``:
TensorFlow; ``tfjs``: TFJS wasm in Node, what the validation judges) and ``tfjs_cpu`` (the same model.json on
TFJS's cpu backend, plain JavaScript arithmetic). Per row: the largest |diff| to float64 and to PyTorch float32,
and the output where it is largest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class ErrorRow:
    runtime: str
    vs_float64: float      # max |diff| to the float64 model, over every output
    vs_pytorch: float      # max |diff| to PyTorch float32 (what the validation's stages report)
    worst_output: str      # the output of the largest vs_float64
    scale: float           # that output's largest |value| (float64 model)

    def as_dict(self) -> dict:
        return asdict(self)


def _max_diff(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[float, str]:
    diffs = {k: float(np.abs(got[k].astype(np.float64) - ref[k].astype(np.float64)).max()) for k in ref}
    worst = max(diffs, key=diffs.get)
    return diffs[worst], worst


def error_rows(exact: dict[str, np.ndarray], pytorch32: dict[str, np.ndarray],
               results: dict[str, dict[str, np.ndarray]]) -> list[ErrorRow]:
    """One row per runtime (``results``: runtime -> outputs by signature name, PyTorch float32 first)."""
    rows = []
    for name, outs in {"pytorch": pytorch32, **results}.items():
        missing = sorted(set(exact) - set(outs))
        if missing:
            raise ValueError(f"{name}: outputs missing: {', '.join(missing)}")
        err64, worst = _max_diff(outs, exact)
        err32, _ = _max_diff(outs, pytorch32)
        rows.append(ErrorRow(name, err64, err32, worst, float(np.abs(exact[worst]).max())))
    return rows


def markdown(rows: list[ErrorRow], atol: float) -> str:
    lines = ["| runtime | max abs diff to float64 | to PyTorch float32 | worst output (its max abs value) | "
             f"within {atol:g} of float64 |", "|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r.runtime} | {r.vs_float64:.3g} | {r.vs_pytorch:.3g} | {r.worst_output} ({r.scale:.3g}) | "
                     f"{'yes' if r.vs_float64 <= atol else 'no'} |")
    return "\n".join(lines)

"""Mixed weight types in the TFJS stage: ``--quantize uint8|float16 --keep PATTERNS`` and ``--quantize auto``.

Both need the names tensorflowjs gives the weights, which exist only after its graph optimisation: the stage first
converts to float32 in a temporary folder and reads the float32 weight entries (and, for auto, their values) back
from that model.json. Then:

- ``--keep``: the patterns (fnmatch, as tensorflowjs matches) name the weights that stay float32, every other
  float32 weight gets the quantize type (``weight_types.resolve_keep``); a pattern that names nothing is a
  UserError;
- ``auto``: the search lent by the convert command (``StageContext.hooks[AUTO_HOOK]``, from
  ``validation.quantize_search``: it needs PyTorch, onnxruntime, COCO AP and the TFJS runner, floors above this
  one) gets an ``AutoRequest`` and returns the assignment; it writes the real artifact through
  ``AutoRequest.write`` (the last write is the stage's output), confirming its choice with TFJS itself.

The converter gets the assignment as exact names per dtype (``weight_types.dtype_map``); the written model.json
is read back and must hold exactly that assignment (else RuntimeError: the converter did not do what it was told).
The manifest entry gets ``weight_types`` (names per type, bytes, bytes saved against float32), ``keep`` or
``quantize_search`` (the search's record).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from contracts.errors import UserError

from . import stage_onnx_sim
from .context import StageContext
from .options import ConvertOptions
from .weight_types import WeightEntry, dtype_map, float_entries, read_float_weights, resolve_keep, storage_record

AUTO_HOOK = "quantize_auto"


@dataclass
class AutoRequest:
    """What the auto search gets from the stage: the float32 TFJS weights by name (as TFJS loads them), the
    simplified ONNX model with its io spec (the same weights under ONNX names: what the search simulates on),
    the AP budget, and ``write(assignment) -> stage facts``, which converts the SavedModel for real into the
    stage's output folder ``output`` with that assignment ({name: float32|float16|uint8})."""
    weights: dict[str, np.ndarray]
    entries: list[WeightEntry]
    onnx_path: Path
    onnx_io_spec: dict | None
    ap_budget: float
    write: Callable[[dict[str, str]], dict]
    output: Path
    log: Callable[[str], None]


def is_mixed(options: ConvertOptions) -> bool:
    return bool(options.keep) or options.quantize == "auto"


def planner(ctx: StageContext):
    """The auto search lent to this run, or a UserError saying how to get one."""
    found = ctx.hooks.get(AUTO_HOOK)
    if found is None:
        raise UserError("--quantize auto: the search measures COCO AP with the validation's images and the PyTorch "
                        "reference: run it through the convert command (python -m commands convert ... --quantize "
                        "auto)")
    return found


def key_options(ctx: StageContext) -> dict:
    """The cache-key entries of the mixed modes (none for the plain ones, whose keys stay as they were)."""
    out = {}
    if ctx.options.keep:
        out["keep"] = sorted(ctx.options.keep)
    if ctx.options.quantize == "auto":
        out["ap_budget"] = ctx.options.ap_budget
        out["search"] = planner(ctx).key()
    return out


def write_mixed(src: Path, dst: Path, ctx: StageContext, write_tfjs) -> dict:
    """The stage's output for ``--keep`` / ``auto`` (module docstring); returns the stage's facts.
    ``write_tfjs(src, dst, ctx, dtype_map) -> facts`` is the stage's own writer."""
    with tempfile.TemporaryDirectory(prefix="tfjs-float32-") as tmp:
        probe = Path(tmp) / "tfjs"
        ctx.log("      float32 pass (the weight names tensorflowjs gives) ...")
        write_tfjs(src, probe, ctx, None)
        entries = float_entries(probe / "model.json")
        weights = read_float_weights(probe / "model.json") if ctx.options.quantize == "auto" else {}

    def write(assignment: dict[str, str]) -> dict:
        if dst.exists():
            shutil.rmtree(dst)
        return write_tfjs(src, dst, ctx, dtype_map(assignment))

    if ctx.options.quantize == "auto":
        request = AutoRequest(weights, entries, ctx.artifact_dir / stage_onnx_sim.OUTPUT,
                              ctx.extras.get(f"io_spec:{stage_onnx_sim.NAME}"), ctx.options.ap_budget, write, dst,
                              ctx.log)
        assignment, facts, record = planner(ctx).plan(request)
        extra = {"quantize_search": record}
    else:
        assignment = resolve_keep(entries, ctx.options.keep, ctx.options.quantize)
        facts = write(assignment)
        extra = {"keep": list(ctx.options.keep)}
    weights_record = storage_record(dst / "model.json")
    check_written(assignment, weights_record)
    kept = weights_record["counts"]
    ctx.log(f"      weights: {kept.get('uint8', 0)} uint8, {kept.get('float16', 0)} float16, "
            f"{kept.get('float32', 0)} float32; {weights_record['weights_bytes']} bytes "
            f"({weights_record['saved_bytes']} saved against float32)")
    return {**facts, **extra, "weight_types": weights_record}


def check_written(assignment: dict[str, str], record: dict) -> None:
    """The written model.json stores every float weight in the type the assignment gave it."""
    written = {n: t for t, names in record["names"].items() for n in names}
    wrong = sorted(n for n, t in assignment.items() if written.get(n) != t)
    if wrong or set(written) != set(assignment):
        example = wrong[0] if wrong else sorted(set(written) ^ set(assignment))[0]
        raise RuntimeError(f"tensorflowjs did not store the weights as assigned ({len(wrong)} differ, e.g. {example}: "
                           f"asked {assignment.get(example)}, wrote {written.get(example)})")

"""``python -m commands weights ARTIFACT``: the float weights of an artifact's TFJS model, by the names tensorflowjs
gave them (what ``--keep`` patterns match), with their shape, stored type and the ONNX layer they belong to.

    python -m commands weights artifacts/m-416
    python -m commands weights artifacts/m-416 --match 'PartitionedCall/Reshape*'

Layers come from the weight's twin in ``model.sim.onnx`` (the same numbers; ``validation.quantize_search``);
a weight without one (a constant the SavedModel backend made) says so. Exit 2 on a folder without tfjs/model.json.
"""
from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from contracts.errors import UserError, run_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands weights", description=__doc__.split("\n")[0])
    p.add_argument("artifact", help="an artifact folder (with tfjs/model.json, and model.sim.onnx for the layers)")
    p.add_argument("--match", metavar="PATTERN", help="only the names this fnmatch pattern matches (as --keep)")
    return p


def rows(artifact: Path, pattern: str | None) -> list[tuple[str, str, str, str]]:
    """(name, shape, stored type, layer) of every float weight, in model.json order."""
    from converters.weight_types import float_entries, read_float_weights

    model_json = artifact / "tfjs" / "model.json"
    if not model_json.is_file():
        raise UserError(f"{artifact}: no tfjs/model.json (convert first)")
    entries = [e for e in float_entries(model_json) if pattern is None or fnmatch.fnmatch(e.name, pattern)]
    layers: dict[str, str] = {}
    onnx_path = artifact / "model.sim.onnx"
    if onnx_path.is_file():
        import onnx

        from validation.quantize_search.weight_units import layers_by_name
        stored = {e.name: e.stored for e in float_entries(model_json)}
        layers = layers_by_name(read_float_weights(model_json), stored, onnx.load(str(onnx_path)))
    return [(e.name, "x".join(map(str, e.shape)) or "scalar", e.stored, layers.get(e.name, "(no ONNX twin)"))
            for e in entries]


def run(args) -> int:
    found = rows(Path(args.artifact), args.match)
    if args.match and not found:
        raise UserError(f"--match '{args.match}': names none of the float weights of {args.artifact}")
    head = ("TFJS weight name", "shape", "stored", "layer (ONNX node)")
    widths = [max(len(r[i]) for r in [head, *found]) for i in range(3)]
    for r in [head, *found]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def main(argv=None) -> int:
    return run_main(lambda a: run(parser().parse_args(a)), argv)

"""``python -m commands precision --model M``: each runtime's float32 error against the model in float64.

    python -m commands precision --model plus-m-416 [--artifacts DIR] [--limit N] [--json FILE]

Runs PyTorch in float32 and in float64 (same weights) and every stage of the artifact folder, plus its TFJS model
on TFJS's cpu backend, on the same input tensors; prints per runtime the largest |diff| to float64 and to PyTorch
float32 (``validation.float64_error``). It judges nothing (exit 0 when everything ran): it says how much of a
stage's difference to PyTorch is float32 rounding of either side. Exit 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from contracts.errors import UserError, run_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands precision", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model name (configs/NAME.yml), e.g. plus-m-416")
    p.add_argument("--config", help="path to a NanoDet config (upstream schema)")
    p.add_argument("--checkpoint", help="checkpoint the reference loads (default: the artifact's, by sha256)")
    p.add_argument("--artifacts", help="artifact folder, or the root holding <model>/ (default: artifacts/)")
    p.add_argument("--images", help="folder of images (default: the shared 40 COCO images)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--input-size", metavar="W,H", help="the model at this input size (its folder is <model>-WxH)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def runtimes(folder: Path, manifest, cfg) -> dict:
    """The artifact's stage runners (TFJS on wasm, as validated) and its TFJS model on the cpu backend."""
    from validation.api import build_stage_runners
    from validation.artifacts import stage_io_spec
    from validation.runners.tfjs_node import TfjsNodeRunner

    runners, _ = build_stage_runners(folder, manifest, cfg, "wasm")
    if "tfjs" in runners:
        runners["tfjs_cpu"] = TfjsNodeRunner(folder / "tfjs", stage_io_spec(manifest, "tfjs", folder / "tfjs", cfg),
                                             backend="cpu", name="tfjs_cpu")
    return runners


def run(args) -> int:
    from contracts.manifest import Manifest
    from validation.api import reference_runner
    from validation.evaluate import tolerances
    from validation.dataset import load_batch, resolve_images
    from validation.float64_error import error_rows, markdown

    from commands.validate import _config, artifact_folder, sized_for_folder

    cfg = _config(args)
    folder = artifact_folder(args, cfg)
    cfg = sized_for_folder(cfg, folder, args)
    manifest = Manifest.load(folder)
    runners = runtimes(folder, manifest, cfg)
    if not runners:
        raise UserError(f"{folder}: no stage artifacts found (convert first)")
    x = load_batch(resolve_images(args.images, None, args.limit), cfg).tensor
    reference = reference_runner(cfg, manifest.weights_provenance(), args.checkpoint, manifest.layout)
    results = {}
    for name, runner in [("pytorch_float64", reference.float64()), ("pytorch", reference), *runners.items()]:
        t0 = time.perf_counter()
        results[name] = runner.run(x)
        _log(f"[precision] {name}: {len(x)} image(s) in {time.perf_counter() - t0:.1f} s")
    exact, pytorch32 = results.pop("pytorch_float64"), results.pop("pytorch")
    rows = error_rows(exact, pytorch32, results)
    print(f"{folder.name}, {len(x)} image(s): float32 runtimes against the model computed in float64")
    print(markdown(rows, tolerances(cfg)["raw_atol"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"artifact": folder.name, "images": len(x),
                                               "rows": [r.as_dict() for r in rows]}, indent=1))
    return 0


def main(argv=None) -> int:
    return run_main(lambda a: run(parser().parse_args(a)), argv,
                    crash_message="the precision measurement failed")

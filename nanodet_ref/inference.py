"""The PyTorch reference run on images: load a model with its weights, detect on image files, the shared COCO set.

Used by the reference's command line (``python -m commands reference detect|eval``) and the pruning probe.
"""
from __future__ import annotations

import sys


def load_reference(args):
    from .checkpoint import load_weights
    from .config import load_config
    from .model import build_model

    cfg = load_config(args.config or args.model)
    model = build_model(cfg)
    provenance = load_weights(model, cfg, args.checkpoint, seed=int(cfg.toolkit.get("seed", 0)))
    return cfg, model, provenance


def default_dataset():
    from contracts.paths import shared_path

    root = shared_path("data", "coco-val2017-40")
    if root is None:
        return None, None
    return root / "images", root / "annotations" / "instances_val2017_40.json"


def reference_detections(cfg, model, images):
    """{file name: detections in image pixels} from the PyTorch reference."""
    from .decode import decode
    from .model import run_model
    from .preprocess import preprocess_file

    out = {}
    for i, path in enumerate(images, 1):
        x, warp, hw = preprocess_file(path, cfg)
        out[path.name] = decode(run_model(model, x), cfg, warp, hw)
        progress("reference", i, len(images))
    return out


def progress(what: str, done: int, total: int) -> None:
    """One progress line, redrawn in place on a terminal, every 10th step in a log."""
    if sys.stderr.isatty():
        print(f"\r  {what} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or done % 10 == 0:
        print(f"  {what} {done}/{total}", file=sys.stderr, flush=True)

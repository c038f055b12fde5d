"""Command line of the reference: ``python -m nanodet_ref detect|eval``.

``detect`` prints the reference detections of images; ``eval`` gives the reference COCO AP on a folder of
images with a COCO annotation file (default: the shared 40 COCO val2017 images).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.errors import UserError, run_main


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="m-416", help="m-416, m-320, g-416, plus-m-416, ... (configs/NAME.yml)")
    g.add_argument("--config", help="a nanodet YAML config (upstream schema)")
    p.add_argument("--checkpoint", help="checkpoint (.pth/.ckpt); default: the config's toolkit.weights")


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nanodet_ref", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detect", help="print reference detections of images as JSON")
    add_model_args(d)
    d.add_argument("images", nargs="+")
    e = sub.add_parser("eval", help="reference COCO AP on an annotated image folder")
    add_model_args(e)
    e.add_argument("--images")
    e.add_argument("--annotations")
    args = p.parse_args(argv)
    cfg, model, provenance = load_reference(args)
    print(f"{cfg.name}: weights {provenance['weights']}", file=sys.stderr)
    if args.cmd == "detect":
        dets = reference_detections(cfg, model, [Path(i) for i in args.images])
        print(json.dumps({k: [d.as_dict(cfg.class_names) for d in v] for k, v in dets.items()}, indent=1))
        return 0
    images, annotations = args.images, args.annotations
    if images is None or annotations is None:
        d_images, d_ann = default_dataset()
        images, annotations = images or d_images, annotations or d_ann
    if images is None or annotations is None:
        raise UserError("no --images/--annotations given and the shared COCO set is absent (set NANODET_SHARED)")
    from validation.coco_ap import CocoAnnotations

    from .preprocess import list_images

    coco = CocoAnnotations(annotations)
    result = coco.evaluate(reference_detections(cfg, model, list_images(Path(images))))
    print(json.dumps({"model": cfg.name, "weights": provenance["weights"], **result}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

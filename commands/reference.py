"""Command line of the reference: ``python -m commands reference detect|eval``.

``detect`` prints the reference detections of images; ``eval`` gives the reference COCO AP on a folder of
images with a COCO annotation file (default: the shared 40 COCO val2017 images).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.errors import UserError, run_main
from nanodet_ref.inference import default_dataset, load_reference, reference_detections


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model | --config, and --checkpoint: the reference's model (also the pruning probe's)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="m-416", help="m-416, m-320, g-416, plus-m-416, ... (configs/NAME.yml)")
    g.add_argument("--config", help="a nanodet YAML config (upstream schema)")
    p.add_argument("--checkpoint", help="checkpoint (.pth/.ckpt); default: the config's toolkit.weights")


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m commands reference", description=__doc__)
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
    from nanodet_ref.preprocess import list_images
    from validation.coco_ap import CocoAnnotations

    coco = CocoAnnotations(annotations, cfg.class_names)
    result = coco.evaluate(reference_detections(cfg, model, list_images(Path(images))))
    print(json.dumps({"model": cfg.name, "weights": provenance["weights"], **result}))
    return 0


def main(argv=None) -> int:
    return run_main(_main, argv)

"""``python -m commands pruning-probe --model m-416``: how much AP removing the least useful convolution channels
would cost (``validation.pruning_probe`` ranks, selects and replaces them; this prints the table).
"""
from __future__ import annotations

import argparse

from commands.reference import add_model_args
from contracts.errors import UserError, run_main


def _main(argv=None) -> int:
    import torch

    from nanodet_ref.inference import default_dataset, load_reference, reference_detections
    from nanodet_ref.preprocess import list_images, preprocess_file
    from nanodet_ref.samples import sample_photos
    from validation.coco_ap import CocoAnnotations
    from validation.pruning_probe import MeanReplacement, conv_macs, rank_channels, select

    p = argparse.ArgumentParser(prog="python -m commands pruning-probe", description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--shares", default="0.05,0.10,0.15,0.20",
                   help="shares of the network's convolution multiply-adds to remove (comma-separated)")
    p.add_argument("--images", type=int, default=0, help="use only the first N shared images (0: all)")
    args = p.parse_args(argv)
    try:
        shares = [float(s) for s in args.shares.split(",") if s]
    except ValueError:
        raise UserError(f"--shares: '{args.shares}' is not a comma-separated list of numbers") from None
    if not shares or any(not 0 < s < 1 for s in shares):
        raise UserError(f"--shares: every share must be between 0 and 1, got '{args.shares}'")
    images_dir, annotations = default_dataset()
    if images_dir is None:
        raise UserError("pruning probe: the shared COCO images are absent (set NANODET_SHARED); AP needs them")
    photos = sample_photos()
    if not photos:
        raise UserError("pruning probe: scikit-image's sample photos are missing (calibration needs them)")
    cfg, model, provenance = load_reference(args)
    if provenance.get("kind") != "checkpoint":
        raise UserError("pruning probe: needs the model's real checkpoint (random weights say nothing about AP)")
    model.eval()
    images = list_images(images_dir)[: args.images or None]
    coco = CocoAnnotations(annotations)
    calibration = [torch.from_numpy(preprocess_file(path, cfg)[0]) for path in photos]
    total = conv_macs(model, calibration[0])
    ranked = rank_channels(model, calibration)
    base = coco.evaluate(reference_detections(cfg, model, images))["ap"]
    print(f"{cfg.name} ({provenance['weights']}), {len(images)} images, {total / 1e6:.0f} M conv multiply-adds, "
          f"AP {base:.4f}; calibration: {len(photos)} packaged photos")
    print("| share asked | multiply-adds removed | channels | AP | AP change |")
    print("|---:|---:|---:|---:|---:|")
    for share in shares:
        chosen = select(ranked, share * total)
        removed = sum(c.macs for c in chosen)
        with MeanReplacement(model, chosen):
            ap = coco.evaluate(reference_detections(cfg, model, images))["ap"]
        print(f"| {share:.0%} | {removed / 1e6:.1f} M ({removed / total:.1%}) | {len(chosen)} | {ap:.4f} | "
              f"{ap - base:+.4f} |", flush=True)
    return 0


def main(argv=None) -> int:
    return run_main(_main, argv)

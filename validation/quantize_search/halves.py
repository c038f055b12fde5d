"""The search's images: the validation's images split in two halves, PyTorch's outputs and AP on each.

The images (the shared 40 COCO images by default, or ``--images`` with ``--annotations``) sorted by file name;
the even positions are the **choice** half, the only images the search decides on; the odd positions are the
**held-back** half, on which the final artifact's AP is reported and which no decision sees. AP needs
annotations and trained weights: without either, ``--quantize auto`` is refused (UserError).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contracts.errors import UserError
from validation.comparators import compare_detections, decode_batch
from validation.dataset import load_batch, resolve_images


@dataclass
class Half:
    """One half: its positions in the batch, image names, PyTorch's outputs, detections (input pixels) and AP."""
    name: str
    index: np.ndarray
    files: list[str]
    reference: dict[str, np.ndarray]
    reference_dets: list
    reference_ap: float


class SearchData:
    """The batch of every image, PyTorch's outputs on it, the COCO annotations and the two halves."""

    def __init__(self, cfg, reference_runner, images=None, annotations=None, log=print):
        from validation.coco_ap import CocoAnnotations

        image_set = resolve_images(images, annotations)
        if image_set.annotations is None:
            raise UserError("--quantize auto measures COCO AP: it needs annotated images (the shared set, or --images "
                            "with --annotations)")
        ann = CocoAnnotations(image_set.annotations, cfg.class_names)
        if getattr(getattr(ann, "classes", None), "none", False):
            raise UserError(f"--quantize auto: {image_set.annotations}: none of the model's classes is a category "
                            f"there, so there is no AP to keep")
        image_set.paths = sorted(image_set.paths, key=lambda p: p.name)
        if len(image_set.paths) < 4:
            raise UserError(f"--quantize auto: {len(image_set.paths)} images; it needs at least 4 (two halves)")
        self.cfg, self.annotations, self.source = cfg, ann, image_set.source
        self.batch = load_batch(image_set, cfg)
        self.names = [p.name for p in image_set.paths]
        log(f"      PyTorch on {len(self.names)} images ...")
        self.reference = reference_runner.run(self.batch.tensor)
        positions = np.arange(len(self.names))
        self.choice = self._half("choice", positions[0::2])
        self.held = self._half("held-back", positions[1::2])

    def _half(self, name: str, index: np.ndarray) -> Half:
        ref = {k: v[index] for k, v in self.reference.items()}
        return Half(name, index, [self.names[i] for i in index], ref, decode_batch(ref, self.cfg),
                    self.ap(ref, index))

    def ap(self, outputs: dict[str, np.ndarray], index: np.ndarray) -> float:
        """COCO AP of outputs for the images at ``index`` (outputs hold exactly those images, in that order)."""
        b = self.batch
        dets = decode_batch(outputs, self.cfg, [b.warps[i] for i in index], [b.image_hws[i] for i in index])
        return float(self.annotations.evaluate({self.names[i]: d for i, d in zip(index, dets)})["ap"])

    def judge(self, outputs: dict[str, np.ndarray], half: Half) -> dict:
        """AP of outputs on ``half`` against PyTorch's there, and the share of PyTorch's detections matched
        (same class, IoU >= 0.99: the validation's matching)."""
        ap = self.ap(outputs, half.index)
        matched = compare_detections(half.reference_dets, decode_batch(outputs, self.cfg))["matched_fraction"]
        return {"ap": ap, "pytorch_ap": half.reference_ap, "ap_delta": half.reference_ap - ap,
                "matched_fraction": float(matched)}

    def tensor(self, half: Half, limit: int | None = None) -> np.ndarray:
        index = half.index if limit is None else half.index[:limit]
        return self.batch.tensor[index]

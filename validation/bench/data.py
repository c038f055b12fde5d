"""The bench's images: validation's shared COCO set (``validation.dataset``), preprocessed once for every row,
and the COCO AP of a model's outputs on them. The bench compares AP, so it needs the annotated shared set: no
fallback photos here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.paths import shared_path
from validation.comparators import decode_batch
from validation.dataset import SHARED_ANNOTATIONS, SHARED_SET, Batch, load_batch, resolve_images


@dataclass
class BenchData:
    cfg: object
    batch: Batch
    annotations: object  # validation.coco_ap.CocoAnnotations

    @property
    def tensor(self) -> np.ndarray:
        """All images, preprocessed: [N, 3, H, W] float32."""
        return self.batch.tensor

    @property
    def files(self) -> list[Path]:
        return self.batch.images.paths

    def ap(self, outputs: dict[str, np.ndarray]) -> dict:
        """COCO AP of raw outputs {signature name: [N, HW, C]} over the N images (the shared decoder)."""
        dets = decode_batch(outputs, self.cfg, self.batch.warps, self.batch.image_hws)
        return self.annotations.evaluate({p.name: d for p, d in zip(self.files, dets)})


def load_bench_data(cfg, limit: int | None = None) -> BenchData:
    """The shared images (the first ``limit`` of them) and their annotations; UserError where they are absent."""
    from validation.coco_ap import CocoAnnotations

    if shared_path(*SHARED_SET, "images") is None or shared_path(*SHARED_SET, SHARED_ANNOTATIONS) is None:
        raise UserError("bench needs the shared COCO images and annotations (set NANODET_SHARED)")
    images = resolve_images(limit=limit)
    return BenchData(cfg, load_batch(images, cfg), CocoAnnotations(images.annotations, cfg.class_names))

"""COCO bbox AP with pycocotools for detections made by the shared decoder.

Labels are 0-based indices into the config's classes; the i-th label maps to the i-th category id of the
annotation file's categories sorted by id (the COCO convention NanoDet trains with).
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from contracts.errors import UserError


class CocoAnnotations:
    def __init__(self, path: str | Path):
        from pycocotools.coco import COCO

        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.path}: not a readable COCO annotation file ({exc.__class__.__name__})") from None
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise UserError(f"{self.path}: not a COCO instances file (needs images, annotations, categories)")
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.category_ids = sorted(c["id"] for c in data["categories"])
        self.image_ids = {img["file_name"]: img["id"] for img in data["images"]}

    def image_id(self, file_name: str) -> int | None:
        return self.image_ids.get(Path(file_name).name)

    def evaluate(self, detections: dict[str, list]) -> dict:
        """detections: {image file name: [Detection with boxes in image pixels]} -> {'ap', 'ap50', 'ap75'}."""
        from pycocotools.cocoeval import COCOeval

        results, img_ids = [], []
        for name, dets in detections.items():
            img_id = self.image_id(name)
            if img_id is None:
                continue
            img_ids.append(img_id)
            for d in dets:
                x1, y1, x2, y2 = d.box
                results.append({"image_id": img_id, "category_id": self.category_ids[d.label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.score)})
        if not img_ids:
            raise UserError(f"{self.path}: none of the images have annotations in this file")
        if not results:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "images": len(img_ids)}
        with contextlib.redirect_stdout(io.StringIO()):
            dt = self.coco.loadRes(results)
            ev = COCOeval(self.coco, dt, "bbox")
            ev.params.imgIds = sorted(img_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = np.asarray(ev.stats, float)
        return {"ap": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2]), "images": len(img_ids)}

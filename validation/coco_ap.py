"""COCO bbox AP with pycocotools for detections made by the shared decoder.

Labels are 0-based indices into the config's classes. Given the model's class names, each class is the category
of the annotation file with the same name, compared case-insensitively with spaces and underscores alike
(``traffic_light`` is COCO's ``traffic light``): the AP is over the matched classes only, and where no class
matches there is no AP (a number over categories the model never learnt would mean nothing). Without class names
(old callers), the i-th label is the i-th category id sorted by id (the COCO convention NanoDet trains with).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contracts.errors import UserError


def class_key(name: str) -> str:
    """A class or category name as compared: lower case, runs of spaces and underscores as one space."""
    return " ".join(re.split(r"[\s_]+", str(name).strip().lower()))


@dataclass
class ClassMatch:
    """Which of the model's classes are categories of the annotation file: {label: category id} and the rest."""
    category_of: dict[int, int]
    matched: dict[str, str] = field(default_factory=dict)   # model class name -> category name
    unmatched: list[str] = field(default_factory=list)      # model class names no category has
    by_name: bool = True                                    # False: positional (no class names given)

    @property
    def none(self) -> bool:
        return not self.category_of

    @property
    def partial(self) -> bool:
        return bool(self.category_of) and bool(self.unmatched)

    def note(self, path: Path) -> str | None:
        """One line where the match is not complete: no AP at all, or AP over some classes only."""
        n = len(self.matched) + len(self.unmatched)
        if self.none:
            shown = ", ".join(self.unmatched[:5]) + (", ..." if len(self.unmatched) > 5 else "")
            return (f"{path.name}: none of the model's {n} class name(s) ({shown}) is a category of this file: "
                    f"no AP (the stages are still compared with PyTorch)")
        if self.partial:
            return (f"{path.name}: AP over the {len(self.matched)} of the model's {n} classes that are categories "
                    f"of this file ({', '.join(self.matched)}); not categories here: {', '.join(self.unmatched)}")
        return None

    def as_dict(self) -> dict:
        return {"by_name": self.by_name, "matched": dict(self.matched), "unmatched": list(self.unmatched)}


def match_classes(class_names, categories: list[dict]) -> ClassMatch:
    """Each model class to the category of the same name (``class_key``); the first of equal names wins."""
    ids: dict[str, tuple[int, str]] = {}
    for c in sorted(categories, key=lambda c: c["id"]):
        ids.setdefault(class_key(c["name"]), (c["id"], c["name"]))
    match = ClassMatch({})
    for label, name in enumerate(class_names):
        found = ids.get(class_key(name))
        if found is None:
            match.unmatched.append(str(name))
        else:
            match.category_of[label] = found[0]
            match.matched[str(name)] = found[1]
    return match


class CocoAnnotations:
    def __init__(self, path: str | Path, class_names=None):
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
        categories = [c for c in data["categories"] if isinstance(c, dict) and "id" in c]
        if class_names is not None:
            self.classes = match_classes(class_names, [{"id": c["id"], "name": c.get("name", "")}
                                                       for c in categories])
        else:
            self.classes = ClassMatch(dict(enumerate(self.category_ids)), by_name=False)

    def image_id(self, file_name: str) -> int | None:
        return self.image_ids.get(Path(file_name).name)

    def evaluate(self, detections: dict[str, list]) -> dict:
        """detections: {image file name: [Detection with boxes in image pixels]} -> {'ap', 'ap50', 'ap75'}: over
        the classes matched to categories (``self.classes``); None each where none is (with the ``note``)."""
        from pycocotools.cocoeval import COCOeval

        category_of = self.classes.category_of
        results, img_ids = [], []
        for name, dets in detections.items():
            img_id = self.image_id(name)
            if img_id is None:
                continue
            img_ids.append(img_id)
            for d in dets:
                if d.label not in category_of:   # a class that is no category here: not part of the AP
                    continue
                x1, y1, x2, y2 = d.box
                results.append({"image_id": img_id, "category_id": category_of[d.label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.score)})
        if not img_ids:
            raise UserError(f"{self.path}: none of the images have annotations in this file")
        if self.classes.none:
            return {"ap": None, "ap50": None, "ap75": None, "images": len(img_ids),
                    "note": self.classes.note(self.path)}
        if not results:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "images": len(img_ids)}
        with contextlib.redirect_stdout(io.StringIO()):
            dt = self.coco.loadRes(results)
            ev = COCOeval(self.coco, dt, "bbox")
            ev.params.imgIds = sorted(img_ids)
            ev.params.catIds = sorted(set(category_of.values()))
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = np.asarray(ev.stats, float)
        return {"ap": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2]), "images": len(img_ids)}

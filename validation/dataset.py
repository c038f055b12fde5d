"""Which images a validation runs on, preprocessed once for every stage (identical input tensors).

Default: the shared 40 COCO val2017 images with their official annotations. Without the shared folder, real
photographs shipped inside the scikit-image wheel (pinned in requirements.lock; read as files, the package is
never imported) and NO AP: said loudly, and recorded in the report.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.paths import shared_path
from nanodet_ref.preprocess import list_images
from nanodet_ref.preprocess import preprocess_file
from nanodet_ref.samples import sample_photos

SHARED_SET = ("data", "coco-val2017-40")
SHARED_ANNOTATIONS = "annotations/instances_val2017_40.json"


@dataclass
class ImageSet:
    paths: list[Path]
    annotations: Path | None
    source: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Batch:
    images: ImageSet
    tensor: np.ndarray  # [N, 3, H, W] float32
    warps: list[np.ndarray]
    image_hws: list[tuple[int, int]]


def fallback_photos() -> list[Path]:
    return sample_photos()


def resolve_images(images=None, annotations=None, limit: int | None = None) -> ImageSet:
    """Images and annotations to use: given ones, else the shared set, else the packaged fallback photos."""
    if images is not None:
        paths = list_images(Path(images))
        ann = Path(annotations) if annotations else None
        if ann is not None and not ann.is_file():
            raise UserError(f"--annotations {ann}: file not found")
        result = ImageSet(paths, ann, f"{images}")
    else:
        folder = shared_path(*SHARED_SET)
        if folder is not None and (folder / "images").is_dir():
            ann = Path(annotations) if annotations else folder / SHARED_ANNOTATIONS
            result = ImageSet(list_images(folder / "images"), ann if ann.is_file() else None,
                              "shared:" + "/".join(SHARED_SET))
        else:
            photos = fallback_photos()
            if not photos:
                raise UserError("no images: the shared folder is absent (set NANODET_SHARED) and the fallback "
                                "photos of scikit-image are not installed (make venv); give --images DIR")
            msg = ("shared folder absent: validating on %d photographs shipped with scikit-image, "
                   "WITHOUT annotations, so NO COCO AP is measured" % len(photos))
            bar = "!" * 78
            print(f"{bar}\n!! WARNING: {msg}\n{bar}", file=sys.stderr)
            result = ImageSet(photos, Path(annotations) if annotations else None, "scikit-image sample photos",
                              [msg])
    if limit:
        result.paths = result.paths[:limit]
    return result


def check_annotation_coverage(images: ImageSet, annotations) -> None:
    """Where the annotations (a ``CocoAnnotations``) cover only some of the images: one warning line on stderr,
    kept in ``images.warnings`` for the report (AP is measured on the covered images only). None covered: the
    AP would mean nothing, UserError."""
    missing = [p.name for p in images.paths if annotations.image_id(p.name) is None]
    if not missing:
        return
    total = len(images.paths)
    if len(missing) == total:
        raise UserError(f"{images.annotations}: none of the {total} images is in this file")
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    msg = (f"{images.annotations}: {len(missing)} of the {total} images are not in this annotations file "
           f"({shown}); AP is measured on the other {total - len(missing)}")
    print(f"warning: {msg}", file=sys.stderr, flush=True)
    images.warnings.append(msg)


def load_batch(images: ImageSet, cfg) -> Batch:
    tensors, warps, hws = [], [], []
    for p in images.paths:
        x, m, hw = preprocess_file(p, cfg)
        tensors.append(x)
        warps.append(m)
        hws.append(tuple(int(v) for v in hw))
    return Batch(images, np.concatenate(tensors).astype(np.float32), warps, hws)

"""Real photographs that a pinned registry package ships (scikit-image's data folder).

Used where the shared COCO images are absent: as validation images (without AP) and to calibrate the
BatchNorm statistics of seeded random weights on real image statistics.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def sample_photos() -> list[Path]:
    """Paths of the packaged photographs, or [] where scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [data / n for n in SAMPLE_PHOTOS if (data / n).is_file()]

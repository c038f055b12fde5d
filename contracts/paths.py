"""Where things are: the project root, the shared data folder, the artifacts folder.

The shared folder (real checkpoints, COCO images, golden outputs) is found through ONE setting,
the environment variable ``NANODET_SHARED``, defaulting to ``../shared`` beside the project root.
It may be absent (a user's machine): callers must then fall back and say so.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_ENV = "NANODET_SHARED"


def shared_dir() -> Path | None:
    """The shared data folder, or None where it does not exist."""
    raw = os.environ.get(SHARED_ENV)
    path = Path(raw) if raw else PROJECT_ROOT.parent / "shared"
    if not path.is_absolute():
        path = (PROJECT_ROOT / path).resolve()
    return path if path.is_dir() else None


def shared_path(*parts: str) -> Path | None:
    """A path inside the shared folder, or None where the folder or the entry is absent."""
    root = shared_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None


def artifacts_dir() -> Path:
    """Where artifact folders go: ``NANODET_ARTIFACTS``, else ``artifacts/`` of the project."""
    return Path(os.environ.get("NANODET_ARTIFACTS", PROJECT_ROOT / "artifacts"))


def configs_dir() -> Path:
    return PROJECT_ROOT / "configs"


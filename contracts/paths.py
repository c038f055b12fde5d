"""Where things are: the project root, the shared data folder, the artifacts folder.

The shared folder (real checkpoints, COCO images, golden outputs) is found through ONE setting,
the environment variable ``NANODET_SHARED``, defaulting to ``../shared`` beside the project root.
It may be absent (a user's machine): callers must then fall back and say so.
"""
from __future__ import annotations

import os
import sysconfig
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


def in_work_tree() -> bool:
    """True where the packages run from the project's folder (a clone), False where pip installed them."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "configs").is_dir()


def artifacts_dir() -> Path:
    """Where artifact folders go: ``NANODET_ARTIFACTS``, else ``artifacts/`` of the project (of the current folder
    for an installed toolkit)."""
    default = PROJECT_ROOT / "artifacts" if in_work_tree() else Path.cwd() / "artifacts"
    return Path(os.environ.get("NANODET_ARTIFACTS", default))


def configs_dir() -> Path:
    """The toolkit's model configs: ``configs/`` of the project, else the installed copy (pyproject's data-files)."""
    return PROJECT_ROOT / "configs" if in_work_tree() else installed_data_dir() / "configs"


def installed_data_dir() -> Path:
    """Where pip puts the toolkit's data files (js/, configs/: ``[tool.setuptools.data-files]`` of pyproject)."""
    return Path(sysconfig.get_paths()["data"]) / "share" / "nanodet-tfjs"


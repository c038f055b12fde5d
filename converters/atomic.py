"""Atomic writes: a stage writes into a temp folder beside its target and is renamed into place only on success.

Names of temporaries start with a dot (``.model.onnx.tmp-*``, ``.saved_model.old-*``), so an interrupted run never
leaves anything that looks like a finished artifact; :func:`sweep` removes such leftovers at the next run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def remove(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_into_place(new: Path, target: Path) -> None:
    """Move ``new`` (file or folder) to ``target``, replacing what is there; the swap of a folder goes through a
    dot-named old copy so that ``target`` is either the old or the new complete thing."""
    new, target = Path(new), Path(target)
    if target.is_dir() and not target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}{OLD_MARK}", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


@contextmanager
def staged_output(target: Path):
    """Yield a path inside a fresh temp folder beside ``target``; on normal exit move it into place.

    On an exception (or an interrupt) the temp folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent))
    try:
        out = tmp / target.name
        yield out
        if not out.exists():
            raise RuntimeError(f"stage wrote no {target.name}")
        replace_into_place(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data) -> None:
    """Write JSON through a temp file + rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)   # mkstemp makes it private; a manifest is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep(folder: Path) -> list[str]:
    """Remove temporaries left by an interrupted run; return their names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.iterdir():
        if p.name.startswith(".") and (TMP_MARK in p.name or OLD_MARK in p.name):
            remove(p)
            gone.append(p.name)
    return gone

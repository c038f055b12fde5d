"""Atomic writes, the one implementation: a file or folder is written under a temp name beside its target and
renamed into place only on success (a whole artifact folder is swapped the same way: ``converters.staging``).

Names of temporaries start with a dot and carry a mark (``.report.md.tmp-*``, ``.pictures.tmp-*``,
``.pictures.old-*``), so an interrupted write never leaves anything that looks finished; :func:`sweep` removes
such leftovers at the next run. Files get the permissions a plain ``open(path, "w")`` would give (0666 less the
umask: 0644 usually), not the private 0600 of a temp file.
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


def _link_or_copy_file(src, dst) -> str:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:   # a file system without hard links: a copy
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst


def link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` (file or folder) at ``dst`` as hard links where the file system allows, else as copies.

    Used for finished outputs that go into a new build unchanged: no bytes are copied, and every writer of the
    toolkit replaces files by rename (never in place), so the old and the new folder cannot change each other.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy_file)
    else:
        _link_or_copy_file(src, dst)


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


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` through a temp file + rename (readers never see half a file); a failed write leaves no temp
    file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data, indent: int = 2, default=str) -> None:
    """:func:`write_text` of ``data`` as JSON (``default`` turns what JSON has no type for into a value), with a
    final newline."""
    write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def is_leftover(name: str) -> bool:
    """A temporary of an interrupted write (``.x.tmp-*``, ``.x.old-*``)."""
    return name.startswith(".") and (TMP_MARK in name or OLD_MARK in name)


def _restore_cut_swap(folder: Path) -> list[str]:
    """A folder swap (``replace_into_place``) killed between its two renames leaves the target absent and the old
    complete copy in ``.<name>.old-*/<name>``: put that copy back before anything is removed."""
    restored = []
    for holder in sorted(folder.iterdir()):
        if not (holder.is_dir() and holder.name.startswith(".") and OLD_MARK in holder.name):
            continue
        name = holder.name[1:holder.name.index(OLD_MARK)]
        kept = holder / name
        if name and kept.exists() and not (folder / name).exists():
            os.replace(kept, folder / name)
            restored.append(name)
    return restored


def sweep(folder: Path) -> list[str]:
    """Remove temporaries left by an interrupted run (after putting back a folder whose swap was cut between its
    two renames); return the names removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    _restore_cut_swap(folder)
    gone = []
    for p in folder.iterdir():
        if is_leftover(p.name):
            remove(p)
            gone.append(p.name)
    return gone

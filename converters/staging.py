"""Build a new artifact folder beside the old one and swap it in whole, so the old one stays as it was until the
new one is complete (stages, manifest and the reports that describe them).

While a conversion into ``artifacts/m-416`` runs, beside it::

    .m-416.build-XXXX/      the container (dot-named: never taken for an artifact; sibling reuse skips it)
        m-416/              the folder being built (the same name, so reports written in it name it right)
        READY               written when m-416/ is complete, just before the swap
        previous/           the old folder, for the moment of the swap

The swap: write READY, rename the old folder to ``previous/``, rename the new one into place, remove the
container. Only between the two renames is ``artifacts/m-416`` absent; :func:`recover` (run by the next
conversion, ``validate`` or ``check`` under the artifact lock) puts the complete folder there: the new one where
READY was written, else the old one. Every other container is an abandoned build and is removed. So whatever
kills a run (an exception, Ctrl-C, SIGKILL), the folder is the old complete one or the new complete one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

BUILD_MARK = ".build-"
READY = "READY"
PREVIOUS = "previous"


def containers(target: Path) -> list[Path]:
    """The build containers of ``target`` left beside it (``.<name>.build-*``), oldest name first."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.glob(f".{target.name}{BUILD_MARK}*") if p.is_dir())


def settle(container: Path, target: Path) -> str | None:
    """Put a complete folder at ``target`` if the swap through ``container`` was cut off, then remove the container.

    Returns what was done, for the log (None where the container was removed only).
    """
    container, target = Path(container), Path(target)
    done = None
    if not target.exists():
        built, previous = container / target.name, container / PREVIOUS
        if (container / READY).is_file() and built.is_dir():
            os.rename(built, target)
            done = f"completed the swap of an interrupted run: {target.name} is the new build"
        elif previous.is_dir():
            os.rename(previous, target)
            done = f"restored {target.name} from an interrupted swap (the new build was not complete)"
    shutil.rmtree(container, ignore_errors=True)
    return done


def recover(target: Path) -> list[str]:
    """Repair what an interrupted run left beside ``target`` (caller holds the artifact lock); log lines."""
    notes = []
    for container in containers(target):
        done = settle(container, target)
        notes.append(done or f"removed leftover of an interrupted run: {container.name}")
    return notes


@contextmanager
def build_folder(target: Path):
    """Yield the path of a new, empty folder to build ``target`` in (inside a fresh container beside it).

    Leaving the block without :func:`swap_into_place` (an exception, an interrupt) removes the build and leaves
    ``target`` as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    container = Path(tempfile.mkdtemp(prefix=f".{target.name}{BUILD_MARK}", dir=target.parent))
    build = container / target.name
    build.mkdir()
    try:
        yield build
    finally:
        settle(container, target)


def set_aside(build: Path, target: Path) -> None:
    """First half of the swap: mark the build complete, move the old folder (if any) into the container."""
    container = Path(build).parent
    (container / READY).write_text("the folder beside this file is complete\n")
    if Path(target).exists():
        os.rename(target, container / PREVIOUS)


def swap_into_place(build: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``build`` (two renames; see the module docstring); the old folder goes
    when the container is removed."""
    set_aside(build, target)
    os.rename(build, target)

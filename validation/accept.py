"""The accepted figures of an artifact folder: which run they are, how ``check`` measures on the same images, and
``accept``, the one explicit step that replaces them.

The accepted figures are ``validation.json`` (with ``report.md`` and ``pictures/``) at the top of the artifact
folder: the converter writes them when it builds the stages; ``validate`` never touches them (it writes
``validations/<name>/``); ``accept`` promotes such an ad-hoc validation, one that passed and measured exactly the
folder's current stage files. ``check`` re-measures on the accepted run's own images (``data`` and
``image_files`` of validation.json), so its metrics are comparable with the accepted ones.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from contracts.atomic import remove, staged_output, write_json, write_text
from contracts.manifest import Manifest

from . import artifacts as art

ACCEPTED = "validation.json"
ACCEPTED_FILES = ("report.md", "pictures")   # promoted with it
STALE_ON_ACCEPT = ("check.json", "check.md")  # compared with the previous accepted figures


def read_report(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describes_current_stages(report: dict, artifact_dir: Path, manifest: Manifest) -> bool:
    """Whether ``report`` measured every stage now in the folder, with the very files the manifest lists."""
    present = list(art.present_stages(artifact_dir, manifest))
    want = manifest.stage_digests(present)
    return (bool(present) and set(present) <= set(report.get("stages") or {})
            and len(want) == len(present) and report.get("stage_digests") == want)


def accepted_data(accepted: dict) -> tuple[Path | None, Path | None, list[str] | None]:
    """(images, annotations, image names) that select the accepted run's images again; None = the default."""
    data = accepted.get("data") if isinstance(accepted.get("data"), dict) else {}
    images = art.expand_recorded_path(data.get("images") or "")
    annotations = art.expand_recorded_path(data.get("annotations") or "")
    files = accepted.get("image_files")
    return images, annotations, list(files) if isinstance(files, list) else None


def promote(adhoc: Path, artifact_dir: Path) -> Path:
    """Copy an ad-hoc validation's report, pictures and validation.json (last) to the top of ``artifact_dir``;
    the figures are unchanged, ``run.accepted`` says from where and when. Returns the accepted file."""
    adhoc, artifact_dir = Path(adhoc), Path(artifact_dir)
    for name in ACCEPTED_FILES:
        src, dst = adhoc / name, artifact_dir / name
        if src.is_dir():
            with staged_output(dst) as tmp:
                shutil.copytree(src, tmp)
        elif src.is_file():
            write_text(dst, src.read_text())
        else:
            remove(dst)
    report = read_report(adhoc / ACCEPTED)
    report.setdefault("run", {})["accepted"] = {"from": adhoc.relative_to(artifact_dir).as_posix(),
                                                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(artifact_dir / ACCEPTED, report)
    for name in STALE_ON_ACCEPT:
        remove(artifact_dir / name)
    return artifact_dir / ACCEPTED

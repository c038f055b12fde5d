"""The accepted figures of an artifact folder change only by ``accept`` (``validation/accept.py``, ``cli.py``).

``validate`` on other images writes ``validations/<images folder>/`` and leaves validation.json, report.md and
pictures/ byte-identical; ``check`` then still measures on the accepted run's images and compares metrics (a
planted AP regression is caught); ``accept`` promotes an ad-hoc validation, and ``check`` follows its images.
Works on a copy of the session's m-416 conversion (accepted on the 40 shared images with annotations).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT

ACCEPTED = ("validation.json", "report.md", "pictures")


def cli(command: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "commands", command, "--model", "m-416", "--artifacts",
                           str(folder), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)


def accepted_hashes(folder: Path) -> dict[str, str]:
    from contracts.hashing import sha256_file
    files = [folder / n for n in ACCEPTED if (folder / n).is_file()]
    files += [p for n in ACCEPTED if (folder / n).is_dir() for p in sorted((folder / n).rglob("*")) if p.is_file()]
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


@pytest.fixture
def artifact(converted_m416, tmp_path) -> Path:
    copy = tmp_path / "m-416"
    shutil.copytree(converted_m416, copy)
    return copy


@pytest.fixture
def other_images(shared, tmp_path) -> Path:
    """Two of the shared COCO images in a folder of another name (links, not copies)."""
    folder = tmp_path / "other"
    folder.mkdir()
    for p in sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[5:7]:
        (folder / p.name).symlink_to(p)
    return folder


@pytest.mark.slow
def test_validate_on_other_images_keeps_the_accepted_figures_and_check_compares_metrics(artifact, other_images):
    before = accepted_hashes(artifact)
    assert "validation.json" in before and any(k.startswith("pictures/") for k in before)
    r = cli("validate", artifact, "--images", str(other_images))
    assert r.returncode == 0, r.stderr[-2000:]
    assert accepted_hashes(artifact) == before
    adhoc = json.loads((artifact / "validations" / "other" / "validation.json").read_text())
    assert adhoc["image_files"] == sorted(p.name for p in other_images.iterdir()) and adhoc["pass"] is True
    assert (artifact / "validations" / "other" / "report.md").is_file()

    # a regression that only a metric comparison sees: the accepted onnx AP 0.01 above what onnx measures
    accepted = json.loads((artifact / "validation.json").read_text())
    assert accepted["images"] == 40 and accepted["stages"]["onnx"]["ap"] is not None
    accepted["stages"]["onnx"]["ap"] += 0.01
    (artifact / "validation.json").write_text(json.dumps(accepted, indent=2))
    r = cli("check", artifact, "--stages", "onnx")
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: regression:") and "onnx: ap dropped" in last, last
    assert "images differ" not in r.stderr
    assert json.loads((artifact / "check.json").read_text())["image_files"] == accepted["image_files"]


@pytest.mark.slow
def test_accept_promotes_a_validation_and_check_follows_its_images(artifact, other_images):
    r = cli("validate", artifact, "--images", str(other_images), "--limit", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    adhoc = artifact / "validations" / "other-limit1"
    made = (adhoc / "validation.json").read_bytes()

    r = cli("accept", artifact, "--images", str(other_images), "--limit", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "promoting it" in r.stderr and (adhoc / "validation.json").read_bytes() == made   # not re-measured
    accepted = json.loads((artifact / "validation.json").read_text())
    first = sorted(p.name for p in other_images.iterdir())[:1]
    assert accepted["image_files"] == first and accepted["run"]["accepted"]["from"] == "validations/other-limit1"
    assert (artifact / "report.md").read_text() == (adhoc / "report.md").read_text()

    r = cli("check", artifact, "--stages", "onnx")    # no --images: the accepted run's one image
    assert r.returncode == 0, r.stderr[-2000:]
    assert "images differ" not in r.stderr
    assert json.loads((artifact / "check.json").read_text())["image_files"] == first

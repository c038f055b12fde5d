"""What a validation writes: files readable like any other the toolkit writes, and a warning where the
annotations cover only some of the images (on stderr and in the report)."""
from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from contracts.atomic import write_text as atomic_write_text
from contracts.errors import UserError
from nanodet_ref.config import load_config
from validation.api import run_validation
from validation.dataset import SHARED_ANNOTATIONS, SHARED_SET
from validation.runners.pytorch import TorchRunner


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_write_text_gives_what_a_plain_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "report.md", "text\n")
        (tmp_path / "plain.md").write_text("text\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "report.md") == mode(tmp_path / "plain.md") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.md", "report.md"]   # no temp file left


def test_partial_annotations_warn_and_every_file_is_0644(shared, tmp_path, capsys, umask_022):
    """Two shared COCO images and one the annotation file does not list: validation (PyTorch reference only)
    warns once, keeps the warning in validation.json and report.md, measures AP on the two; its files are 0644."""
    source = shared.joinpath(*SHARED_SET)
    images = tmp_path / "images"
    images.mkdir()
    firsts = sorted((source / "images").glob("*.jpg"))[:2]
    for p in firsts:
        shutil.copy(p, images / p.name)
    shutil.copy(firsts[0], images / "not-in-coco.jpg")
    ann = source / SHARED_ANNOTATIONS
    cfg = load_config("m-320")
    out = tmp_path / "out"
    report = run_validation(out, cfg, TorchRunner.from_config(cfg), {}, {}, images=images, annotations=ann,
                            pictures=1)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    expected = (f"{ann}: 1 of the 3 images are not in this annotations file (not-in-coco.jpg); "
                f"AP is measured on the other 2")
    assert warnings == [f"warning: {expected}"]
    assert report["warnings"] == [expected]
    assert json.loads((out / "validation.json").read_text())["warnings"] == [expected]
    assert f"> WARNING: {expected}" in (out / "report.md").read_text()
    assert report["stages"]["pytorch"]["ap"] is not None
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"validation.json", "report.md"}
    assert {p.relative_to(out).as_posix(): oct(mode(p)) for p in files} == \
        {p.relative_to(out).as_posix(): oct(0o644) for p in files}


def test_annotations_that_cover_no_image_are_refused(shared, tmp_path):
    from validation.api import _annotations
    from validation.dataset import resolve_images

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(sorted((shared.joinpath(*SHARED_SET) / "images").glob("*.jpg"))[0], images / "mine.jpg")
    ann = shared.joinpath(*SHARED_SET) / SHARED_ANNOTATIONS
    with pytest.raises(UserError, match="none of the 1 images is in this file"):
        _annotations(resolve_images(images, ann), load_config("m-320"))

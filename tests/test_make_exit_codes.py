"""Through make every failure exits 2 (GNU make's status for any failed recipe); the command line's own code
(2 bad input, 1 tool failure or failed verdict) is on make's last line, ``Error N``, and running the command make
echoes gives it as the exit status. The README's "Errors" section says so."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from contracts.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(*args):
    """A top-level make, as a user runs it (not a sub-make of the ``make test`` that may be running us)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def echoed_command(stdout: str) -> str:
    """The recipe's command as make echoed it first (a backslash-continued recipe spans several lines)."""
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if not line.endswith("\\"))
    return "\n".join(lines[:end + 1])


@pytest.fixture
def broken_artifact(shared, tmp_path):
    """An artifact folder whose model.onnx is not ONNX, and one shared image: validation's verdict is FAIL."""
    art, images = tmp_path / "artifact", tmp_path / "images"
    art.mkdir()
    images.mkdir()
    (art / "model.onnx").write_bytes(b"not an onnx model")
    first = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[0]
    shutil.copy(first, images / first.name)
    return art, images


def test_make_exits_2_and_names_the_command_lines_code(broken_artifact):
    art, images = broken_artifact
    cases = {"bad input": ("convert", "MODEL=m-999"),
             "failed verdict": ("validate", "MODEL=m-416", f"ARTIFACTS={art}", f"IMAGES={images}")}
    codes = {}
    for what, args in cases.items():
        r = make(*args)
        assert r.returncode == 2, (what, r.stderr[-2000:])
        command = echoed_command(r.stdout)
        assert command.startswith(".venv/bin/python -m "), command
        direct = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=600)
        last = r.stderr.strip().splitlines()[-1]
        assert re.fullmatch(rf"make: \*\*\* \[Makefile:\d+: {args[0]}\] Error {direct.returncode}", last), last
        codes[what] = direct.returncode
    assert codes == {"bad input": 2, "failed verdict": 1}


def test_the_readme_says_so():
    errors = PROJECT_ROOT.joinpath("README.md").read_text().split("### Errors", 1)[1].split("\n### ", 1)[0]
    assert "Through make every failure exits 2" in errors
    assert "Error 1" in errors and "Error 2" in errors

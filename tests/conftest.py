"""Shared fixtures. The shared folder is found through NANODET_SHARED (default ../shared);
tests that need it skip with a reason where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT, shared_dir

TEST_OUTPUT = Path(os.environ.get("NANODET_TEST_OUTPUT", PROJECT_ROOT / "test-output"))


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_dir()
    if root is None:
        pytest.skip("shared folder absent (set NANODET_SHARED or put it at ../shared)")
    return root


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(parents=True, exist_ok=True)
    return TEST_OUTPUT


class Conversion:
    """The one end-to-end conversion of the test session: artifacts + what the command printed."""

    def __init__(self, artifact_dir: Path, returncode: int, stdout: str, stderr: str, seconds: float):
        self.artifact_dir = artifact_dir
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds


@pytest.fixture(scope="session")
def conversion_m416(shared, test_output) -> Conversion:
    """`convert --model m-416` with audit and validation on the shared images, once per session.

    Writes test-output/artifacts/m-416 (the stage cache makes a re-run cheap); .ci/run checks it afterwards
    with `make check`.
    """
    import subprocess
    import sys
    import time

    out = test_output / "artifacts" / "m-416"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--out", str(out)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1800)
    (test_output / "convert-m-416.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return Conversion(out, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


@pytest.fixture(scope="session")
def converted_m416(conversion_m416) -> Path:
    """The artifact folder of the session's m-416 conversion (fails the dependent tests if it failed)."""
    if conversion_m416.returncode != 0:
        pytest.fail(f"convert --model m-416 failed ({conversion_m416.returncode}): "
                    f"{conversion_m416.stderr.strip().splitlines()[-1:]}")
    return conversion_m416.artifact_dir

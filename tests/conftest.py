"""Shared fixtures. The shared folder is found through NANODET_SHARED (default ../shared);
tests that need it skip with a reason where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nanodet_ref.paths import PROJECT_ROOT, shared_dir

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

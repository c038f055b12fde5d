"""``python -m commands check`` catches a tampered artifact: one weight value edited in the TFJS .bin shard.

Takes an already-converted artifact folder (with manifest.json and the accepted validation.json):
$NANODET_TEST_ARTIFACT where set, else the session's end-to-end conversion (``converted_m416`` in conftest.py).
The folder is copied to tmp first; the original is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.paths import PROJECT_ROOT, artifacts_dir

BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint16": 2, "uint8": 1, "bool": 1}


def tamper_tfjs_weight(model_json: Path) -> str:
    """Add 1.0 to the first value of the first float conv kernel in the shards; returns the weight's name."""
    manifest = json.loads(model_json.read_text())
    for group in manifest["weightsManifest"]:
        shards = [model_json.parent / p for p in group["paths"]]
        data = bytearray(b"".join(p.read_bytes() for p in shards))
        offset = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            stored = q["dtype"] if q else w["dtype"]
            if w["dtype"] == "float32" and stored in ("float32", "float16") and len(w["shape"]) == 4 and count >= 64:
                dt = np.float32 if stored == "float32" else np.float16
                size = np.dtype(dt).itemsize
                value = np.frombuffer(bytes(data[offset:offset + size]), dt)[0]
                data[offset:offset + size] = np.asarray(value + 1.0, dt).tobytes()
                start = 0
                for p in shards:  # write the shards back in their original sizes
                    n = p.stat().st_size
                    p.write_bytes(bytes(data[start:start + n]))
                    start += n
                return w["name"]
            offset += count * BYTES[stored]
    raise AssertionError(f"{model_json}: no float conv kernel to tamper with")


def run_check(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "commands", "check", "--model", "m-416", "--artifacts",
                           str(folder), "--stages", "tfjs", "--limit", "3", *extra], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def artifact(request, shared) -> Path:
    given = os.environ.get("NANODET_TEST_ARTIFACT")  # a folder converted earlier: skips the session conversion
    try:
        folder = Path(given) if given else Path(request.getfixturevalue("converted_m416"))
    except pytest.FixtureLookupError:
        folder = artifacts_dir() / "m-416"
    if not ((folder / "validation.json").is_file() and (folder / "manifest.json").is_file()
            and (folder / "tfjs" / "model.json").is_file()):
        pytest.skip(f"{folder}: no converted artifact with validation.json (convert m-416 first)")
    return folder


@pytest.mark.slow
def test_check_passes_untouched_and_catches_tampered_tfjs_weight(artifact, tmp_path):
    copy = tmp_path / artifact.name
    shutil.copytree(artifact, copy)
    clean = run_check(copy)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert json.loads((copy / "check.json").read_text())["regression_check"]["pass"] is True

    tamper_tfjs_weight(copy / "tfjs" / "model.json")
    bad = run_check(copy)
    assert bad.returncode == 1, bad.stderr[-2000:]
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error: regression:") and "tfjs" in last
    assert "sha256 differs from manifest" in last      # the file hash ...
    assert "tfjs: pass flipped PASS -> FAIL" in last    # ... and the re-validation both see it
    assert json.loads((copy / "check.json").read_text())["regression_check"]["pass"] is False


@pytest.mark.slow
def test_saved_model_runner_keeps_tensorflow_chatter_out_of_the_log(artifact):
    """Loading a SavedModel for validation: TF's import lines and its no-GPU probe ("failed call to cuInit") are
    filtered (contracts.tf_environment), the runner's own output is not."""
    from contracts.tf_environment import IMPORT_NOISE, RUNTIME_NOISE
    code = ("import sys\nfrom validation.runners.saved_model import SavedModelRunner\n"
            f"SavedModelRunner({str(artifact / 'saved_model')!r})\nprint('loaded', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [line for line in proc.stderr.splitlines() if IMPORT_NOISE.search(line) or RUNTIME_NOISE.search(line)]
    assert proc.stderr.strip().splitlines()[-1] == "loaded"


@pytest.mark.parametrize("content", ["[]", "7"])
def test_accepted_figures_that_are_no_report_are_one_line(tmp_path, content):
    """validation.json that is JSON but not a report: `check` says so in one line and exits 2 (no traceback)."""
    folder = tmp_path / "m-416"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not checked before the accepted figures")
    (folder / "validation.json").write_text(content)
    r = run_check(folder)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {folder / 'validation.json'}: not a validation report "
                                              f"(a JSON object is expected)"]


def test_a_foreign_report_never_lands_in_a_users_folder(tmp_path):
    """`foreign --out` naming a non-empty folder that holds no earlier foreign report is refused before anything
    runs, the user's files untouched."""
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "report.md").write_text("the user's own report")
    r = subprocess.run([sys.executable, "-m", "commands", "foreign", "--preset", "vladmandic-nanodet-m", "--tfjs",
                        str(tmp_path), "--out", str(mine)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: --out {mine}: not empty and holds no earlier")
    assert [p.name for p in mine.iterdir()] == ["report.md"]
    assert (mine / "report.md").read_text() == "the user's own report"

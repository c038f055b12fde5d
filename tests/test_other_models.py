"""The other models convert end to end too: m-320 (real checkpoint where the shared folder is there) and g-416,
which has no checkpoint and converts with seeded random weights (said loudly, recorded everywhere). Every stage,
TFJS run in Node included, agrees with the PyTorch reference built from the same weights. Images: photographs
shipped by a pinned package, so this runs with or without the shared folder."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT, shared_path
from nanodet_ref.samples import sample_photos

SIGNATURE = sorted(f"{k}_pred_stride_{s}" for k in ("cls", "dis") for s in (8, 16, 32))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    found = sample_photos()[:3]
    assert len(found) == 3, "the packaged sample photographs are missing (scikit-image from requirements.lock)"
    folder = tmp_path_factory.mktemp("photos")
    for p in found:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model", ["g-416", "m-320"])
def test_model_converts_and_validates(model, photos, test_output):
    expected_weights = ("checkpoint nanodet-m-320.pth"
                        if model == "m-320" and shared_path("weights", "nanodet-m-320.pth") else "random (seed 0)")
    out = test_output / "artifacts" / model
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", model, "--out", str(out),
                           "--images", str(photos)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1200)
    (test_output / f"convert-{model}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if expected_weights.startswith("random"):
        assert "SEEDED RANDOM WEIGHTS" in proc.stderr or "random weights" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == expected_weights
    assert sorted(manifest["io_specs"]["tfjs"]["outputs"]) == SIGNATURE
    report = json.loads((out / "validation.json").read_text())
    assert report["weights"] == expected_weights and report["images"] == 3
    assert report["stages"]["pytorch"]["reference_detections"] > 0  # it does detect: matching means something
    for name in ("onnx", "onnx_sim", "saved_model", "tfjs"):
        stage = report["stages"][name]
        assert stage["pass"] is True, (name, stage.get("failures"))
        assert stage["max_abs_diff"] <= 1e-4 and stage["matched_fraction"] == 1.0, name

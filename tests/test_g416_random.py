"""NanoDet-g has no checkpoint: it converts with seeded random weights (said loudly, recorded everywhere) and every
stage, TFJS run in Node included, still agrees with the PyTorch reference built from the same seed.
Runs with or without the shared folder (images: photographs shipped by a pinned package)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from nanodet_ref.paths import PROJECT_ROOT
from nanodet_ref.samples import sample_photos


@pytest.mark.slow
def test_g416_converts_and_validates_with_random_weights(test_output, tmp_path):
    photos = sample_photos()[:3]
    assert len(photos) == 3, "the packaged sample photographs are missing (scikit-image from requirements.lock)"
    images = tmp_path / "images"
    images.mkdir()
    for p in photos:
        shutil.copy(p, images / p.name)
    out = test_output / "artifacts" / "g-416"
    proc = subprocess.run([sys.executable, "-m", "converters.cli", "convert", "--model", "g-416", "--out", str(out),
                           "--images", str(images)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=1200)
    (test_output / "convert-g-416.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SEEDED RANDOM WEIGHTS" in proc.stderr or "random" in proc.stderr.lower()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "random (seed 0)"
    report = json.loads((out / "validation.json").read_text())
    assert report["weights"] == "random (seed 0)" and report["images"] == 3
    for name in ("onnx", "onnx_sim", "saved_model", "tfjs"):
        stage = report["stages"][name]
        assert stage["pass"] is True, (name, stage.get("failures"))
        assert stage["max_abs_diff"] <= 1e-4 and stage["matched_fraction"] == 1.0, name
    assert report["stages"]["pytorch"]["reference_detections"] > 0  # the random net does detect: matching means something
    tfjs_spec = manifest["io_specs"]["tfjs"]
    assert sorted(tfjs_spec["outputs"]) == sorted(
        [f"{k}_pred_stride_{s}" for k in ("cls", "dis") for s in (8, 16, 32)])

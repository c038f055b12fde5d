"""Each runtime's float32 error against the model in float64 (validation.float64_error, commands precision)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from contracts.paths import PROJECT_ROOT
from validation.float64_error import error_rows, markdown


def test_rows_measure_against_float64_and_against_pytorch_float32():
    exact = {"a": np.array([1.0, 2.0]), "b": np.array([10.0, -20.0])}
    pytorch32 = {"a": np.array([1.0, 2.0], np.float32), "b": np.array([10.0, -20.00002], np.float32)}
    stage = {"a": np.array([1.00001, 2.0], np.float32), "b": np.array([10.0, -20.0], np.float32)}
    rows = {r.runtime: r for r in error_rows(exact, pytorch32, {"tfjs": stage})}
    assert list(rows) == ["pytorch", "tfjs"]
    assert rows["pytorch"].vs_pytorch == 0 and rows["pytorch"].worst_output == "b"
    assert rows["pytorch"].vs_float64 == pytest.approx(2e-5, rel=0.1) and rows["pytorch"].scale == 20.0
    # the stage is exact on b, where PyTorch float32 rounds: its error to float64 is its own (on a), and its
    # difference to PyTorch float32 is the larger of both roundings
    assert rows["tfjs"].worst_output == "a" and rows["tfjs"].vs_float64 == pytest.approx(1e-5, rel=0.1)
    assert rows["tfjs"].vs_pytorch == pytest.approx(2e-5, rel=0.1)
    lines = markdown(list(rows.values()), 1.5e-5).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| pytorch | 1.91e-05 |") and lines[2].endswith("| no |")
    assert lines[3].startswith("| tfjs | 1e-05 |") and lines[3].endswith("| yes |")


def test_a_runtime_missing_an_output_is_an_error():
    exact = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(ValueError, match="tfjs: outputs missing: b"):
        error_rows(exact, dict(exact), {"tfjs": {"a": np.zeros(2)}})


def test_the_float64_runner_computes_the_same_model_in_float64():
    from nanodet_ref.config import load_config
    from validation.runners.pytorch import TorchRunner

    cfg = load_config("m-416")
    runner = TorchRunner.from_config(cfg, seed=3)   # seeded random weights: no shared data needed
    x = np.random.default_rng(0).uniform(-2, 2, (1, 3, 416, 416)).astype(np.float32)
    f32, f64 = runner.run(x), runner.float64().run(x)
    assert f32["cls_pred_stride_8"].dtype == np.float32
    for name in f32:
        assert f64[name].dtype == np.float64
        diff = np.abs(f64[name] - f32[name]).max()
        assert 0 < diff < 1e-3 * max(1.0, np.abs(f64[name]).max()), name   # float32 rounding, nothing more


@pytest.mark.slow
def test_precision_command_prints_every_runtime(converted_m416):
    r = subprocess.run([sys.executable, "-m", "commands", "precision", "--model", "m-416", "--artifacts",
                        str(converted_m416), "--limit", "1"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for runtime in ("pytorch", "onnx", "onnx_sim", "saved_model", "tfjs", "tfjs_cpu"):
        assert f"\n| {runtime} |" in r.stdout, runtime
    pytorch_row = next(l for l in r.stdout.splitlines() if l.startswith("| pytorch |"))
    assert float(pytorch_row.split("|")[2]) > 0     # PyTorch float32 itself rounds: never exactly the float64 model


def test_precision_command_refuses_a_missing_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "commands", "precision", "--model", "m-416", "--artifacts",
                        str(tmp_path / "nothing")], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --artifacts")

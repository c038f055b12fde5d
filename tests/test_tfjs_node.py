"""The Node TFJS runner (js/run_graph_model.mjs via validation.runners.tfjs_node) on the peer artifact, and its
error paths. The peer stores float16 weights, so it agrees with the golden outputs to ~3e-3 on scores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.paths import PROJECT_ROOT
from contracts.presets import PRESETS
from nanodet_ref.decode import softmax_integral
from validation.runners.tfjs_node import TfjsNodeRunner, run_tfjs_graph

PEER = ("reference", "vladmandic-nanodet-m", "nanodet-m.json")
GOLDEN = ("reference", "golden", "m-416", "000000005001")
NAMES = ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0", "Identity_4:0", "Identity_5:0"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_peer_in_node_matches_golden(shared, backend):
    golden = shared.joinpath(*GOLDEN)
    x = np.load(golden / "input.npy")
    results, meta = run_tfjs_graph(shared.joinpath(*PEER), [{"input_1:0": x}], NAMES, backend=backend,
                                   return_meta=True)
    assert meta["backend"] == backend and len(meta["infer_ms"]) == 1
    out = results[0]
    for i, s in enumerate((8, 16, 32)):
        scores, dist = out[NAMES[i]], out[NAMES[i + 3]]
        assert scores.dtype == np.float32 and scores.shape == (1, (52 // (s // 8)) ** 2, 80)
        assert np.abs(scores[0] - np.load(golden / f"scores_s{s}.npy")).max() < 5e-3
        assert np.abs(softmax_integral(dist[0], 7) - np.load(golden / f"distances_s{s}.npy")).max() < 0.06


@pytest.mark.slow
def test_runner_batches_and_maps_the_signature(shared):
    x = np.load(shared.joinpath(*GOLDEN) / "input.npy")
    batch = np.concatenate([x, x[:, :, ::-1].copy()])
    runner = TfjsNodeRunner(shared.joinpath(*PEER), IoSpec.from_dict(PRESETS["vladmandic-nanodet-m"]["io_spec"]))
    out = runner.run(batch)
    assert out["cls_pred_stride_8"].shape == (2, 2704, 80) and out["dis_pred_stride_32"].shape == (2, 169, 32)
    assert np.abs(out["cls_pred_stride_8"][0] - out["cls_pred_stride_8"][1]).max() > 1e-3  # per-image results
    assert runner.meta["simd"] is True and runner.meta["threads"] == 1


@pytest.mark.slow
def test_runner_profile_gives_kernel_times_and_the_same_outputs(shared):
    """--profile: per inference, kernel name -> ms (registered kernels only, no op wrappers), within the
    inference's own time; execute_ms is model.execute alone; results equal an unprofiled run."""
    x = np.load(shared.joinpath(*GOLDEN) / "input.npy")
    feeds = [{"input_1:0": x}, {"input_1:0": x}]
    plain, meta = run_tfjs_graph(shared.joinpath(*PEER), feeds, NAMES, return_meta=True)
    assert meta["kernel_ms"] is None and len(meta["execute_ms"]) == 2
    assert all(0 < e <= i for e, i in zip(meta["execute_ms"], meta["infer_ms"]))
    profiled, meta = run_tfjs_graph(shared.joinpath(*PEER), feeds, NAMES, return_meta=True, profile=True)
    assert len(meta["kernel_ms"]) == 2
    for kernels, total in zip(meta["kernel_ms"], meta["infer_ms"]):
        assert kernels["Conv2D"] > 0 and kernels["LeakyRelu"] > 0 and kernels["Transpose"] > 0
        assert not any(k.endswith("__op") for k in kernels)
        assert sum(kernels.values()) < total
    for a, b in zip(plain, profiled):
        for n in NAMES:
            assert np.array_equal(a[n], b[n])


def tiny_model_json(tmp_path, shard="missing.bin"):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "graph-model", "modelTopology": {"node": []},
                                "weightsManifest": [{"paths": [shard], "weights": []}]}))
    return path


def test_missing_node_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NANODET_NODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="node .* not found on PATH"):
        run_tfjs_graph(tiny_model_json(tmp_path), [{"x": np.zeros(1, np.float32)}])
    monkeypatch.setenv("NANODET_NODE", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="NANODET_NODE"):
        run_tfjs_graph(tiny_model_json(tmp_path), [{"x": np.zeros(1, np.float32)}])


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="model.json not found"):
        run_tfjs_graph(tmp_path / "model.json", [])


@pytest.mark.slow
def test_missing_weight_shard_is_a_user_error_from_node(tmp_path):
    with pytest.raises(UserError, match="missing.bin: weight shard named in .* not found"):
        run_tfjs_graph(tiny_model_json(tmp_path), [{"x": np.zeros(1, np.float32)}])


@pytest.mark.slow
def test_foreign_cli_on_the_peer(shared, tmp_path):
    out = tmp_path / "peer"
    r = subprocess.run([sys.executable, "-m", "commands", "foreign", "--preset", "vladmandic-nanodet-m",
                        "--limit", "2", "--out", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "validation.json").read_text())
    assert set(report["stages"]) == {"pytorch", "tfjs"} and report["images"] == 2
    tfjs = report["stages"]["tfjs"]
    for key in ("max_abs_diff", "mean_abs_diff", "outputs", "max_class_diff", "matched_fraction", "ap", "ap50",
                "pass", "failures"):
        assert key in tfjs
    assert tfjs["quantized"] == "float16" and 1e-4 < tfjs["max_abs_diff"] < 0.1
    assert len(tfjs["max_class_diff"]) == 80 and tfjs["matched_fraction"] > 0.9
    assert "\n| tfjs | PASS |" in (out / "report.md").read_text()
    assert len(list((out / "pictures").glob("*.png"))) == 2
    assert "tfjs" in r.stderr and "PASS" in r.stderr

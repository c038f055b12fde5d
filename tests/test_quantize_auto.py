"""``--quantize auto`` on the real m-416: the search alone picks a mix within the AP budget on the held-back
half, at most 1.3x the all-uint8 weight bytes, and keeps the one weight that uint8 ruins wider.

The known-sensitive weight: the 3x3 depthwise kernel of the first ShuffleNetV2 unit's shortcut branch
(``/backbone/stage2/stage2.0/branch1/branch1.0/Conv``, 216 numbers from -10.6 to 21.2, so uint8 steps of 0.125).
Alone in uint8 it makes 86 % of the all-uint8 output error; forced to uint8 with every other weight float32, the
held-back half loses 0.03 AP. Without the search's ordering (e.g. promoting weights in reverse order) the walk
stops at a prefix that leaves it uint8 (measured: held-back AP 0.300 against PyTorch's 0.334).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT
from converters.weight_types import float_entries, read_entries

SENSITIVE_LAYER = "/backbone/stage2/stage2.0/branch1/branch1.0/Conv"
SIZE_LIMIT = 1.3   # the issue's: at most 1.3x the plain uint8 artifact

QUICK_SENSITIVITY = 4   # the cheap path: 4 choice images rank the weights (the command uses 8); same ranking here


def convert(*args):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    r = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", *args, "--no-validate",
                        "--no-audit"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def auto_m416(converted_m416):
    """The pipeline with ``--quantize auto`` and the search lent as the convert command lends it, beside the
    session's m-416 (its first three stages are copied), ranking on QUICK_SENSITIVITY images."""
    from converters.options import ConvertOptions
    from converters.pipeline import convert as run_pipeline
    from converters.sources import resolve
    from converters.tfjs_mixed import AUTO_HOOK
    from validation.quantize_search.planner import AutoQuantizer

    source = resolve(model="m-416")
    out = converted_m416.parent / "m-416-onnx_tf-auto"   # measured and documented on onnx-tf's weights
    run_pipeline(source, ConvertOptions(quantize="auto", backend="onnx_tf"), out=out,
                 stage_hooks={AUTO_HOOK: AutoQuantizer(source, sensitivity_images=QUICK_SENSITIVITY)})
    return out


def stored_types(model_json) -> dict[str, str]:
    return {e.name: e.stored for e in read_entries(model_json) if e.dtype == "float32"}


def test_auto_without_trained_weights_or_outside_auto_is_refused_before_building(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    for args, message in ((["--model", "g-416", "--quantize", "auto"], "g-416 has no checkpoint"),
                          (["--model", "m-416", "--ap-budget", "0.01"], "--ap-budget: applies to --quantize auto")):
        r = subprocess.run([sys.executable, "-m", "commands", "convert", *args, "--out", str(tmp_path / "x")],
                           cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1], r.stderr[-500:]
        assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_auto_keeps_the_sensitive_weight_wider_and_the_budget_on_held_back_images(auto_m416):
    entry = json.loads((auto_m416 / "manifest.json").read_text())["stages"]["tfjs"]
    search = entry["quantize_search"]
    budget = search["ap_budget"]
    top = search["sensitivity_top"][0]
    assert SENSITIVE_LAYER in top["layer"] and top["numbers"] == 216
    types = stored_types(auto_m416 / "tfjs" / "model.json")
    assert all(types[n] in ("float16", "float32") for n in top["names"]), [types[n] for n in top["names"]]
    assert set(entry["weight_types"]["names"]["uint8"]) == {n for n, t in types.items() if t == "uint8"}
    # chosen on one half, confirmed by TFJS there, and within the budget on the half no decision saw
    assert set(search["images"]["choice"]).isdisjoint(search["images"]["held_back"])
    assert search["confirmations"][-1]["choice"]["ap_delta"] <= budget
    assert search["held_back"]["within_budget"] and search["held_back"]["ap_delta"] <= budget
    assert search["weight_bytes"] <= SIZE_LIMIT * search["all_uint8_weight_bytes"]
    # the simulator's estimate of the chosen prefix is what TFJS measured on the choice half
    estimate = next(s for s in search["estimates"] if s["k"] == search["promoted"])
    assert abs(estimate["ap"] - search["confirmations"][-1]["choice"]["ap"]) < 2e-3


@pytest.mark.slow
def test_forcing_the_sensitive_weight_to_uint8_breaks_the_budget(auto_m416, converted_m416):
    """Every other float weight kept float32 (``--keep``), the sensitive one uint8: TFJS loses more than the
    budget on the held-back half, where the auto artifact (it in float16, most others uint8) stays within."""
    from nanodet_ref.config import load_config
    from validation.api import validate_artifacts

    search = json.loads((auto_m416 / "manifest.json").read_text())["stages"]["tfjs"]["quantize_search"]
    sensitive = set(search["sensitivity_top"][0]["names"])
    others = [e.name for e in float_entries(auto_m416 / "tfjs" / "model.json") if e.name not in sensitive]
    out = converted_m416.parent / "m-416-uint8-forced"
    convert("--backend", "onnx_tf", "--quantize", "uint8", "--keep", ",".join(others), "--out", str(out))
    types = stored_types(out / "tfjs" / "model.json")
    assert {n for n, t in types.items() if t == "uint8"} == sensitive
    report = validate_artifacts(out, load_config("m-416"), stages=["tfjs"], only_files=search["images"]["held_back"],
                                write=False, localize="none")
    delta = report["stages"]["pytorch"]["ap"] - report["stages"]["tfjs"]["ap"]
    assert abs(report["stages"]["pytorch"]["ap"] - search["held_back"]["pytorch_ap"]) < 1e-9
    assert delta > search["ap_budget"], delta

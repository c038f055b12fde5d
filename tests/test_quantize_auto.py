"""``--quantize auto`` on the real m-416: the search alone picks a mix within the AP budget on the held-back
half, at most 1.3x the all-uint8 weight bytes, whose output error is within the search's bound, and TFJS confirms
on the choice half what the simulator estimated. (The known-sensitive weight that the search keeps wider, forced
to uint8, is plus-m-416's: ``tests/test_quantize_auto_plus.py``; m-416's equalized weights have none that alone
breaks the budget.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT
from converters.weight_types import read_entries

SIZE_LIMIT = 1.3   # the issue's: at most 1.3x the plain uint8 artifact

QUICK_SENSITIVITY = 4   # the cheap path: 4 choice images rank the weights (the command uses 8); same ranking here


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
    out = converted_m416.parent / "m-416-auto"
    run_pipeline(source, ConvertOptions(quantize="auto"), out=out,
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
def test_auto_is_within_the_budget_on_held_back_images_and_small(auto_m416):
    entry = json.loads((auto_m416 / "manifest.json").read_text())["stages"]["tfjs"]
    search = entry["quantize_search"]
    budget = search["ap_budget"]
    types = stored_types(auto_m416 / "tfjs" / "model.json")
    assert set(entry["weight_types"]["names"]["uint8"]) == {n for n, t in types.items() if t == "uint8"}
    for kept in search["kept_wider"]:
        assert all(types[n] == kept["type"] for n in kept["names"])
    # chosen on one half, confirmed by TFJS there, and within the budget on the half no decision saw
    assert set(search["images"]["choice"]).isdisjoint(search["images"]["held_back"])
    assert search["confirmations"][-1]["choice"]["ap_delta"] <= budget
    assert search["held_back"]["within_budget"] and search["held_back"]["ap_delta"] <= budget
    assert search["weight_bytes"] <= SIZE_LIMIT * search["all_uint8_weight_bytes"]
    assert search["error_per_image"] <= search["error_per_image_limit"]
    # the simulator's estimate of the chosen prefix is what TFJS measured on the choice half
    estimate = next(s for s in search["estimates"] if s["k"] == search["promoted"])
    assert abs(estimate["ap"] - search["confirmations"][-1]["choice"]["ap"]) < 2e-3
    # tf_nhwc's split head conv (32592 numbers) is simulated through its blocks of rows: what the search cannot
    # measure and keeps float32 is only the upsampling tables (13.5 kB), not 130 kB of head kernels
    unmeasured = [k for k in search["kept_wider"] if not k["measured"]]
    assert sum(4 * k["numbers"] for k in unmeasured if k["type"] == "float32") < 20_000, unmeasured

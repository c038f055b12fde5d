"""``--quantize auto`` on the real plus-m-416, as a user runs it: the command alone picks a mix at most 1.3x the
all-uint8 weight bytes whose AP on the held-back half is within the budget, every stage PASSes, and the one weight
that uint8 ruins stays wider.

The known-sensitive weight: the bias of the first convolution (``/backbone/conv1/conv1.0/Conv``, 24 numbers, BN
folded in; no Conv pair to equalize it with, a MaxPool follows). Alone in uint8 with every other weight float32 it
makes an eighth of the all-uint8 output error, and the held-back half loses 0.014 AP (simulator and TFJS alike).
The search ranks it first by error per byte and stores it float16.

Long (about 5 minutes on 2 cores: the conversion with its validation, the search, and a second conversion with
the weight forced): ``make test-long``, its own step of ``.ci/run``; ``make test`` leaves it out.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT
from converters.weight_types import float_entries, read_entries

pytestmark = [pytest.mark.long, pytest.mark.slow]

SENSITIVE_LAYER = "/backbone/conv1/conv1.0/Conv"
SIZE_LIMIT = 1.3   # the issue's: at most 1.3x the plain uint8 artifact


def convert(test_output, name: str, *args, validate: bool = True):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = test_output / "artifacts" / name
    extra = [] if validate else ["--no-validate", "--no-audit"]
    r = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "plus-m-416", *args, *extra,
                        "--out", str(out)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=2400)
    (test_output / f"convert-{name}.log").write_text(r.stdout + "\n--- stderr ---\n" + r.stderr)
    return r, out


@pytest.fixture(scope="module")
def auto_plus(shared, test_output):
    r, out = convert(test_output, "plus-m-416-auto", "--quantize", "auto")
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-2000:])   # exit 0: every stage PASS, AP verdicts too
    return out


def stored_types(model_json) -> dict[str, str]:
    return {e.name: e.stored for e in read_entries(model_json) if e.dtype == "float32"}


def test_auto_plus_is_small_within_the_budget_on_held_back_images_and_every_stage_passes(auto_plus):
    entry = json.loads((auto_plus / "manifest.json").read_text())["stages"]["tfjs"]
    search = entry["quantize_search"]
    assert search["result"] == "mixed" and search["held_back"]["within_budget"]
    assert search["held_back"]["ap_delta"] <= search["ap_budget"]
    assert search["weight_bytes"] <= SIZE_LIMIT * search["all_uint8_weight_bytes"]
    assert search["error_per_image"] <= search["error_per_image_limit"]
    assert set(search["images"]["choice"]).isdisjoint(search["images"]["held_back"])
    report = json.loads((auto_plus / "validation.json").read_text())
    assert report["pass"] and set(report["stages"]) >= {"onnx", "onnx_sim", "saved_model", "tfjs"}
    failures = {n: s["failures"] for n, s in report["stages"].items() if s["failures"]}
    assert not failures, failures
    assert report["stages"]["tfjs"]["criteria"].startswith("quantized")
    assert "equalize_channel_ranges" in json.loads((auto_plus / "manifest.json").read_text())["stages"][
        "onnx_sim"]["patches"]
    assert report["equalization"]["pairs"] > 0 and "channel ranges equalized" in (auto_plus / "report.md").read_text()


def test_auto_plus_keeps_the_sensitive_bias_wider_and_forcing_it_to_uint8_breaks_the_budget(auto_plus, test_output):
    """Every other float weight kept float32 (``--keep``), the sensitive one uint8: TFJS loses more than the
    budget on the held-back half, where the auto artifact (it in float16, most others uint8) stays within."""
    from nanodet_ref.config import load_config
    from validation.api import validate_artifacts

    search = json.loads((auto_plus / "manifest.json").read_text())["stages"]["tfjs"]["quantize_search"]
    top = search["sensitivity_top"][0]
    assert SENSITIVE_LAYER in top["layer"] and top["numbers"] == 24, top
    types = stored_types(auto_plus / "tfjs" / "model.json")
    assert all(types[n] == "float16" for n in top["names"]), [types[n] for n in top["names"]]

    sensitive = set(top["names"])
    others = [e.name for e in float_entries(auto_plus / "tfjs" / "model.json") if e.name not in sensitive]
    r, out = convert(test_output, "plus-m-416-uint8-forced", "--quantize", "uint8", "--keep", ",".join(others),
                     validate=False)
    assert r.returncode == 0, r.stderr[-3000:]
    forced = stored_types(out / "tfjs" / "model.json")
    assert {n for n, t in forced.items() if t == "uint8"} == sensitive
    report = validate_artifacts(out, load_config("plus-m-416"), stages=["tfjs"],
                                only_files=search["images"]["held_back"], write=False, localize="none")
    delta = report["stages"]["pytorch"]["ap"] - report["stages"]["tfjs"]["ap"]
    assert abs(report["stages"]["pytorch"]["ap"] - search["held_back"]["pytorch_ap"]) < 1e-9
    assert delta > search["ap_budget"], delta

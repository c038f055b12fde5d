"""The integration test: `convert --model m-416` runs every stage, the audit and the validation on the 40 shared
images, and every stage detects what PyTorch detects (default opset 10, export patches on)."""
from __future__ import annotations

import json

import pytest

STAGES = ("pytorch", "onnx", "onnx_sim", "saved_model", "tfjs")


@pytest.mark.slow
def test_convert_m416_validates_every_stage(conversion_m416, converted_m416):
    report = json.loads((converted_m416 / "validation.json").read_text())
    assert report["images"] == 40 and report["weights"] == "checkpoint nanodet-m-416.pth"
    assert set(STAGES) <= set(report["stages"])
    pytorch_ap = report["stages"]["pytorch"]["ap"]
    assert abs(pytorch_ap - 0.329) <= 0.002
    for name in STAGES:
        stage = report["stages"][name]
        assert stage["pass"] is True, (name, stage.get("failures"))
        assert stage["max_abs_diff"] <= 1e-4, name
        assert stage["matched_fraction"] == 1.0, name
        assert round(stage["ap"], 3) == round(pytorch_ap, 3), name
    # the console (stdout) ends with the stage x metric table, one row per stage with its verdict
    table = conversion_m416.stdout.rstrip().splitlines()[-len(STAGES):]
    assert [row.split()[0] for row in table] == list(STAGES), conversion_m416.stdout[-2000:]
    assert all(row.split()[1] == "PASS" for row in table)
    assert (converted_m416 / "report.md").is_file()
    assert list((converted_m416 / "pictures").glob("*.png"))


@pytest.mark.slow
def test_convert_m416_log_is_progress_not_tensorflow_chatter(conversion_m416):
    """TF's C++ start-up and no-GPU lines, absl INFO lines and onnxsim's check counter stay out of the log
    (a fresh conversion printed all of them before contracts.stderr_filter.filtered_stderr); the progress is there."""
    from contracts.tf_environment import IMPORT_NOISE, RUNTIME_NOISE
    err = conversion_m416.stderr.splitlines()
    chatter = [line for line in err + conversion_m416.stdout.splitlines()
               if IMPORT_NOISE.search(line) or RUNTIME_NOISE.search(line) or line.startswith("INFO:absl:")
               or line.startswith("Checking 0/")]
    assert not chatter, chatter[:5]
    assert any(line.startswith("[4/4] tfjs") for line in err)


@pytest.mark.slow
def test_convert_m416_audit_has_no_unfixed_findings(converted_m416):
    audit = json.loads((converted_m416 / "audit.json").read_text())
    assert audit["summary"]["unfixed"] == 0
    assert audit["summary"]["flagged_classes"] == []


@pytest.mark.slow
def test_convert_m416_ships_the_js_module(converted_m416):
    text = (converted_m416 / "tfjs" / "nanodet.mjs").read_text()
    assert "export async function load" in text or "export function load" in text
    assert "416" in text

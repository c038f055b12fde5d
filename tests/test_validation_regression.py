"""``check``'s comparison of a fresh validation with the accepted figures: what counts as a regression."""
from __future__ import annotations

import copy

from validation.regression import compare_reports

ACCEPTED = {
    "image_files": ["a.jpg", "b.jpg"],
    "stages": {
        "pytorch": {"pass": True, "max_abs_diff": 0.0, "matched_fraction": 1.0, "ap": 0.329},
        "onnx": {"pass": True, "max_abs_diff": 2.6e-5, "matched_fraction": 1.0, "ap": 0.329},
        "tfjs": {"pass": True, "max_abs_diff": 2.0e-5, "matched_fraction": 1.0, "ap": 0.329},
    },
}


def changed(stage, **fields):
    cur = copy.deepcopy(ACCEPTED)
    cur["stages"][stage].update(fields)
    return cur


def test_same_figures_are_no_regression():
    regs, _ = compare_reports(ACCEPTED, copy.deepcopy(ACCEPTED), 1e-4)
    assert regs == []


def test_small_wobble_is_no_regression():
    regs, _ = compare_reports(ACCEPTED, changed("tfjs", max_abs_diff=6e-5, ap=0.3285), 1e-4)
    assert regs == []


def test_pass_flip_names_stage():
    regs, _ = compare_reports(ACCEPTED, changed("tfjs", **{"pass": False, "failures": ["x"]}), 1e-4)
    assert len(regs) == 1 and regs[0].startswith("tfjs: pass flipped")


def test_max_abs_diff_growth():
    regs, _ = compare_reports(ACCEPTED, changed("onnx", max_abs_diff=5e-4), 1e-4)
    assert len(regs) == 1 and regs[0].startswith("onnx: max_abs_diff")
    regs, _ = compare_reports(ACCEPTED, changed("onnx", max_abs_diff=None), 1e-4)
    assert regs and regs[0].startswith("onnx: max_abs_diff")


def test_matched_fraction_drop():
    regs, _ = compare_reports(ACCEPTED, changed("tfjs", matched_fraction=0.99), 1e-4)
    assert regs == ["tfjs: matched_fraction dropped from 1.0000 to 0.9900"]


def test_ap_drop_beyond_0002():
    assert compare_reports(ACCEPTED, changed("tfjs", ap=0.3275), 1e-4)[0] == []
    regs, _ = compare_reports(ACCEPTED, changed("tfjs", ap=0.326), 1e-4)
    assert len(regs) == 1 and regs[0].startswith("tfjs: ap dropped")


def test_missing_stage_and_only():
    cur = copy.deepcopy(ACCEPTED)
    del cur["stages"]["onnx"]
    regs, _ = compare_reports(ACCEPTED, cur, 1e-4)
    assert regs == ["onnx: stage missing (accepted run had it)"]
    assert compare_reports(ACCEPTED, cur, 1e-4, only=["pytorch", "tfjs"])[0] == []


def test_other_images_compare_pass_flags_only():
    cur = changed("tfjs", ap=0.2)
    cur["image_files"] = ["c.jpg"]
    regs, notes = compare_reports(ACCEPTED, cur, 1e-4)
    assert regs == [] and notes

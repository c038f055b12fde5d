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


def with_outputs(report, diffs: dict, scale: float = 10.0, unexplained: int = 0):
    """The report with per-output figures as compare_raw writes them (atol 1e-4, rtol 1e-4, the given scale)."""
    out = copy.deepcopy(report)
    for stage in out["stages"].values():
        stage["outputs"] = {o: {"max_abs_diff": d, "atol": 1e-4, "rtol": 1e-4, "scale": scale,
                                "tolerance": 1e-4 + 1e-4 * scale} for o, d in diffs.items()}
        stage["unexplained"] = unexplained
    return out


def test_output_growth_is_judged_by_that_output_tolerance():
    """A box-logit output of scale 10 may grow by 1e-4 + 1e-4 x 10 = 1.1e-3 (what its verdict allows), not by the
    bare raw_atol; beyond that the regression names the output."""
    acc = with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5, "dis_pred_stride_8": 1e-4})
    cur = with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5, "dis_pred_stride_8": 9e-4})
    for stage in cur["stages"].values():
        stage["max_abs_diff"] = 9e-4
    assert compare_reports(acc, cur, 1e-4)[0] == []
    cur = with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5, "dis_pred_stride_8": 1.5e-3})
    regs, _ = compare_reports(acc, cur, 1e-4, only=["onnx"])
    assert regs == ["onnx: dis_pred_stride_8 max_abs_diff grew from 0.0001 to 0.0015 (tolerance 0.0011)"]


def test_more_unexplained_detection_differences_regress():
    acc = with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5})
    assert compare_reports(acc, with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5}), 1e-4)[0] == []
    regs, _ = compare_reports(acc, with_outputs(ACCEPTED, {"cls_pred_stride_8": 2e-5}, unexplained=1), 1e-4,
                              only=["tfjs"])
    assert regs == ["tfjs: unexplained detection differences rose from 0 to 1"]

"""Comparators on synthetic head outputs: agreeing stages pass; a shifted box, a swapped class, a dropped output
channel, a wrong shape, a missing output and NaNs fail (and say why)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nanodet_ref.config import load_config
from validation.comparators import compare_detections, compare_raw, decode_batch, max_class_diff
from validation.evaluate import judge_stage, tolerances


@pytest.fixture(scope="module")
def cfg():
    return load_config("m-416")


def peaked(bins: int, k: int) -> np.ndarray:
    z = np.full(bins, -8.0, np.float32)
    z[k] = 8.0
    return z


def synthetic_outputs(cfg, seed=0) -> dict:
    """Raw outputs [1, HW, C] with three confident objects (classes 3, 17, 56) and low scores elsewhere."""
    rng = np.random.default_rng(seed)
    bins = cfg.reg_max + 1
    out = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        out[f"cls_pred_stride_{s}"] = rng.uniform(0.0, 0.01, (1, h * w, cfg.num_classes)).astype(np.float32)
        out[f"dis_pred_stride_{s}"] = rng.normal(0, 0.5, (1, h * w, 4 * bins)).astype(np.float32)
    for s, point, label, score, k in ((16, 300, 3, 0.9, 3), (32, 80, 17, 0.8, 2), (8, 1500, 56, 0.7, 4)):
        out[f"cls_pred_stride_{s}"][0, point, label] = score
        out[f"dis_pred_stride_{s}"][0, point] = np.concatenate([peaked(bins, k)] * 4)
    return out


def judge(cfg, ref, got, quantization=None):
    batch = SimpleNamespace(warps=[np.eye(3)], image_hws=[(416, 416)])
    return judge_stage(cfg, tolerances(cfg), batch, ref, decode_batch(ref, cfg), got, None, None, quantization)[0]


def copy(d):
    return {k: v.copy() for k, v in d.items()}


def test_synthetic_reference_has_detections(cfg):
    dets = decode_batch(synthetic_outputs(cfg), cfg)[0]
    assert {d.label for d in dets if d.score > 0.5} == {3, 17, 56}


def test_identical_outputs_pass(cfg):
    ref = synthetic_outputs(cfg)
    e = judge(cfg, ref, copy(ref))
    assert e["pass"], e["failures"]
    assert e["max_abs_diff"] == 0 and e["matched_fraction"] == 1.0
    assert all(o["status"] == "PASSED" for o in e["outputs"].values())


def test_tiny_noise_passes_with_needed_tolerance(cfg):
    ref = synthetic_outputs(cfg)
    got = {k: v + np.float32(3e-6) for k, v in ref.items()}
    e = judge(cfg, ref, got)
    assert e["pass"], e["failures"]
    assert 2e-6 < e["max_abs_diff"] < 1e-4
    for name, o in e["outputs"].items():
        assert o["atol"] == 1e-4 and o["rtol"] == 1e-4
        assert o["scale"] == pytest.approx(float(np.abs(ref[name]).max()))
        assert o["tolerance"] == pytest.approx(1e-4 + 1e-4 * o["scale"])
        assert o["needed_rtol"] == 0.0 and o["needed_atol"] == 0.0  # atol alone covers 3e-6


def test_tolerance_grows_with_the_output_scale():
    """|diff| <= atol + rtol * max|ref| per output: a large-magnitude output may differ more than atol, as float32
    rounding makes it; the same diff on a small-magnitude output fails; needed atol / rtol are stated."""
    rng = np.random.default_rng(0)
    big = {"logits": (rng.normal(0, 4, (1, 500, 32)) + np.linspace(-12, 12, 32)).astype(np.float32)}
    small = {"logits": big["logits"] / np.float32(100)}
    for ref in (big, small):
        ref["logits"][0, 0, 0] = 0.0  # an element near 0 is judged by the output's scale, not its own value
    noise = np.zeros((1, 500, 32), np.float32)
    noise[0, 0, 0] = 5e-4
    noise[0, 1, 1] = 6e-4
    raw = compare_raw(big, {"logits": big["logits"] + noise}, 1e-4, 1e-4)
    o = raw["outputs"]["logits"]
    assert raw["pass"] and 12 < o["scale"] < 40
    assert o["needed_rtol"] == pytest.approx((o["max_abs_diff"] - 1e-4) / o["scale"])
    assert o["needed_atol"] == pytest.approx(max(o["max_abs_diff"] - 1e-4 * o["scale"], 0.0))
    assert not compare_raw(big, {"logits": big["logits"] + noise}, 1e-4, 0.0)["pass"]  # atol alone: fails
    raw = compare_raw(small, {"logits": small["logits"] + noise}, 1e-4, 1e-4)
    assert not raw["pass"] and "rtol 0.0001 x scale" in raw["failures"][0]
    assert raw["outputs"]["logits"]["needed_rtol"] > 1e-4


def test_shifted_box_fails(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    bins = cfg.reg_max + 1
    got["dis_pred_stride_16"][0, 300, :bins] = peaked(bins, 6)  # left side 3 -> 6 bins: box moves/grows
    e = judge(cfg, ref, got)
    assert not e["pass"]
    assert e["outputs"]["dis_pred_stride_16"]["status"] == "FAILED"
    assert e["matched_fraction"] < 1.0
    assert e["unexplained"] == 2 and e["explained"] == 0  # PyTorch's box and the stage's, each without partner
    assert any("not near-ties" in f for f in e["failures"])
    ex = e["unexplained_examples"][0]
    assert ex["label"] == 3 and ex["source"] == [16, 300] and ex["other_side_same_point"]["max_coordinate_move"] > 20


def test_swapped_class_fails_and_names_the_classes(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    got["cls_pred_stride_32"][0, 80, [17, 18]] = got["cls_pred_stride_32"][0, 80, [18, 17]]
    e = judge(cfg, ref, got)
    assert not e["pass"]
    assert e["matched_fraction"] < 1.0
    diffs = np.asarray(e["max_class_diff"])
    assert set(np.nonzero(diffs > 0.5)[0]) == {17, 18}


def test_detection_matching_counts_extra_and_lost(cfg):
    ref = decode_batch(synthetic_outputs(cfg), cfg)
    assert compare_detections(ref, ref)["matched_fraction"] == 1.0
    lost = compare_detections(ref, [ref[0][1:]])
    assert lost["matched"] == len(ref[0]) - 1 and lost["matched_fraction"] < 1.0
    extra = compare_detections([ref[0][1:]], ref)
    assert extra["matched_fraction"] < 1.0


def test_dropped_output_channel_fails(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    got["cls_pred_stride_8"] = got["cls_pred_stride_8"][..., :-1]
    e = judge(cfg, ref, got)
    assert not e["pass"]
    assert e["outputs"]["cls_pred_stride_8"]["status"] == "FAILED"
    assert "shape" in e["outputs"]["cls_pred_stride_8"]["error"]
    assert e["max_abs_diff"] is None and e["matched_fraction"] == 0.0


def test_wrong_layout_output_fails(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    got["dis_pred_stride_32"] = np.ascontiguousarray(got["dis_pred_stride_32"].transpose(0, 2, 1))
    e = judge(cfg, ref, got)
    assert not e["pass"]
    assert any("dis_pred_stride_32: shape" in f for f in e["failures"])


def test_wrong_shape_fails_even_for_quantized_stage(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    got["cls_pred_stride_16"] = got["cls_pred_stride_16"][:, :-1]
    e = judge(cfg, ref, got, quantization="float16")
    assert not e["pass"]


def test_missing_output_and_nan_fail(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    del got["dis_pred_stride_8"]
    raw = compare_raw(ref, got, 1e-4)
    assert not raw["pass"] and "output missing" in raw["outputs"]["dis_pred_stride_8"]["error"]
    got = copy(ref)
    got["cls_pred_stride_8"][0, 0, 0] = np.nan
    e = judge(cfg, ref, got)
    assert not e["pass"] and any("non-finite" in f for f in e["failures"])


def test_quantized_stage_judged_on_detections_without_annotations(cfg):
    ref = synthetic_outputs(cfg)
    noisy = {k: v + np.float32(2e-3) for k, v in ref.items()}  # float16-sized error: not judged on raw atol
    e = judge(cfg, ref, noisy, quantization="float16")
    assert e["pass"], e["failures"]
    assert all(o["judged"] is False for o in e["outputs"].values())
    swapped = copy(ref)
    for s in (8, 16, 32):  # every object's class changes: the quantized stage fails too
        swapped[f"cls_pred_stride_{s}"] = swapped[f"cls_pred_stride_{s}"][..., ::-1].copy()
    assert not judge(cfg, ref, swapped, quantization="float16")["pass"]


def test_max_class_diff_is_per_class(cfg):
    ref = synthetic_outputs(cfg)
    got = copy(ref)
    got["cls_pred_stride_8"][0, 10, 42] += 0.25
    diffs = max_class_diff(ref, got, cfg.strides, cfg.num_classes)
    assert diffs[42] == pytest.approx(0.25, abs=1e-6)
    assert max(d for i, d in enumerate(diffs) if i != 42) == 0.0


def test_reference_ap_is_held_only_against_the_configs_own_checkpoint(cfg):
    """reference_ap (0.329) was measured with nanodet-m-416.pth: the m-320 checkpoint under this config is not
    held to it (its AP is 0.319), random weights neither; the config's own checkpoint is."""
    from validation.evaluate import configured_weights

    own = cfg.toolkit["weights"]["sha256"]
    assert configured_weights(cfg, {"kind": "checkpoint", "sha256": own})
    assert not configured_weights(cfg, {"kind": "checkpoint", "sha256": "2d076340e1f4de9d" + "0" * 48})
    assert not configured_weights(cfg, {"kind": "random", "seed": 0})
    assert configured_weights(load_config("g-416"), {"kind": "random", "seed": 0})  # names no checkpoint

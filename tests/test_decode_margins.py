"""``nanodet_ref.decode_margins`` is sound: whatever it calls IN is decoded, and only what it calls IN or MAYBE,
for EVERY set of raw outputs within the bounds (checked by decoding many random perturbations); its box and IoU
bounds hold; with zero bounds it reproduces the decoder."""
from __future__ import annotations

import numpy as np
import pytest

from nanodet_ref.config import load_config
from nanodet_ref.decode import decode, level_boxes, pairwise_iou
from nanodet_ref.decode_margins import IN, MAYBE, OUT, Bounds, box_move, iou_bounds, stability


@pytest.fixture(scope="module")
def cfg():
    return load_config("m-416")


def dense_outputs(cfg, rng, grid: int | None, classes: int | None = None) -> dict:
    """Random-weight-like outputs of one image; ``grid``: scores rounded to 1/grid (many exact ties); ``classes``:
    only that many classes score (crowded same-class NMS)."""
    out = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        sc = rng.random((h * w, cfg.num_classes)) ** 2
        if classes:
            sc[:, classes:] = 0
        out[f"cls_pred_stride_{s}"] = (np.round(sc * grid) / grid if grid else sc).astype(np.float32)
        out[f"dis_pred_stride_{s}"] = rng.normal(0, 2, (h * w, 4 * (cfg.reg_max + 1))).astype(np.float32)
    return out


def found(dets) -> set:
    return {(d.source, d.label) for d in dets}


def statuses(st) -> tuple[set, set]:
    ins = {(k[:2], k[2]) for k, (v, _) in st.entries.items() if v == IN}
    maybe = {(k[:2], k[2]) for k, (v, _) in st.entries.items() if v == MAYBE}
    return ins, maybe


def perturbed(out, rng, score: float, dist: float, corners: bool) -> dict:
    """Outputs moved by up to the bounds (just inside them, so float32 rounding cannot step outside); ``corners``:
    every value moves by the full bound, up or down (what flips decisions most)."""
    def noise(shape):
        return rng.choice([-1.0, 1.0], shape) if corners else rng.uniform(-1, 1, shape)
    return {k: (v + noise(v.shape) * (score if k.startswith("cls") else dist) * 0.999).astype(np.float32)
            for k, v in out.items()}


@pytest.mark.parametrize("grid,classes,score,dist", [(None, None, 2e-4, 5e-3), (400, None, 1e-5, 1e-4),
                                                     (2000, None, 1e-3, 1e-3), (None, 1, 1e-3, 1e-2),
                                                     (1000, 2, 1e-4, 1e-3)])
def test_in_and_out_hold_for_every_perturbation_within_the_bounds(cfg, grid, classes, score, dist):
    rng = np.random.default_rng(11)
    out = dense_outputs(cfg, rng, grid, classes)
    ins, maybe = statuses(stability(out, cfg, Bounds(score, {s: dist for s in cfg.strides})))
    base = found(decode(out, cfg))
    assert ins <= base <= ins | maybe
    flips = 0
    for k in range(8):
        dets = found(decode(perturbed(out, rng, score, dist, corners=k % 2 == 1), cfg))
        assert ins <= dets, "a detection called certain vanished"
        assert dets <= ins | maybe, "a detection called impossible appeared"
        flips += len(dets ^ base)
    assert flips > 0  # the bounds are wide enough for decisions to flip: the check is not vacuous


def quiet(cfg) -> dict:
    out = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        out[f"cls_pred_stride_{s}"] = np.zeros((h * w, cfg.num_classes), np.float32)
        out[f"dis_pred_stride_{s}"] = np.zeros((h * w, 4 * (cfg.reg_max + 1)), np.float32)
    return out


def two_boxes(cfg, scores, bins: int) -> dict:
    """Class 3 at neighbouring stride-16 points 300 and 301 (16 px apart), boxes ``bins`` strides a side: IoU
    (2 bins - 1) / (2 bins + 1): 0.6 for 2 bins (the NMS threshold), 0.71 for 3."""
    out = quiet(cfg)
    z = np.full(cfg.reg_max + 1, -8.0, np.float32)
    z[bins] = 8.0
    for point, score in zip((300, 301), scores):
        out["cls_pred_stride_16"][point, 3] = score
        out["dis_pred_stride_16"][point] = np.tile(z, 4)
    return out


def test_doubtful_suppressions_are_maybe(cfg):
    """The lower box of an overlapping pair is OUT only when the suppression is certain: not when the scores are
    within 2 x the score bound (the order may flip), nor when the IoU may fall on either side of nms_iou."""
    bounds = Bounds(1e-6, {s: 1e-4 for s in cfg.strides})
    lower = (16, 301, 3)
    assert stability(two_boxes(cfg, (0.7 + 1e-6, 0.7), 3), cfg, bounds).of(lower[:2], 3) == (MAYBE, "nms")
    assert stability(two_boxes(cfg, (0.7 + 1e-5, 0.7), 3), cfg, bounds).of(lower[:2], 3)[0] == OUT
    assert stability(two_boxes(cfg, (0.9, 0.5), 2), cfg, bounds).of(lower[:2], 3) == (MAYBE, "nms")
    assert stability(two_boxes(cfg, (0.9, 0.5), 1), cfg, bounds).of(lower[:2], 3) == (IN, None)  # IoU 1/3


def test_zero_bounds_reproduce_the_decoder(cfg):
    rng = np.random.default_rng(2)
    for grid in (None, 50):
        out = dense_outputs(cfg, rng, grid)
        ins, maybe = statuses(stability(out, cfg, Bounds(0.0, {s: 0.0 for s in cfg.strides})))
        base = found(decode(out, cfg))
        assert ins <= base <= ins | maybe
        assert len(maybe) <= 2  # only IoUs within float32 rounding of nms_iou can be doubtful


def test_box_move_bounds_every_coordinate_and_is_reached(cfg):
    rng = np.random.default_rng(4)
    bins = cfg.reg_max + 1
    for delta in (1e-5, 1e-3, 0.05):
        logits = rng.normal(0, 4, (169, 4 * bins)).astype(np.float32)
        moved = (logits + rng.uniform(-delta, delta, logits.shape)).astype(np.float32)
        real = np.abs(moved.astype(np.float64) - logits).max()
        bound = box_move(Bounds(0.0, {32: real}), 32, cfg.reg_max, cfg.input_size)
        a = level_boxes(logits, 32, cfg.input_size, cfg.reg_max, cfg.prior_offset).astype(np.float64)
        assert np.abs(a - level_boxes(moved, 32, cfg.input_size, cfg.reg_max, cfg.prior_offset)).max() <= bound
    # the worst case: half the mass on bin 0, half on bin reg_max, moved apart: the bound is (nearly) reached
    delta = 1e-3
    worst = np.full((169, 4 * bins), -30.0, np.float32)
    worst[:, 0::bins] = worst[:, cfg.reg_max::bins] = 0.0
    pushed = worst.copy()
    pushed[:, 0::bins] -= delta
    pushed[:, cfg.reg_max::bins] += delta
    bound = box_move(Bounds(0.0, {32: delta}), 32, cfg.reg_max, cfg.input_size)
    a = level_boxes(worst, 32, cfg.input_size, cfg.reg_max, cfg.prior_offset).astype(np.float64)
    b = level_boxes(pushed, 32, cfg.input_size, cfg.reg_max, cfg.prior_offset)
    inside = (a > 0).all(axis=1) & (a < 416).all(axis=1)  # clipping would hide the move
    assert 0.95 * bound < np.abs(a - b)[inside].max() <= bound


def test_iou_bounds_bracket_moved_boxes():
    rng = np.random.default_rng(8)
    for move in (1e-3, 0.5, 5.0):
        xy = rng.uniform(0, 300, (200, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 80, (200, 2))], 1)
        lo, hi = iou_bounds(boxes[0], move, boxes[1:], np.full(199, move))
        for _ in range(20):
            shaken = boxes + rng.uniform(-move, move, boxes.shape)
            iou = pairwise_iou(shaken[:1], shaken[1:])[0]
            assert np.all(lo <= iou) and np.all(iou <= hi)

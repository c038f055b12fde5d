"""The shared decoder learns NanoDet-Plus's post-processing from the config alone (``Config.prior_offset`` and the
head's default ``nms_pre``, both from ``nanodet_ref.config.HEAD_DECODING``): centre priors at (col * stride,
row * stride) on 4 levels (416 -> 52/26/13/7), every point to NMS; the legacy head keeps (col + 0.5) * stride and
its per-level top 1000. ``decode_margins`` boxes the same points as the decoder."""
from __future__ import annotations

import numpy as np
import pytest

from nanodet_ref.config import load_config
from nanodet_ref.decode import candidates, decode
from nanodet_ref.decode_margins import IN, Bounds, stability


def outputs(cfg, rng, dist_logits=None, classes=None) -> dict:
    """Random scores per level (only the first ``classes`` classes score: crowded same-class NMS); distance logits
    random, or all mass on one bin (``dist_logits`` [bins])."""
    bins = cfg.reg_max + 1
    out = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        sc = rng.random((h * w, cfg.num_classes)) ** 2
        if classes:
            sc[:, classes:] = 0
        out[f"cls_pred_stride_{s}"] = sc.astype(np.float32)
        di = rng.normal(0, 2, (h * w, 4 * bins)) if dist_logits is None else np.tile(dist_logits, (h * w, 4))
        out[f"dis_pred_stride_{s}"] = di.astype(np.float32)
    return out


@pytest.mark.parametrize("name,offset,sizes", [("plus-m-416", 0.0, [52, 26, 13, 7]),
                                               ("plus-m-320", 0.0, [40, 20, 10, 5]),
                                               ("m-416", 0.5, [52, 26, 13])])
def test_priors_follow_the_head(name, offset, sizes):
    """Zero distances (all mass on bin 0): every candidate box collapses onto its point's centre, which sits at
    ((col + offset) * stride, (row + offset) * stride)."""
    cfg = load_config(name)
    assert [h for h, _ in cfg.feature_sizes()] == [w for _, w in cfg.feature_sizes()] == sizes
    zero = np.full(cfg.reg_max + 1, -1000.0)  # exp underflows to exactly 0 past bin 0
    zero[0] = 0.0
    cand = candidates(outputs(cfg, np.random.default_rng(0), zero), cfg)
    w = dict(zip(cfg.strides, (fw for _, fw in cfg.feature_sizes())))
    cols = np.array([p % w[s] for s, p in zip(cand.strides, cand.points)])
    rows = np.array([p // w[s] for s, p in zip(cand.strides, cand.points)])
    centre_x = np.minimum((cols + offset) * cand.strides, cfg.input_size[0])  # boxes are clipped to the input
    centre_y = np.minimum((rows + offset) * cand.strides, cfg.input_size[1])
    assert np.array_equal(cand.boxes[:, 0], centre_x) and np.array_equal(cand.boxes[:, 2], centre_x)
    assert np.array_equal(cand.boxes[:, 1], centre_y) and np.array_equal(cand.boxes[:, 3], centre_y)


@pytest.mark.parametrize("name,points", [("plus-m-416", 2704 + 676 + 169 + 49), ("plus-m-320", 1600 + 400 + 100 + 25),
                                         ("m-416", 1000 + 676 + 169)])
def test_points_that_reach_nms(name, points):
    """NanoDet-Plus sends every point of every level to NMS; the legacy head only its best 1000 per level."""
    cfg = load_config(name)
    assert len(candidates(outputs(cfg, np.random.default_rng(1)), cfg).boxes) == points


@pytest.mark.parametrize("name", ["plus-m-416", "m-416"])
def test_margins_with_zero_bounds_reproduce_the_decoder(name):
    """With nothing allowed to move, ``decode_margins`` calls exactly the decoded detections IN and nothing
    MAYBE: it builds its boxes around the same priors and takes the same points (one scoring class: every
    decision is a same-class NMS one, where boxes of different levels and clipped boxes meet)."""
    cfg = load_config(name)
    for seed in range(3):
        out = outputs(cfg, np.random.default_rng(seed), classes=1)
        st = stability(out, cfg, Bounds(0.0, {s: 0.0 for s in cfg.strides}))
        decoded = {(d.source, d.label) for d in decode(out, cfg)}
        assert len(decoded) == cfg.decode["max_detections"]
        assert {(k[:2], k[2]) for k, (v, _) in st.entries.items()} == decoded
        assert all(v == IN for v, _ in st.entries.values())

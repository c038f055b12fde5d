"""validation/bench/layer_split.py on the kernel records of js/run_graph_model.mjs --profile 1 (a real TFJS run)."""
from __future__ import annotations

import numpy as np
import pytest

from validation.bench.layer_split import conv_layers, kernel_macs


def test_kernel_records_attribute_the_peers_conv_time_to_its_layers(shared):
    """The peer (NanoDet-m 416 without dead-channel pruning) profiled twice: every kernel call is recorded with
    its shapes, the records add up to the per-type split, and the conv rows carry the network's multiply-adds:
    the stem conv 416 -> 208 (3x3, 3 -> 24 channels) first, 578.4 M in all."""
    from validation.runners.tfjs_node import run_tfjs_graph

    model = shared / "reference" / "vladmandic-nanodet-m" / "nanodet-m.json"
    feeds = [{"input_1": np.zeros((1, 3, 416, 416), np.float32)}] * 2
    _, meta = run_tfjs_graph(model, feeds, profile=True, return_meta=True)
    runs = meta["kernel_records"]
    assert len(runs) == 2 and len(runs[0]) == len(runs[1]) > 100
    for records, per_type in zip(runs, meta["kernel_ms"]):
        for name, ms in per_type.items():
            assert sum(r["ms"] for r in records if r["name"] == name) == pytest.approx(ms)
    rows = conv_layers(runs)
    assert len(rows) == sum(1 for r in runs[0] if kernel_macs(r) is not None) == 73
    stem = rows[0]
    assert (stem["output"], stem["filter"], stem["macs"]) == ([1, 208, 208, 24], [3, 3, 3, 24], 208 * 208 * 24 * 27)
    assert sum(r["macs"] for r in rows) == 578_357_208
    assert all(r["min_ms"] <= r["median_ms"] and r["gmacs_per_s"] > 0 for r in rows)


def test_depthwise_multiply_adds_count_one_input_channel_per_output():
    """A depthwise 3x3 on 58 channels at 52 x 52 does 9 multiply-adds per output, a 1x1 conv 58 -> 57 does 58."""
    dw = {"name": "DepthwiseConv2dNative", "input_shapes": [[1, 106, 106, 58], [3, 3, 58, 1]],
          "output_shapes": [[1, 52, 52, 58]], "ms": 0.3}
    pw = {"name": "FusedConv2D", "input_shapes": [[1, 52, 52, 58], [1, 1, 58, 57], [57]],
          "output_shapes": [[1, 52, 52, 57]], "ms": 0.6}
    assert kernel_macs(dw) == 52 * 52 * 58 * 9
    assert kernel_macs(pw) == 52 * 52 * 57 * 58
    assert kernel_macs({"name": "Transpose", "input_shapes": [[2, 8]], "output_shapes": [[8, 2]], "ms": 0.1}) is None

"""The onnx2tf SavedModel backend (converters/backend_onnx2tf.py) and the bench's artifact readers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from converters import backend_onnx2tf
from nanodet_ref.errors import UserError
from validation import bench


def test_missing_onnx_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        backend_onnx2tf.to_saved_model(tmp_path / "nope.onnx", tmp_path / "sm", None)


def test_match_outputs_finds_transposed_outputs_and_refuses_wrong_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, 20, 8)).astype(np.float32), rng.normal(size=(1, 20, 8)).astype(np.float32)
    mapping, diffs = backend_onnx2tf._match_outputs({"x": a, "y": b}, {"output_0": b, "output_1": a.transpose(0, 2, 1)})
    assert mapping == {"x": ("output_1", [0, 2, 1]), "y": ("output_0", None)} and max(diffs.values()) == 0
    with pytest.raises(RuntimeError, match="reproduces 'x'"):
        backend_onnx2tf._match_outputs({"x": a}, {"output_0": a + 0.1})


class _TinyDetector(nn.Module):
    """NCHW image in, two [1, HW, C] outputs like the model signature."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)

    def forward(self, x):
        y = nn.functional.leaky_relu(self.conv(x), 0.1)
        y = self.dw(y)
        flat = y.flatten(2).permute(0, 2, 1)
        return flat[..., :5].sigmoid(), flat[..., 5:]


@pytest.mark.slow
def test_onnx2tf_saved_model_has_the_signature_and_matches_onnxruntime(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    torch.manual_seed(0)
    model = _TinyDetector().eval()
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.from_numpy(x), str(onnx_path), dynamo=False, opset_version=10,
                      input_names=["input"], output_names=["cls_pred_stride_8", "dis_pred_stride_8"])
    before = onnx_path.read_bytes()
    spec = backend_onnx2tf.to_saved_model(onnx_path, tmp_path / "saved_model", None)
    assert onnx_path.read_bytes() == before  # onnx2tf got a copy
    assert spec["input"] == {"name": "input", "layout": "NHWC"}
    assert spec["outputs"] == {"cls_pred_stride_8": "cls_pred_stride_8", "dis_pred_stride_8": "dis_pred_stride_8"}
    fn = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    got = {k: v.numpy() for k, v in fn(input=tf.constant(x.transpose(0, 2, 3, 1))).items()}
    want = dict(zip(["cls_pred_stride_8", "dis_pred_stride_8"],
                    ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})))
    for name in want:
        assert got[name].shape == want[name].shape == (1, 256, 5 if name.startswith("cls") else 3)
        assert float(np.abs(got[name] - want[name]).max()) < 1e-4
    check = json.loads((tmp_path / "saved_model" / backend_onnx2tf.REPORT_FILE).read_text())
    assert set(check["max_abs_diff_vs_onnxruntime"]) == set(want)
    assert not list(tmp_path.glob("onnx2tf-*"))  # its temp working folder is gone


def test_bench_reads_the_peer_artifact(shared):
    mj = shared / "reference" / "vladmandic-nanodet-m" / "nanodet-m.json"
    assert bench.tfjs_size(mj) == 2_148_517
    ops = bench.op_counts(mj)
    assert ops["Transpose"] == 138 and ops["Conv2D"] == 48 and ops["ResizeBilinear"] == 4

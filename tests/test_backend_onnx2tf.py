"""The onnx2tf SavedModel backend (converters/backend_onnx2tf.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from converters import backend_onnx2tf
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


def test_grouped_convs_flags_grouped_conv2d_but_not_depthwise():
    """The guard the subprocess runs on its final SavedModel: a Conv2D whose filter depth (1) is not the input's
    channel count (4) is what TFJS rejects; a DepthwiseConv2dNative or a plain Conv2D is fine."""
    import tensorflow as tf

    w_grouped = tf.Variable(np.ones((3, 3, 1, 4), np.float32))
    w_dw = tf.Variable(np.ones((3, 3, 4, 1), np.float32))
    w_plain = tf.Variable(np.ones((1, 1, 4, 4), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32)])
    def grouped(x):
        return tf.nn.conv2d(x, w_grouped, 1, "SAME", name="grouped")

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32)])
    def fine(x):
        return tf.nn.conv2d(tf.nn.depthwise_conv2d(x, w_dw, [1, 1, 1, 1], "SAME"), w_plain, 1, "SAME")

    found = backend_onnx2tf.grouped_convs(grouped.get_concrete_function())
    assert len(found) == 1 and "grouped" in found[0] and "input 4 channels, filter depth 1" in found[0]
    assert backend_onnx2tf.grouped_convs(fine.get_concrete_function()) == []


class _TinyDetector(nn.Module):
    """NCHW image in, two [1, HW, C] outputs like the model signature. The depthwise conv reads the output of a
    4-D channel shuffle (patches/channel_shuffle_4d.py), which onnx2tf 1.29.24 keeps in NCHW; without
    ``_nchw_depthwise_inputs_fixed`` it becomes a grouped Conv2D (filter [3, 3, 1, 8]) that TFJS cannot run."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8)

    def forward(self, x):
        y = nn.functional.leaky_relu(self.conv(x), 0.1)
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h * w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle, 4-D
        y = self.dw(y)
        flat = y.flatten(2).permute(0, 2, 1)
        return flat[..., :5].sigmoid(), flat[..., 5:]


@pytest.mark.slow
def test_onnx2tf_saved_model_has_the_signature_matches_onnxruntime_and_runs_in_tfjs(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    from validation.runners.tfjs_node import run_tfjs_graph

    torch.manual_seed(0)
    model = _TinyDetector().eval()
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    onnx_path = tmp_path / "m.onnx"
    names = ["cls_pred_stride_8", "dis_pred_stride_8"]
    torch.onnx.export(model, torch.from_numpy(x), str(onnx_path), dynamo=False, opset_version=10,
                      input_names=["input"], output_names=names)
    before = onnx_path.read_bytes()
    spec = backend_onnx2tf.to_saved_model(onnx_path, tmp_path / "saved_model", None)
    assert onnx_path.read_bytes() == before  # onnx2tf got a copy
    assert spec["input"] == {"name": "input", "layout": "NHWC"}
    assert spec["outputs"] == {n: n for n in names}
    fn = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    got = {k: v.numpy() for k, v in fn(input=tf.constant(x.transpose(0, 2, 3, 1))).items()}
    want = dict(zip(names, ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
                    .run(None, {"input": x})))
    for name in want:
        assert got[name].shape == want[name].shape == (1, 64, 5 if name.startswith("cls") else 3)
        assert float(np.abs(got[name] - want[name]).max()) < 1e-4
    check = json.loads((tmp_path / "saved_model" / backend_onnx2tf.REPORT_FILE).read_text())
    assert set(check["max_abs_diff_vs_onnxruntime"]) == set(want)
    # the depthwise conv after the shuffle is the one onnx2tf would have emitted as a grouped Conv2D
    assert len(check["depthwise_convs_given_nhwc_input"]) == 1 and "dw" in check["depthwise_convs_given_nhwc_input"][0]
    assert not list(tmp_path.glob("onnx2tf-*"))  # its temp working folder is gone

    # the real proof: tensorflowjs' converter, then TFJS itself (Node, wasm) runs it and agrees with onnxruntime
    tfjs_dir = tmp_path / "tfjs"
    r = subprocess.run([sys.executable, "-m", "converters.tfjs_entry", "--input_format=tf_saved_model",
                        str(tmp_path / "saved_model"), str(tfjs_dir)], cwd=PROJECT_ROOT,
                       env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ops = bench.op_counts(tfjs_dir / "model.json")
    assert ops["DepthwiseConv2dNative"] + ops["FusedDepthwiseConv2dNative"] == 1
    sig = json.loads((tfjs_dir / "model.json").read_text())["signature"]["outputs"]
    wanted = [sig[n]["name"] for n in names]
    (res,) = run_tfjs_graph(tfjs_dir / "model.json", [{"input": x.transpose(0, 2, 3, 1).copy()}], wanted, "wasm")
    for name, tfjs_name in zip(names, wanted):
        assert res[tfjs_name].shape == want[name].shape
        assert float(np.abs(res[tfjs_name] - want[name]).max()) < 1e-4, name

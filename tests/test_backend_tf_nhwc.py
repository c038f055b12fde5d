"""The tf_nhwc SavedModel backend (converters/backend_tf_nhwc.py, the package converters/tf_nhwc/).

Each op test builds a tiny ONNX graph, translates it (traced tf.function, no SavedModel written) and compares the
TF result on NHWC input with onnxruntime on the same NCHW input. The slow test takes the session's real m-416
ONNX through this backend and tensorflowjs, and runs the TFJS model in Node against onnxruntime.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contracts.errors import UserError
from converters import backend_tf_nhwc as B
from converters.tf_nhwc import layout as L

RNG = np.random.default_rng(0)


def make_model(nodes, in_shape, outputs, inits=(), opset=10):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_both(tmp_path, model, in_shape, graph=None):
    """(TF outputs, onnxruntime outputs, traced graph op types) for one random input; ``graph``, a list, gets
    the traced TF graph's operations."""
    import onnxruntime as ort
    import tensorflow as tf

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = RNG.normal(size=in_shape).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    want = dict(zip(names, sess.run(names, {"input": x})))
    module, _, _ = B.build_module(path)
    fn = module.serve.get_concrete_function()
    got = {k: v.numpy() for k, v in fn(tf.constant(x.transpose(0, 2, 3, 1))).items()}
    ops = [n.type for n in fn.graph.get_operations()]
    if graph is not None:
        graph.extend(fn.graph.get_operations())
    return got, want, ops


def assert_close(got, want, tol=1e-5):
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        assert np.abs(got[name] - w).max() <= tol, (name, float(np.abs(got[name] - w).max()))


def conv(name, x, w, out, **attrs):
    return helper.make_node("Conv", [x, w + "_w", w + "_b"], [out], name=name, **attrs)


@pytest.mark.parametrize("group", [1, 6])
def test_stride2_conv_with_symmetric_padding_on_even_input(tmp_path, group):
    """ONNX pads (1,1) where TF 'SAME' would pad (0,1): must become explicit padding, not SAME."""
    w = RNG.normal(size=(6, 6 // group, 3, 3)).astype(np.float32)
    b = RNG.normal(size=6).astype(np.float32)
    nodes = [conv("c", "input", "c", "y0", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=group),
             helper.make_node("LeakyRelu", ["y0"], ["y"], alpha=0.1)]
    got, want, ops = run_both(tmp_path, make_model(nodes, [1, 6, 8, 8], ["y"], [("c_w", w), ("c_b", b)]), [1, 6, 8, 8])
    assert_close(got, want)
    assert ops.count("Transpose") == 1  # only the 4-D graph output back to NCHW; none around the conv


def _tfjs_weights(tfjs_dir) -> tuple[list, dict]:
    """(model.json nodes, {weight name: float32 array}) of a float32 TFJS graph model."""
    import json
    model = json.loads((tfjs_dir / "model.json").read_text())
    data = b"".join((tfjs_dir / p).read_bytes() for g in model["weightsManifest"] for p in g["paths"])
    weights, at = {}, 0
    for w in model["weightsManifest"][0]["weights"]:
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        assert w["dtype"] in ("float32", "int32"), w
        weights[w["name"]] = np.frombuffer(data, np.dtype(w["dtype"]), n, at).reshape(w["shape"])
        at += 4 * n
    return model["modelTopology"]["node"], weights


def test_padded_depthwise_bias_is_safe_for_tensorflow_and_free_in_tfjs(tmp_path):
    """Stride-2 depthwise with ONNX pads (1, 1) on an even input (6 in NanoDet-m) and a bias: the SavedModel holds
    no DepthwiseConv2dNative EXPLICIT -> BiasAdd/Add (converters.tf_graph_hazards: TF aborts on it on AVX-512
    hosts) but a unit FusedBatchNormV3; tensorflowjs turns it into the node the BiasAdd gave: one
    FusedDepthwiseConv2dNative with BiasAdd + Prelu and the explicit paddings, kernel and bias bit-exact, no Pad.
    Runs nothing in TF (the same on every CPU)."""
    import base64
    import contextlib
    import io

    import tensorflow as tf

    from converters.stage_tfjs import count_ops
    from contracts.tf_environment import import_tensorflowjs
    from converters.tf_graph_hazards import saved_model_hazards

    w = RNG.normal(size=(6, 1, 3, 3)).astype(np.float32)
    b = RNG.normal(size=6).astype(np.float32)
    nodes = [conv("c", "input", "c", "y0", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=6),
             helper.make_node("LeakyRelu", ["y0"], ["y"], alpha=0.1)]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, [1, 6, 8, 8], ["y"], [("c_w", w), ("c_b", b)]), str(path))
    module, _, _ = B.build_module(path)
    saved = tmp_path / "saved_model"
    tf.saved_model.save(module, str(saved), signatures={B.SIGNATURE: module.serve.get_concrete_function()})
    assert saved_model_hazards(saved) == []
    assert count_ops(saved, ("FusedBatchNormV3",)) >= 1 and count_ops(saved, ("BiasAdd",)) == 0

    import_tensorflowjs()
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model
    with contextlib.redirect_stdout(io.StringIO()):
        convert_tf_saved_model(str(saved), str(tmp_path / "tfjs"), signature_def="serving_default",
                               saved_model_tags="serve")
    nodes, weights = _tfjs_weights(tmp_path / "tfjs")
    ops = [n["op"] for n in nodes if n["op"] not in ("Const", "Placeholder")]
    assert ops == ["FusedDepthwiseConv2dNative", "Transpose", "Identity"], ops   # Transpose: the NCHW output
    fused = next(n for n in nodes if n["op"] == "FusedDepthwiseConv2dNative")
    assert [base64.b64decode(s).decode() for s in fused["attr"]["fused_ops"]["list"]["s"]] == ["BiasAdd", "Prelu"]
    assert [int(i) for i in fused["attr"]["explicit_paddings"]["list"]["i"]] == [0, 0, 1, 1, 1, 1, 0, 0]
    kernel, bias = (weights[name.split(":")[0]] for name in fused["input"][1:3])
    assert np.array_equal(kernel, w.reshape(6, 1, 3, 3).transpose(2, 3, 0, 1))   # HWC1, scaled by exactly 1
    assert np.array_equal(bias, b)


def test_stride1_and_odd_input_convs_use_same_padding(tmp_path):
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = np.zeros(4, np.float32)
    nodes = [conv("a", "input", "c", "y", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])]
    got, want, ops = run_both(tmp_path, make_model(nodes, [1, 3, 9, 9], ["y"], [("c_w", w), ("c_b", b)]), [1, 3, 9, 9])
    assert_close(got, want)


def test_maxpool_padding_is_minus_infinity_not_zero(tmp_path):
    """All-negative input: zero padding would show up as 0 at the border; ONNX ignores padded cells."""
    nodes = [helper.make_node("Mul", ["input", "m"], ["n"]), helper.make_node("Add", ["n", "s"], ["n2"]),
             helper.make_node("MaxPool", ["n2"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])]
    model = make_model(nodes, [1, 4, 8, 8], ["y"], [("m", np.float32(0.1)), ("s", np.float32(-10.0))])
    got, want, _ = run_both(tmp_path, model, [1, 4, 8, 8])
    assert want["y"].max() < 0
    assert_close(got, want)


def _shuffle_nodes(c2, h, w, n=1, extra_user=False):
    nodes = [
        helper.make_node("Split", ["input"], ["a", "b"], axis=1, split=[c2, c2]),
        helper.make_node("Sigmoid", ["b"], ["bs"]),
        helper.make_node("Concat", ["a", "bs"], ["cat"], axis=1),
        helper.make_node("Reshape", ["cat", "s1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["t", "s2"], ["r2"]),
        helper.make_node("Split", ["r2"], ["y1", "y2"], axis=1, split=[c2, c2]),
    ]
    outputs = ["y1", "y2"]
    if extra_user:  # the concat's result read by something else too: the shuffle cannot swallow it
        nodes.append(helper.make_node("Relu", ["cat"], ["y3"]))
        outputs.append("y3")
    inits = [("s1", np.array([n, 2, c2, h * w], np.int64)), ("s2", np.array([n, 2 * c2, h, w], np.int64))]
    return make_model(nodes, [n, 2 * c2, h, w], outputs, inits)


def _concat_axes(graph) -> list[int]:
    import tensorflow as tf
    return [int(tf.get_static_value(op.inputs[-1])) for op in graph if op.type == "ConcatV2"]


def test_channel_shuffle_and_split_pattern(tmp_path):
    """ShuffleNet: Concat, Reshape [N,2,C/2,HW], Transpose [0,2,1,3], Reshape [N,C,H,W], Split in halves.
    Concat + shuffle become one outer-axis concat ([2, ...], two block copies) and one 2-D transpose."""
    c2, h, w = 6, 4, 5
    graph = []
    got, want, ops = run_both(tmp_path, _shuffle_nodes(c2, h, w), [1, 2 * c2, h, w], graph)
    assert_close(got, want)
    assert ops.count("Transpose") == 3  # the shuffle's own + the two 4-D graph outputs back to NCHW
    assert _concat_axes(graph) == [0]
    shuffle = [op for op in graph if op.type == "Transpose" and op.outputs[0].shape.rank == 2]
    assert [op.outputs[0].shape.as_list() for op in shuffle] == [[h * w * c2, 2]]
    # both halves Splits: a 1x1 max pool and a half-pixel nearest resize each (C++ in TFJS wasm), no Slice copy
    assert "Slice" not in ops and "SplitV" not in ops and ops.count("ResizeNearestNeighbor") == 2


@pytest.mark.parametrize("case", ["batch2", "extra_user"])
def test_channel_shuffle_outside_the_pattern_takes_the_plain_path(tmp_path, case):
    """Batch 2, or the concat's result read elsewhere too: channel concat + transpose as before, still exact."""
    c2, h, w = 4, 3, 5
    n = 2 if case == "batch2" else 1
    graph = []
    model = _shuffle_nodes(c2, h, w, n=n, extra_user=case == "extra_user")
    got, want, _ = run_both(tmp_path, model, [n, 2 * c2, h, w], graph)
    assert_close(got, want)
    assert _concat_axes(graph) == [3]


def test_head_pattern_needs_no_transpose(tmp_path):
    """Conv -> Split [cls, reg] -> Sigmoid -> Reshape [N,C,-1] -> Transpose [0,2,1]: in NHWC only reshapes,
    and the Split becomes one conv per part."""
    w = RNG.normal(size=(7, 4, 1, 1)).astype(np.float32)
    b = RNG.normal(size=7).astype(np.float32)
    nodes = [conv("g", "input", "g", "head"),
             helper.make_node("Split", ["head"], ["cls", "reg"], axis=1, split=[5, 2]),
             helper.make_node("Sigmoid", ["cls"], ["cs"]),
             helper.make_node("Reshape", ["cs", "s5"], ["r1"]), helper.make_node("Transpose", ["r1"], ["out_cls"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["reg", "s2"], ["r2"]), helper.make_node("Transpose", ["r2"], ["out_reg"], perm=[0, 2, 1])]
    inits = [("g_w", w), ("g_b", b), ("s5", np.array([1, 5, -1], np.int64)), ("s2", np.array([1, 2, -1], np.int64))]
    got, want, ops = run_both(tmp_path, make_model(nodes, [1, 4, 6, 3], ["out_cls", "out_reg"], inits), [1, 4, 6, 3])
    assert_close(got, want)
    assert "Transpose" not in ops and "Split" not in ops and "SplitV" not in ops
    assert got["out_cls"].shape == (1, 18, 5)


def test_pan_resampling_ops(tmp_path):
    """Resize nearest x2, depthwise 3x3 without bias, Mul by a constant map, AveragePool 2x2, Add."""
    c, h = 3, 4
    k = np.tile((np.outer([1, 2, 1], [1, 2, 1]) / 16.0).astype(np.float32), (c, 1, 1, 1))
    edge = RNG.uniform(1, 2, size=(1, 1, 2 * h, 2 * h)).astype(np.float32)
    nodes = [helper.make_node("Resize", ["input", "sc"], ["u"], mode="nearest"),
             helper.make_node("Conv", ["u", "k"], ["uc"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c),
             helper.make_node("Mul", ["uc", "edge"], ["um"]),
             helper.make_node("AveragePool", ["um"], ["d"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Add", ["d", "input"], ["y"])]
    inits = [("sc", np.array([1, 1, 2, 2], np.float32)), ("k", k), ("edge", edge)]
    got, want, _ = run_both(tmp_path, make_model(nodes, [1, c, h, h], ["y"], inits), [1, c, h, h])
    assert_close(got, want)


def test_unsupported_op_is_refused_naming_the_node(tmp_path):
    nodes = [helper.make_node("Tanh", ["input"], ["y"], name="my_tanh")]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, [1, 3, 4, 4], ["y"]), str(path))
    with pytest.raises(UserError, match="my_tanh.*Tanh.*not supported"):
        B.build_module(path)


def test_unsupported_attribute_is_refused(tmp_path):
    nodes = [helper.make_node("MaxPool", ["input"], ["y"], name="ceil_pool", kernel_shape=[2, 2], strides=[2, 2],
                              ceil_mode=1)]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, [1, 3, 5, 5], ["y"], opset=11), str(path))
    with pytest.raises(UserError, match="ceil_pool.*ceil_mode"):
        B.build_module(path)


def test_plan_reshape_is_a_plain_reshape_only_where_memory_order_allows():
    nhwc = (0, 2, 3, 1)
    assert L.plan_reshape((1, 6, 2, 3), nhwc, (1, 6, 6)) == (None, (0, 2, 1))        # head: [N,C,HW] as [N,HW,C]
    assert L.plan_reshape((1, 6, 2, 3), nhwc, (1, 2, 3, 6)) == (None, (0, 3, 1, 2))  # shuffle step 1
    pre, out = L.plan_reshape((1, 3, 2, 6), (0, 3, 2, 1), (1, 6, 2, 3))               # shuffle step 3
    assert pre is not None and out == nhwc


@pytest.mark.slow
def test_m416_through_tf_nhwc_and_tfjs_matches_onnxruntime(shared, converted_m416, tmp_path):
    """The real m-416 graph: SavedModel via this backend, TFJS via tensorflowjs, TFJS run in Node (wasm)."""
    import json
    import shutil

    import onnxruntime as ort

    from contracts.tf_environment import import_tensorflowjs
    from nanodet_ref.config import load_config
    from nanodet_ref.preprocess import preprocess_file
    from validation.runners.tfjs_node import run_tfjs_graph

    onnx_path = tmp_path / "model.sim.onnx"
    shutil.copyfile(converted_m416 / "model.sim.onnx", onnx_path)
    cfg = load_config("m-416")
    spec = B.to_saved_model(onnx_path, tmp_path / "saved_model", cfg)
    assert spec["input"] == {"name": "input", "layout": "NHWC", "shape": [1, 416, 416, 3]}
    check = json.loads((tmp_path / "saved_model" / B.REPORT_FILE).read_text())
    assert max(check["max_rel_diff_vs_onnxruntime"].values()) < 1e-4

    import_tensorflowjs()
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model
    convert_tf_saved_model(str(tmp_path / "saved_model"), str(tmp_path / "tfjs"), signature_def="serving_default",
                           saved_model_tags="serve")
    model_json = json.loads((tmp_path / "tfjs" / "model.json").read_text())
    ops = [n["op"] for n in model_json["modelTopology"]["node"]]
    assert ops.count("_FusedConv2D") >= 48 and "LeakyRelu" not in ops and ops.count("Transpose") == 16
    assert "Slice" not in ops and ops.count("ResizeNearestNeighbor") == 15  # 13 shuffle halves + 2 in the PAN
    # the 6 padded stride-2 depthwise convs: a batch norm in the SavedModel (no graph that aborts TF), fused here
    # like the other 19 with a bias; the 2 bias-free PAN smoothing convs stay plain
    from converters.tf_graph_hazards import saved_model_hazards
    assert saved_model_hazards(tmp_path / "saved_model") == []
    assert ops.count("FusedDepthwiseConv2dNative") == 25 and ops.count("DepthwiseConv2dNative") == 2
    assert "FusedBatchNormV3" not in ops and "Pad" not in ops
    outs = model_json["signature"]["outputs"]

    image = sorted(shared.joinpath("data", "coco-val2017-40", "images").glob("*.jpg"))[0]
    x, _, _ = preprocess_file(image, cfg)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = list(spec["outputs"])
    want = dict(zip(names, sess.run(names, {"input": x})))
    (got,) = run_tfjs_graph(tmp_path / "tfjs" / "model.json", [{"input": x.transpose(0, 2, 3, 1).copy()}],
                            [outs[n]["name"] for n in names], "wasm")
    for n in names:
        g = got[outs[n]["name"]]
        assert g.shape == want[n].shape
        assert np.abs(g - want[n]).max() < 1e-4, (n, float(np.abs(g - want[n]).max()))

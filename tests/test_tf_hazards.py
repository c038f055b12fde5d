"""Graph patterns that abort TensorFlow (converters/tf_graph_hazards.py) and the form tf_nhwc emits instead.

``DepthwiseConv2dNative`` with ``padding=EXPLICIT`` feeding a ``BiasAdd`` aborts TensorFlow on x86 hosts where
oneDNN is on by default (AVX-512 ones): grappler fuses the pair into oneDNN's fused depthwise kernel, which fails a
Check. The static tests hold on every CPU (they read graphs, run nothing). The child-process test runs the pattern
under TF's defaults where an abort kills only the child, reports what happened on this host, and always requires
the form the backend emits to run to completion with results bit-equal to the BiasAdd form's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contracts.errors import ReportedError
from contracts.paths import PROJECT_ROOT
from converters import backend_tf_nhwc as B
from converters.tf_graph_hazards import GraphHazard, graph_def_hazards, refuse_hazards, saved_model_hazards

C, HW = 4, 8   # a NanoDet downsampling depthwise conv: 3x3, stride 2, pads (1, 1) on an even input
RNG = np.random.default_rng(7)
KERNEL = RNG.normal(size=(3, 3, C, 1)).astype(np.float32)   # HWC1
BIAS = RNG.normal(size=C).astype(np.float32)


def _depthwise(tf, x, padding="EXPLICIT"):
    return tf.raw_ops.DepthwiseConv2dNative(
        input=x, filter=tf.constant(KERNEL), strides=[1, 2, 2, 1], padding=padding,
        explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 0] if padding == "EXPLICIT" else [], dilations=[1, 1, 1, 1],
        data_format="NHWC", name="dw")


def _crafted(case: str):
    """A GraphDef with one conv and what follows it; built, never run."""
    import tensorflow as tf
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, HW, HW, C], name="x")
        b = tf.constant(BIAS)
        if case == "biasadd":
            tf.nn.bias_add(_depthwise(tf, x), b, name="bias")
        elif case == "identity_addv2":
            tf.add(tf.identity(tf.identity(_depthwise(tf, x))), b, name="bias")
        elif case == "add":
            tf.raw_ops.Add(x=_depthwise(tf, x), y=b, name="bias")
        elif case == "same_padding":
            tf.nn.bias_add(_depthwise(tf, x, "SAME"), b, name="bias")
        elif case == "conv2d_explicit":
            k = tf.constant(np.ones((3, 3, C, C), np.float32))
            y = tf.raw_ops.Conv2D(input=x, filter=k, strides=[1, 2, 2, 1], padding="EXPLICIT",
                                  explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 0], data_format="NHWC")
            tf.nn.bias_add(y, b, name="bias")
        elif case == "batch_norm":
            B.identity_batch_norm_bias(tf, _depthwise(tf, x), BIAS)
    return g.as_graph_def()


@pytest.mark.parametrize("case,hazard", [("biasadd", True), ("identity_addv2", True), ("add", True),
                                         ("same_padding", False), ("conv2d_explicit", False),
                                         ("batch_norm", False)])
def test_checker_finds_the_pattern_and_only_it(case, hazard):
    found = graph_def_hazards(_crafted(case))
    if hazard:
        assert len(found) == 1 and "dw (DepthwiseConv2dNative, padding EXPLICIT) -> bias" in found[0], found
    else:
        assert found == []


def _hazard_module(tf):
    class Hazard(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, HW, HW, C], tf.float32, name="input")])
        def serve(self, x):
            return {"y": tf.nn.bias_add(_depthwise(tf, x), tf.constant(BIAS))}
    return Hazard()


def test_a_hazardous_saved_model_is_refused_in_one_line(tmp_path):
    """In a SavedModel the pattern lives in the function library; refuse_hazards finds it there (nothing runs)
    and raises a one-line ReportedError (exit 1: our defect, not the user's input)."""
    import tensorflow as tf
    module = _hazard_module(tf)
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    found = saved_model_hazards(tmp_path / "sm")
    assert found and all(" function " in f for f in found), found
    with pytest.raises(GraphHazard) as info:
        refuse_hazards(tmp_path / "sm", "stage saved_model: backend demo")
    assert isinstance(info.value, ReportedError) and info.value.exit_code == 1
    message = str(info.value)
    assert "\n" not in message and message.startswith("stage saved_model: backend demo wrote a SavedModel with")
    assert "DepthwiseConv2dNative" in message and "aborts TensorFlow" in message


def depthwise_onnx(path: Path) -> Path:
    """The same conv as an ONNX graph (what the tf_nhwc backend translates)."""
    w = np.ascontiguousarray(KERNEL.transpose(2, 3, 0, 1))   # HWC1 -> C1HW
    node = helper.make_node("Conv", ["input", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            strides=[2, 2], group=C)
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, C, HW, HW])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(BIAS, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def save_tf_nhwc(onnx_path: Path, out: Path) -> Path:
    """The backend's SavedModel, saved without running it (to_saved_model runs it to check it)."""
    import tensorflow as tf
    module, _, _ = B.build_module(onnx_path)
    tf.saved_model.save(module, str(out), signatures={B.SIGNATURE: module.serve.get_concrete_function()})
    return out


# The child: ``biasadd`` runs DepthwiseConv2dNative EXPLICIT + BiasAdd under TF's defaults (it may abort);
# ``emitted`` runs the tf_nhwc SavedModel under TF's defaults, then the BiasAdd form with grappler's remapper off
# (a test-only reference that never reaches the fused kernel) and saves both results.
CHILD = """
import sys
import numpy as np
from contracts.stderr_filter import filtered_stderr
from contracts.tf_environment import RUNTIME_NOISE, import_tensorflow
tf = import_tensorflow()
mode, data = sys.argv[1], np.load(sys.argv[2])


@tf.function
def biasadd_form(t, k, b):
    y = tf.raw_ops.DepthwiseConv2dNative(input=t, filter=k, strides=[1, 2, 2, 1], padding="EXPLICIT",
                                         explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 0], dilations=[1, 1, 1, 1],
                                         data_format="NHWC")
    return tf.nn.bias_add(y, b)

with filtered_stderr(RUNTIME_NOISE, label=f"probe of the {mode} form"):   # TF's first device probe comes here
    x, k, b = (tf.constant(data[key]) for key in ("x", "k", "b"))
    if mode == "biasadd":
        biasadd_form(x, k, b).numpy()
    else:
        ours = tf.saved_model.load(sys.argv[3]).signatures["serving_default"](input=x)["y"].numpy()
        tf.config.optimizer.set_experimental_options({"remapping": False})
        np.savez(sys.argv[4], ours=ours, ref=biasadd_form(x, k, b).numpy())
print("completed")
"""


def _child(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_ENABLE_ONEDNN")}   # TF's defaults
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "AVX-512" if "avx512f" in flags else "no AVX-512"


def test_hazard_pattern_under_tensorflow_defaults_and_our_form_in_child_processes(tmp_path, record_property):
    import onnxruntime as ort

    x = RNG.normal(size=(1, HW, HW, C)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, k=KERNEL, b=BIAS)

    hazard = _child("biasadd", tmp_path / "in.npz")
    if hazard.returncode == -signal.SIGABRT:
        outcome = "aborted (SIGABRT)"
        # the fatal message reaches stderr through the noise filter, then one line naming the block
        assert "Check failed" in hazard.stderr, hazard.stderr[-2000:]
        assert hazard.stderr.strip().splitlines()[-1].startswith("error: probe of the biasadd form died"), hazard.stderr
    else:
        assert hazard.returncode == 0 and hazard.stdout.strip() == "completed", (hazard.returncode,
                                                                                hazard.stderr[-2000:])
        outcome = "completed (this host's TensorFlow does not fuse it into the failing kernel)"
        warnings.warn(f"DepthwiseConv2dNative EXPLICIT + BiasAdd did not abort TensorFlow here ({_cpu_flags()}); "
                      f"the abort is only seen on hosts with oneDNN's fused depthwise kernel")
    record_property("hazard_pattern_under_tf_defaults", f"{outcome} on {_cpu_flags()}")
    print(f"hazard pattern under TF defaults: {outcome} on {_cpu_flags()}")

    onnx_path = depthwise_onnx(tmp_path / "dw.onnx")
    saved = save_tf_nhwc(onnx_path, tmp_path / "saved_model")
    assert saved_model_hazards(saved) == []
    ours = _child("emitted", tmp_path / "in.npz", saved, tmp_path / "out.npz")
    assert ours.returncode == 0 and ours.stdout.strip() == "completed", (ours.returncode, ours.stderr[-2000:])
    assert not [line for line in ours.stderr.splitlines() if line.startswith("error:")], ours.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    got = out["ours"].transpose(0, 2, 3, 1)   # the SavedModel returns 4-D outputs in ONNX's NCHW
    assert got.shape == out["ref"].shape and np.array_equal(got, out["ref"])   # bit for bit: the bias is exact
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = sess.run(["y"], {"input": x.transpose(0, 3, 1, 2).copy()})[0]
    assert np.abs(out["ours"] - want).max() < 1e-5

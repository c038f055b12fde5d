"""The package behind ``--backend tf_nhwc`` (converters/tf_nhwc/): its place in the stage cache key, its op table,
its entry writing straight into the stage's folder, and its onnxruntime self-check.

The translations themselves are tested op by op in tests/test_backend_tf_nhwc.py.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contracts.paths import PROJECT_ROOT
from converters import backend_tf_nhwc as B
from converters.tf_nhwc.op_table import OPS, REWRITES


def test_stage_cache_key_covers_every_module_of_the_package():
    """An edit of any translation module must rebuild the saved_model stage, not reuse a stale one."""
    from converters import stage_saved_model
    ctx = SimpleNamespace(options=SimpleNamespace(backend="tf_nhwc"))
    files = {p.relative_to(PROJECT_ROOT).as_posix() for p in stage_saved_model.code_files(ctx)}
    package = {p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "converters" / "tf_nhwc").rglob("*.py")}
    assert {"converters/tf_nhwc/conv.py", "converters/tf_nhwc/speed_rewrites.py"} <= package
    assert package <= files and "converters/backend_tf_nhwc.py" in files


def test_every_speed_rewrite_has_an_exact_fallback():
    """A rewrite answers None off its pattern; the op must then still have its exact translation."""
    assert set(REWRITES) <= set(OPS)


def _sigmoid_model(path, scale: float):
    """input [1, 2, 3, 4] -> Sigmoid(input * scale) -> y."""
    nodes = [helper.make_node("Mul", ["input", "k"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.float32(scale), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_to_saved_model_writes_into_the_stage_folder_itself(tmp_path):
    """No second staging: the folder the stage made (inside the pipeline's build folder) is the SavedModel,
    nothing is created beside it, and the self-check's report is in it."""
    onnx_path = _sigmoid_model(tmp_path / "m.onnx", 1.0)
    out = tmp_path / "build" / "saved_model"
    out.mkdir(parents=True)
    inode = out.stat().st_ino
    spec = B.to_saved_model(onnx_path, out)
    assert out.stat().st_ino == inode and [p.name for p in out.parent.iterdir()] == ["saved_model"]
    assert (out / "saved_model.pb").is_file()
    assert spec["input"] == {"name": "input", "layout": "NHWC", "shape": [1, 3, 4, 2]}
    diffs = json.loads((out / B.REPORT_FILE).read_text())["max_rel_diff_vs_onnxruntime"]
    assert list(diffs) == ["y"] and diffs["y"] <= B.TOLERANCE


def test_self_check_refuses_a_saved_model_that_differs_from_onnxruntime(tmp_path):
    """The SavedModel of one graph checked against another (scale 1 vs 3): refused, and no report written."""
    import tensorflow as tf

    from converters.tf_nhwc.self_check import verify_against_onnxruntime

    module, dims, names = B.build_module(_sigmoid_model(tmp_path / "one.onnx", 1.0))
    saved = tmp_path / "saved_model"
    tf.saved_model.save(module, str(saved), signatures={B.SIGNATURE: module.serve.get_concrete_function()})
    assert verify_against_onnxruntime(saved, tmp_path / "one.onnx", dims, names, B.SIGNATURE)["y"] <= B.TOLERANCE
    (saved / B.REPORT_FILE).unlink()
    with pytest.raises(RuntimeError, match="differs from onnxruntime beyond"):
        verify_against_onnxruntime(saved, _sigmoid_model(tmp_path / "three.onnx", 3.0), dims, names, B.SIGNATURE)
    assert not (saved / B.REPORT_FILE).exists()

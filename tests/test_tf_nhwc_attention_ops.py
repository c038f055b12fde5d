"""tf_nhwc's translations of the transformer ops (MatMul, Gemm, Softmax, ReduceMean, Sqrt, Erf): each against
onnxruntime on tiny graphs whose tensors are stored in other layouts than ONNX's (an NHWC activation reshaped
into a matrix is stored transposed), and TAN's real transformer block exported at opset 10 and simplified."""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from contracts.errors import UserError
from converters import backend_tf_nhwc as B
from test_backend_tf_nhwc import make_model as _model, run_both  # the backend tests' graph builder and runner

RNG = np.random.default_rng(0)


def _run_both(tmp_path, model, in_shape):
    """(TF outputs on the NHWC input, onnxruntime outputs on the NCHW input, the traced TF graph's operations)."""
    graph = []
    got, want, _ = run_both(tmp_path, model, in_shape, graph)
    return got, want, graph


def _assert_close(got, want, tol=1e-5):
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        assert float(np.abs(got[name] - w).max()) <= tol * max(1.0, float(np.abs(w).max())), name


def _as_matrix(name="x", shape=(6, 20)):
    """input [1, 6, 4, 5] (stored NHWC) -> Reshape [6, 20]: the matrix is stored transposed ([20, 6])."""
    return helper.make_node("Reshape", ["input", name + "_shape"], [name]), (name + "_shape", np.array(shape))


@pytest.mark.parametrize("operand,trans_a,trans_b", [("x", 0, 0), ("x", 1, 1), ("x_t", 0, 1), ("x_t", 1, 0)])
def test_gemm_on_a_transposed_store(tmp_path, operand, trans_a, trans_b):
    """Gemm of x [6, 20] (stored transposed) or of x_t = x^T (stored as is), with every transA / transB: exact,
    no data moved, and never TF's transpose_a (which TFJS's wasm backend computes wrongly once the bias is
    fused; a Transpose before the MatMul would be folded into it by the TFJS converter's grappler pass)."""
    reshape, shape_init = _as_matrix()
    k = 20 if (operand == "x") == (trans_a == 0) else 6
    w = RNG.normal(size=(5, k) if trans_b else (k, 5)).astype(np.float32)
    nodes = [reshape, helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0]),
             helper.make_node("Gemm", [operand, "w", "b"], ["y"], transA=trans_a, transB=trans_b)]
    inits = [shape_init, ("w", w), ("b", RNG.normal(size=5).astype(np.float32))]
    got, want, ops = _run_both(tmp_path, _model(nodes, [1, 6, 4, 5], ["y"], inits), [1, 6, 4, 5])
    _assert_close(got, want)
    matmuls = [op for op in ops if op.type == "MatMul"]
    assert len(matmuls) == 1 and not matmuls[0].get_attr("transpose_a")
    assert all(i.op.type != "Transpose" for i in matmuls[0].inputs)  # the transposed store is used as it is
    # an Add after a MatMul has the constant first (else tensorflowjs makes it a BiasAdd of any shape)
    for add in (op for op in ops if op.type == "AddV2" and "MatMul" in {i.op.type for i in op.inputs}):
        assert add.inputs[1].op.type == "MatMul", add.name


def test_batched_matmul_of_two_tensors_and_by_a_constant(tmp_path):
    """q @ k^T with k transposed by a Transpose node (adjoint, no data moved), then @ a constant matrix."""
    nodes = [helper.make_node("Reshape", ["input", "s"], ["x"]),              # [2, 3, 20] stored [2, 20, 3]
             helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),    # [2, 20, 3]
             helper.make_node("MatMul", ["xt", "x"], ["g"]),                  # [2, 20, 20]
             helper.make_node("MatMul", ["x", "g"], ["h"]),                   # [2, 3, 20]
             helper.make_node("MatMul", ["h", "w"], ["y"])]                   # [2, 3, 7]
    inits = [("s", np.array([2, 3, 20])), ("w", RNG.normal(size=(20, 7)).astype(np.float32))]
    got, want, ops = _run_both(tmp_path, _model(nodes, [1, 6, 4, 5], ["y", "g"], inits), [1, 6, 4, 5])
    _assert_close(got, want)


@pytest.mark.parametrize("keepdims,axes", [(1, [-1]), (0, [1]), (1, [2, 3]), (0, [0, 2])])
def test_reduce_mean_over_stored_axes(tmp_path, keepdims, axes):
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=axes, keepdims=keepdims),
             helper.make_node("Sqrt", ["m2"], ["y"]), helper.make_node("Mul", ["m", "m"], ["m2"])]
    nodes = [nodes[0], nodes[2], nodes[1]]
    got, want, _ = _run_both(tmp_path, _model(nodes, [1, 6, 4, 5], ["y", "m"]), [1, 6, 4, 5])
    _assert_close(got, want)


def test_softmax_over_an_axis_not_stored_last(tmp_path):
    """Softmax over the channels of an NHWC-stored [1, C, HW]... reshaped so the axis is last in ONNX, and over
    a [1, C, H, W] tensor's W (ONNX's last axis, stored third): both exact; erf on the way."""
    nodes = [helper.make_node("Reshape", ["input", "s"], ["x"]),  # [1, 6, 20], stored [1, 20, 6]
             helper.make_node("Softmax", ["x"], ["y"], axis=2),
             helper.make_node("Erf", ["input"], ["e"]),
             helper.make_node("Softmax", ["e"], ["z"], axis=3)]
    got, want, _ = _run_both(tmp_path, _model(nodes, [1, 6, 4, 5], ["y", "z"], [("s", np.array([1, 6, 20]))]),
                             [1, 6, 4, 5])
    _assert_close(got, want)


def test_softmax_over_several_axes_is_refused(tmp_path):
    """Before opset 13, Softmax(axis=1) of [1, 6, 4, 5] normalises over 6 x 4 x 5 values at once: refused."""
    nodes = [helper.make_node("Softmax", ["input"], ["y"], name="wide_softmax", axis=1)]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, [1, 6, 4, 5], ["y"]), str(path))
    with pytest.raises(UserError, match="wide_softmax.*Softmax.*axis 1"):
        B.build_module(path)


@pytest.mark.parametrize("act", ["LeakyReLU", "GELU"])
def test_tan_transformer_block_exported_at_opset_10(tmp_path, act):
    """TAN's TransformerBlock (conv, position embedding, layer norms, attention, MLP) exported at opset 10 and
    simplified as the pipeline does: every op translated, the SavedModel function equal to onnxruntime."""
    from onnxsim import simplify
    from torch import nn

    from nanodet_ref.transformer import TransformerBlock

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = TransformerBlock(48, 16, 4, num_encoders=2, mlp_ratio=2, act=act)
            self.pos_embed = nn.Parameter(torch.randn(20, 1, 16))

        def forward(self, x):
            return self.block(x, self.pos_embed)

    torch.manual_seed(0)
    block = Block().eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(block, (torch.randn(1, 48, 4, 5),), buf, input_names=["input"], output_names=["y"],
                          opset_version=10, dynamo=False)
    model, ok = simplify(onnx.load_from_string(buf.getvalue()))
    assert ok
    ops = {n.op_type for n in model.graph.node}
    assert {"Gemm", "MatMul", "Softmax", "ReduceMean", "Sqrt"} <= ops and ("Erf" in ops) == (act == "GELU")
    got, want, _ = _run_both(tmp_path, model, [1, 48, 4, 5])
    _assert_close(got, want)

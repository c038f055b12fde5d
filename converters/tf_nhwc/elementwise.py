"""Element-wise ops, exactly: activations (Relu, Sigmoid, LeakyRelu, Clip), Sqrt, Erf, Add / Mul / Sub / Div,
Constant, Identity.

An element-wise op does not care how its input is laid out, so it runs on the stored tensor and its result keeps
the input's perm: no transpose, the same numbers through the same TF kernel (``tf.nn.leaky_relu`` is ONNX's
LeakyRelu; NHWC activations take the faster, equally exact form of ``speed_rewrites.leaky_relu_as_prelu``).
A binary op with a constant side lays the constant out as the tensor is stored (ONNX broadcasting aligns
trailing axes: the constant is padded with leading 1s first, then permuted like the tensor); two tensors are
brought to one layout (the second follows the first). A computation on constants only is refused: onnxsim folds
those before this stage.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from . import layout as L
from .layout import Value


def constant(t, tf, node, a) -> list[Value]:
    if "value" not in a:
        t.fail(node, "only 'value' constants")
    from onnx import numpy_helper
    return [Value(const=numpy_helper.to_array(a["value"]))]


def identity(t, tf, node, a) -> list[Value]:
    return [t.values[node.input[0]]]


def unary(t, node, fn) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    return [Value(fn(x.tensor), x.perm)]


def relu(t, tf, node, a) -> list[Value]:
    return unary(t, node, tf.nn.relu)


def sigmoid(t, tf, node, a) -> list[Value]:
    return unary(t, node, tf.math.sigmoid)


def sqrt(t, tf, node, a) -> list[Value]:
    """ONNX Sqrt (a decomposed layer norm's standard deviation): ``tf.math.sqrt``, correctly rounded."""
    return unary(t, node, tf.math.sqrt)


def erf(t, tf, node, a) -> list[Value]:
    """ONNX Erf (exact GELU: x * (1 + erf(x / sqrt 2)) / 2): ``tf.math.erf``."""
    return unary(t, node, tf.math.erf)


def clip_bounds(t, node, a) -> tuple:
    """(min, max) of an ONNX Clip, None where absent: attributes before opset 11, constant inputs after."""
    if t.opset < 11:
        return a.get("min"), a.get("max")
    names = [node.input[i] if len(node.input) > i else "" for i in (1, 2)]
    return tuple(float(t.const(node, n, f"Clip {w}")) if n else None for n, w in zip(names, ("min", "max")))


def clip(t, tf, node, a) -> list[Value]:
    """ONNX Clip (ReLU6 exports as Clip 0..6). [0, 6] is ``tf.nn.relu6`` (the same min(max(x, 0), 6), and TFJS
    fuses it into the conv before it), another pair ``tf.clip_by_value``; an infinite or absent bound is not
    applied."""
    lo, hi = (None if b is None or np.isinf(b) else np.float32(b) for b in clip_bounds(t, node, a))
    if lo == 0 and hi == 6:
        return unary(t, node, tf.nn.relu6)
    if lo is not None and hi is not None:
        return unary(t, node, partial(tf.clip_by_value, clip_value_min=lo, clip_value_max=hi))
    if lo is not None or hi is not None:
        return unary(t, node, partial(tf.maximum, lo) if lo is not None else partial(tf.minimum, hi))
    return [t.tensor_in(node, node.input[0])]


def leaky_relu(t, tf, node, a) -> list[Value]:
    alpha = float(np.float32(a.get("alpha", 0.01)))
    return unary(t, node, partial(tf.nn.leaky_relu, alpha=alpha))


def binary(t, tf, node, fn) -> list[Value]:
    va, vb = (t.values.get(n) for n in node.input[:2])
    if va is None or vb is None:
        t.fail(node, "unknown input")
    if va.const is not None and vb.const is not None:
        t.fail(node, "constant-only computation (run onnxsim first)")
    if va.const is not None or vb.const is not None:
        c, v, c_first = (va.const, vb, True) if va.const is not None else (vb.const, va, False)
        ct = t.const_like(tf, c.astype(np.float32), v)
        if ct is None:
            t.fail(node, "constant of higher rank than the tensor")
        return [Value(fn(ct, v.tensor) if c_first else fn(v.tensor, ct), v.perm)]
    if len(va.perm) != len(vb.perm):
        if va.perm == L.identity(len(va.perm)) and vb.perm == L.identity(len(vb.perm)):
            return [Value(fn(va.tensor, vb.tensor), va.perm)]
        t.fail(node, "broadcast between tensors of different rank")
    return [Value(fn(va.tensor, t.to_perm(tf, vb, va.perm)), va.perm)]


def add(t, tf, node, a) -> list[Value]:
    return binary(t, tf, node, tf.add)


def mul(t, tf, node, a) -> list[Value]:
    return binary(t, tf, node, tf.multiply)


def sub(t, tf, node, a) -> list[Value]:
    return binary(t, tf, node, tf.subtract)


def div(t, tf, node, a) -> list[Value]:
    return binary(t, tf, node, tf.divide)

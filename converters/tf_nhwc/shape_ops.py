"""Shape ops, exactly: Reshape, Transpose, Concat, Split, Slice on values stored in any layout.

They move or select elements and compute nothing, so exactness is a matter of indexing: each works on the
stored tensor with the ONNX axes mapped through the value's perm (``converters.tf_nhwc.layout``). Transpose
moves no data: it only changes the perm. Reshape is a plain ``tf.reshape`` where the stored element order is
the reshaped value's (``plan_reshape`` proves it on index arrays), otherwise one transpose first. Concat brings
every input to the first one's layout and concatenates on the stored position of the ONNX axis; Split and Slice
cut on that position, with ONNX's clamping of slice bounds (positive steps only). The TFJS-speed forms of the
channel Concat + shuffle and the channel-halves Split are in ``speed_rewrites``.
"""
from __future__ import annotations

import numpy as np

from . import layout as L
from .layout import Value


def reshape(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    target = [int(v) for v in t.const(node, node.input[1], "the shape")]
    if int(a.get("allowzero", 0)):
        t.fail(node, "allowzero=1")
    shape = x.shape
    out = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        t.fail(node, f"shape {target}")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // known
    if int(np.prod(out)) != int(np.prod(shape)):
        t.fail(node, f"shape {target} does not fit {list(shape)}")
    pre, out_perm = L.plan_reshape(tuple(shape), tuple(x.perm), tuple(out))
    stored = x.tensor if pre is None else tf.transpose(x.tensor, list(pre))
    return [Value(tf.reshape(stored, L.stored_shape(out, out_perm)), out_perm)]


def transpose(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    perm = list(a.get("perm", reversed(range(len(x.perm)))))
    return [Value(x.tensor, L.after_transpose(x.perm, perm))]


def concat_inputs(t, node, a) -> tuple[list[Value], int]:
    """(the input values, the ONNX axis made non-negative)."""
    vals = [t.tensor_in(node, n) for n in node.input]
    return vals, int(a["axis"]) % len(vals[0].perm)


def concat(t, tf, node, a) -> list[Value]:
    vals, axis = concat_inputs(t, node, a)
    perm = vals[0].perm
    return [Value(tf.concat([t.to_perm(tf, v, perm) for v in vals], axis=list(perm).index(axis)), perm)]


def split_sizes(t, node, a, x: Value) -> tuple[int, list[int]]:
    """(the ONNX axis made non-negative, the part sizes) of a Split of ``x``, refused where they do not fit."""
    axis = int(a.get("axis", 0)) % len(x.perm)
    if "split" in a:
        sizes = list(a["split"])
    elif len(node.input) > 1 and node.input[1]:
        sizes = [int(s) for s in t.const(node, node.input[1], "split")]
    else:
        n = len(node.output)
        if x.shape[axis] % n:
            t.fail(node, "uneven split without sizes")
        sizes = [x.shape[axis] // n] * n
    if sum(sizes) != x.shape[axis] or len(sizes) != len(node.output):
        t.fail(node, f"split {sizes} does not fit dimension {x.shape[axis]}")
    return axis, sizes


def split(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    axis, sizes = split_sizes(t, node, a, x)
    parts = tf.split(x.tensor, sizes, axis=list(x.perm).index(axis))
    return [Value(p, x.perm) for p in parts]


def _optional_ints(t, node, index: int, what: str, default: list[int]) -> list[int]:
    if len(node.input) > index and node.input[index]:
        return [int(v) for v in t.const(node, node.input[index], what)]
    return default


def _slice_params(t, node, a):
    """(starts, ends, axes, steps) from attributes (opset < 10) or constant inputs."""
    if t.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        return starts, ends, list(a.get("axes", range(len(starts)))), [1] * len(starts)
    starts = [int(v) for v in t.const(node, node.input[1], "starts")]
    ends = [int(v) for v in t.const(node, node.input[2], "ends")]
    axes = _optional_ints(t, node, 3, "axes", list(range(len(starts))))
    return starts, ends, axes, _optional_ints(t, node, 4, "steps", [1] * len(starts))


def slice_op(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    rank = len(x.perm)
    starts, ends, axes, steps = _slice_params(t, node, a)
    index = [slice(None)] * rank
    shape = x.shape
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax %= rank
        if st <= 0:
            t.fail(node, "non-positive slice steps")
        lo, hi, _ = slice(s, e, st).indices(shape[ax])  # clamps like ONNX does for positive steps
        index[list(x.perm).index(ax)] = slice(lo, hi, st)
    return [Value(x.tensor[tuple(index)], x.perm)]

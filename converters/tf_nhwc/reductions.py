"""Reductions over an axis, exactly: ``ReduceMean`` (layer norm's mean and variance) and ``Softmax``.

- ``ReduceMean`` with constant ``axes`` (attribute, opset < 18): ``tf.reduce_mean`` over the stored positions
  of those ONNX axes: the same elements summed and divided by their count, in any layout. ``keepdims=1`` keeps
  the stored layout; ``keepdims=0`` drops the reduced axes from it.
- ``Softmax``: over one axis. Before opset 13 ONNX's Softmax is over all axes from ``axis`` on, flattened; that
  is a softmax over ``axis`` alone exactly where the axes after it have length 1 (the last axis, as exported
  from ``torch.softmax(dim=-1)``), and only that is taken. The tensor is first laid out with that axis stored
  last (one transpose where it is not), because TFJS's Softmax runs over the last axis only; then
  ``tf.nn.softmax`` over it: exp(x - max) / sum, as ONNX defines it.
"""
from __future__ import annotations

from .layout import Value


def reduce_mean(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    rank = len(x.perm)
    if len(node.input) > 1 or "axes" not in a:
        t.fail(node, "axes must be the attribute (opset < 18) and given")
    axes = sorted({int(ax) % rank for ax in a["axes"]})
    stored_axes = [list(x.perm).index(ax) for ax in axes]
    if int(a.get("keepdims", 1)):
        return [Value(tf.reduce_mean(x.tensor, axis=stored_axes, keepdims=True), x.perm)]
    kept = [p for p in x.perm if p not in axes]
    renumber = {p: i for i, p in enumerate(sorted(kept))}
    return [Value(tf.reduce_mean(x.tensor, axis=stored_axes, keepdims=False), tuple(renumber[p] for p in kept))]


def softmax(t, tf, node, a) -> list[Value]:
    x = t.tensor_in(node, node.input[0])
    rank = len(x.perm)
    axis = int(a.get("axis", 1 if t.opset < 13 else -1)) % rank
    if t.opset < 13 and any(d != 1 for d in x.shape[axis + 1:]):
        t.fail(node, f"axis {axis} of {list(x.shape)} at opset {t.opset} (a softmax over several axes)")
    if x.perm[-1] != axis:
        perm = tuple(p for p in x.perm if p != axis) + (axis,)
        x = Value(t.to_perm(tf, x, perm), perm)
    return [Value(tf.nn.softmax(x.tensor, axis=-1), x.perm)]

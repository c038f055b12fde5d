"""Matrix products, exactly: ONNX ``MatMul`` and ``Gemm`` (the attention and the linear layers of a transformer).

Exact because each output element is the same dot product (the same pairs of numbers multiplied and summed) as
in ONNX; only the summation order may differ, as between any two BLAS kernels:
- ``MatMul`` of two tensors of equal rank >= 2 with equal batch dimensions (no broadcasting): each operand is
  taken as stored where its batch axes lead in ONNX order and its two matrix axes are last in either order (the
  swapped order becomes TF's ``adj_x`` / ``adj_y``, no data moves), else transposed once to the ONNX order.
  ``MatMul`` by a constant 2-D matrix (a linear layer on a [.., K] tensor): the tensor as stored with K last,
  flattened to [rows, K], one ``MatMul``, reshaped back in the same stored layout.
- ``Gemm`` (alpha = beta = 1 only, as the PyTorch exporter writes linear layers), B a constant laid out [K, N]
  (``transB`` applied to the numbers, a relayout). Where op(A) [M, K] is stored as such: ``MatMul`` then C as a
  ``BiasAdd`` (a vector of N; TFJS fuses the pair into ``_FusedMatMul``) or a broadcast ``Add``. Where it is
  stored transposed ([K, M]: a matrix reshaped from an NHWC activation, or ``transA``): Y^T = B^T op(A)^T as
  stored, plus C^T as a [N, 1] column, and Y is kept stored transposed: no data moves. Two TFJS defects shape
  this: tfjs-backend-wasm 4.22 computes ``_FusedMatMul`` with ``transposeA`` and a bias wrongly (measured on a
  [128, 400]^T x [128, 64] + bias product: max |diff| 5.7 on wasm, 2e-5 on TFJS's cpu backend; without the bias
  or without transposeA both agree to 2e-5), and a ``Transpose`` before the ``MatMul`` does not avoid it
  (grappler, run by the TFJS converter, folds it into ``transpose_a``); and the converter's
  ``normalize_bias_add`` pass turns an ``Add`` whose *first* input is a ``MatMul`` into a ``BiasAdd`` whatever
  the other operand's shape, which TFJS then refuses ("_FusedMatMul only supports rank-1 bias"). So
  ``transpose_a`` is never emitted, and a C that is not a vector of N is the first operand of its ``Add``
  (addition is commutative, bit for bit).
Anything else (1-D operands, broadcast batch axes, alpha or beta other than 1) is refused, naming the node.
"""
from __future__ import annotations

import numpy as np

from . import layout as L
from .layout import Value


def _matrix_operand(t, tf, x: Value):
    """(stored tensor, adjoint flag) of ``x`` with its batch axes leading in ONNX order and its two matrix axes
    last: as stored where that already holds (adjoint where they are swapped), else one transpose."""
    rank = len(x.perm)
    batch = tuple(range(rank - 2))
    if tuple(x.perm[:-2]) == batch:
        if tuple(x.perm[-2:]) == (rank - 2, rank - 1):
            return x.tensor, False
        return x.tensor, True
    return t.to_perm(tf, x, L.identity(rank)), False


def _matmul_by_matrix(t, tf, node, x: Value, w: np.ndarray) -> list[Value]:
    """``x @ w`` for a constant 2-D ``w`` [K, N]: one 2-D MatMul on the rows of x as stored with K last."""
    rank = len(x.perm)
    if x.perm[-1] != rank - 1:
        x = Value(t.to_perm(tf, x, tuple(p for p in x.perm if p != rank - 1) + (rank - 1,)),
                  tuple(p for p in x.perm if p != rank - 1) + (rank - 1,))
    stored = x.tensor.shape.as_list()
    rows = tf.reshape(x.tensor, [-1, stored[-1]])
    y = tf.linalg.matmul(rows, tf.constant(np.ascontiguousarray(w, dtype=np.float32)))
    return [Value(tf.reshape(y, stored[:-1] + [int(w.shape[1])]), x.perm)]


def matmul(t, tf, node, a) -> list[Value]:
    va, vb = (t.values.get(n) for n in node.input[:2])
    if va is None or vb is None:
        t.fail(node, "unknown input")
    if va.const is not None:
        t.fail(node, "a constant left operand")
    x = t.tensor_in(node, node.input[0])
    if len(x.perm) < 2:
        t.fail(node, "1-D operands")
    if vb.const is not None:
        if vb.const.ndim != 2 or vb.const.shape[0] != x.shape[-1]:
            t.fail(node, f"constant right operand of shape {list(vb.const.shape)} for {list(x.shape)}")
        return _matmul_by_matrix(t, tf, node, x, vb.const.astype(np.float32))
    rank = len(x.perm)
    if len(vb.perm) != rank or vb.shape[:-2] != x.shape[:-2] or vb.shape[-2] != x.shape[-1]:
        t.fail(node, f"operands {list(x.shape)} and {list(vb.shape)} (equal batch dimensions only)")
    lhs, adj_a = _matrix_operand(t, tf, x)
    rhs, adj_b = _matrix_operand(t, tf, vb)
    if rank == 2:
        y = tf.linalg.matmul(lhs, rhs, transpose_a=adj_a, transpose_b=adj_b)
    else:
        y = tf.raw_ops.BatchMatMulV2(x=lhs, y=rhs, adj_x=adj_a, adj_y=adj_b)
    return [Value(y, L.identity(rank))]


def gemm(t, tf, node, a) -> list[Value]:
    if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
        t.fail(node, f"alpha {a.get('alpha', 1.0)} / beta {a.get('beta', 1.0)} (only 1)")
    x = t.tensor_in(node, node.input[0])
    if len(x.perm) != 2:
        t.fail(node, "A must be 2-D")
    w = t.const(node, node.input[1], "B").astype(np.float32)
    w = w.T if int(a.get("transB", 0)) else w                      # [K, N]
    n = int(w.shape[1])
    c = t.const(node, node.input[2], "C").astype(np.float32) if len(node.input) > 2 and node.input[2] else None
    if c is not None and not (c.size == n and c.shape[-1:] == (n,)):
        c = np.broadcast_to(c, (int(x.shape[1 if int(a.get("transA", 0)) else 0]), n))
    if (tuple(x.perm) == (0, 1)) == (not int(a.get("transA", 0))):   # stored as op(A) [M, K]
        y = tf.linalg.matmul(x.tensor, tf.constant(np.ascontiguousarray(w)))
        if c is not None:  # a matrix C goes first in its Add: see the module docstring
            y = (tf.nn.bias_add(y, tf.constant(c.reshape(n))) if c.size == n
                 else tf.add(tf.constant(np.ascontiguousarray(c)), y))
        return [Value(y, L.identity(2))]
    # stored as op(A)^T [K, M]: compute Y^T = B^T op(A)^T (+ C^T), stored transposed; no Transpose op
    y = tf.linalg.matmul(tf.constant(np.ascontiguousarray(w.T)), x.tensor)
    if c is not None:
        y = tf.add(tf.constant(np.ascontiguousarray(c.reshape(n, 1) if c.size == n else c.T)), y)
    return [Value(y, (1, 0))]

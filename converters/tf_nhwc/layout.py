"""The value and layout model of ``--backend tf_nhwc``: which TF tensor holds which ONNX value, in which axis order.

A translated ONNX value (:class:`Value`) is a TF tensor ``stored`` plus a permutation ``perm`` with
``stored == transpose(logical, perm)``: stored axis k is logical axis ``perm[k]``; or, for initializers and
Constant nodes, a numpy array. 4-D activations live as NHWC (``perm == NHWC == (0, 2, 3, 1)``), plain tensors
have the identity. A Transpose node then only changes ``perm`` (no TF op), and a Reshape becomes a plain
``tf.reshape`` whenever the element order in memory allows it.

Whether it allows it is decided exactly, not by rules of thumb: :func:`plan_reshape` numbers every logical
element, lays the numbers out as stored now and as the reshaped value would be stored, and accepts a plain
reshape only where both flat orders are identical; otherwise it looks for the one transpose of the stored
tensor after which they are. So a layout rewrite is either proven element for element or not made.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NHWC = (0, 2, 3, 1)  # the stored perm of a 4-D activation


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_last(rank: int) -> tuple[int, ...]:
    """(0, 2, ..., rank-1, 1): NHWC for rank 4, [N, L, C] for rank 3; identity below rank 3."""
    return (0, *range(2, rank), 1) if rank >= 3 else identity(rank)


def invert(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for k, p in enumerate(perm):
        inv[p] = k
    return tuple(inv)


def stored_shape(logical_shape, perm) -> tuple[int, ...]:
    return tuple(int(logical_shape[p]) for p in perm)


def logical_shape(stored, perm) -> tuple[int, ...]:
    shape = [0] * len(perm)
    for k, p in enumerate(perm):
        shape[p] = int(stored[k])
    return tuple(shape)


def after_transpose(perm, onnx_perm) -> tuple[int, ...]:
    """The stored perm after an ONNX Transpose(onnx_perm) of a value stored with ``perm`` (no data moves)."""
    inv_t = invert(onnx_perm)
    return tuple(inv_t[p] for p in perm)


def candidate_perms(rank: int) -> list[tuple[int, ...]]:
    """Layouts to try for a reshaped value, best first: channels-last, identity, then all others."""
    first = [channels_last(rank), identity(rank)]
    rest = [p for p in itertools.permutations(range(rank)) if p not in first]
    return list(dict.fromkeys(first)) + rest


def _flat_order(logical_shape, perm) -> np.ndarray:
    idx = np.arange(int(np.prod(logical_shape)), dtype=np.int64).reshape(logical_shape)
    return np.ascontiguousarray(idx.transpose(perm)).reshape(-1)


@lru_cache(maxsize=256)
def plan_reshape(in_logical: tuple, in_perm: tuple, out_logical: tuple, prefer: tuple | None = None):
    """How to reshape a value stored with ``in_perm`` to ``out_logical``.

    Returns ``(pre_transpose or None, out_perm)``: transpose the stored tensor by ``pre_transpose`` (if any),
    then ``tf.reshape`` it to ``stored_shape(out_logical, out_perm)``. Layouts are tried best first
    (``prefer``, then :func:`candidate_perms`); no pre-transpose is tried before any pre-transpose.
    """
    src = np.arange(int(np.prod(in_logical)), dtype=np.int64).reshape(in_logical)
    outs = ([prefer] if prefer else []) + candidate_perms(len(out_logical))
    outs = list(dict.fromkeys(outs))
    targets = {p: _flat_order(out_logical, p) for p in outs}
    pres = [None] + [q for q in itertools.permutations(range(len(in_perm))) if q != identity(len(in_perm))]
    for pre in pres:
        perm = in_perm if pre is None else tuple(in_perm[q] for q in pre)
        flat = np.ascontiguousarray(src.transpose(perm)).reshape(-1)
        for out_perm in outs:
            if np.array_equal(flat, targets[out_perm]):
                return pre, out_perm
    raise AssertionError("unreachable: the identity layout always works after a full transpose")


@dataclass
class Value:
    """An ONNX value: a TF tensor stored as ``transpose(logical, perm)``, or a numpy constant (``const``)."""

    tensor: object = None
    perm: tuple = ()
    const: np.ndarray | None = None

    @property
    def shape(self) -> tuple:
        """The logical (ONNX) shape."""
        if self.const is not None:
            return tuple(self.const.shape)
        return logical_shape(self.tensor.shape.as_list(), self.perm)

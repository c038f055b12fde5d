"""ONNX spatial padding as TF padding, exactly: ``SAME`` only where TF pads the very rows and columns ONNX does.

TF's ``SAME`` puts the odd padding cell at the bottom/right: a stride-2 3x3 conv on an even input pads (0, 1) in
TF but (1, 1) in an ONNX graph exported from PyTorch. So explicit ONNX pads become ``SAME`` only where they equal
what ``SAME`` would pad (:func:`same_pads`), ``VALID`` where they are all zero, and stay explicit otherwise (the
conv takes them as ``EXPLICIT`` paddings, the pools as a ``Pad`` op; see ``conv`` and ``pooling``).
"""
from __future__ import annotations


def same_pads(in_hw, kernel, strides, dilations=(1, 1)) -> list[tuple[int, int]]:
    """The (before, after) pads TF's ``SAME`` uses per spatial axis."""
    out = []
    for n, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        out.append((total // 2, total - total // 2))
    return out


def spatial_pads(attrs: dict, in_hw, kernel, strides, dilations, fail):
    """A node's ONNX ``auto_pad`` / ``pads`` -> ``'SAME'`` | ``'VALID'`` | ``[(top, bottom), (left, right)]``;
    ``fail(why)`` refuses what has no exact TF form."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "SAME_UPPER":
        return "SAME"
    if auto == "VALID":
        return "VALID"
    if auto not in ("NOTSET", ""):
        fail(f"auto_pad {auto}")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        fail(f"pads {pads} (2-D only)")
    explicit = [(pads[0], pads[2]), (pads[1], pads[3])]
    if all(p == (0, 0) for p in explicit):
        return "VALID"
    if explicit == same_pads(in_hw, kernel, strides, dilations):
        return "SAME"
    return explicit

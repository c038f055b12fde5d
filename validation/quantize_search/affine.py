"""What a weight becomes in TFJS when stored as uint8 or float16, reproduced in numpy (no TensorFlow).

tensorflowjs 4.22 (``tensorflowjs/quantization.py``) quantizes each weight on its own: uint8 is affine over the
tensor's own [min, max], nudged so that 0.0 is exactly representable when the range spans it (as TF-Lite
does): ``scale = (max - min) / 255``, ``min' = -round(-min / scale) * scale``, values clipped to
[min', max'] (max' = min' + 255 scale when nudged) and coded ``round((v - min') / scale)``; a tensor with one
value is stored as zeros with scale 1 and min = that value. TFJS dequantizes at load time as
``q * scale + min'`` into float32. float16 is a plain cast. ``tests/test_quantize_mixed.py`` checks both against
tensorflowjs' own functions.
"""
from __future__ import annotations

import numpy as np

TYPES = ("float32", "float16", "uint8")
BYTES = {"float32": 4, "float16": 2, "uint8": 1}


def uint8_range(lo: np.float64, hi: np.float64) -> tuple[np.float64, np.float64, np.float64]:
    """(scale, nudged min, nudged max) of the affine uint8 code for values in [lo, hi], lo < hi."""
    scale = (hi - lo) / 255
    if lo <= 0 <= hi:
        low = -np.round((0 - lo) / scale) * scale
        return scale, low, 255 * scale + low
    return scale, lo, hi


def as_stored(values: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values TFJS computes with after storing ``values`` (float32) as ``dtype``.

    The arithmetic mirrors tensorflowjs' operand types (float32 array, numpy float64 scalars), so that numpy's
    promotion rules, whichever version is installed, give the same codes as the converter."""
    a = np.asarray(values, np.float32)
    if dtype == "float32":
        return a
    if dtype == "float16":
        with np.errstate(over="ignore"):   # beyond float16's range: +-inf, as TFJS gets it (max-pool's -FLT_MAX pad)
            return a.astype(np.float16).astype(np.float32)
    if dtype != "uint8":
        raise ValueError(f"unknown weight type {dtype} (choose {', '.join(TYPES)})")
    lo, hi = a.min().astype(np.float64), a.max().astype(np.float64)
    if lo == hi:
        return np.full_like(a, lo)
    scale, low, high = uint8_range(lo, hi)
    codes = np.round((a.clip(low, high) - low) / scale).astype(np.uint8)
    return (codes * float(scale) + float(low)).astype(np.float32)


def exact_in(values: np.ndarray, dtype: str) -> bool:
    """Whether storing ``values`` as ``dtype`` changes none of them (a constant tensor is exact in uint8)."""
    return bool(np.array_equal(as_stored(values, dtype), np.asarray(values, np.float32)))

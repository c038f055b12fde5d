"""Pooling and resampling, exactly: MaxPool, AveragePool, and nearest Resize / Upsample by integer factors.

- Pools run on the NHWC tensor with ONNX's kernel and strides. Padding as in ``converters.tf_nhwc.padding``;
  padding that is not TF's ``SAME`` becomes a ``Pad`` + ``VALID`` (TFJS's pools have no explicit paddings): for
  a max pool with the lowest float32, which never wins a max (ONNX ignores padded cells), for an average pool
  with zeros, exact where ONNX counts the padded cells (``count_include_pad=1``; TF's ``SAME`` average leaves
  them out, so that case is padded explicitly too). ``ceil_mode``, dilations, ``storage_order`` and MaxPool's
  indices output are refused.
- Nearest resize by integer scales s: ``out[i] = in[i // s]``, which is TF's ``ResizeNearestNeighbor`` without
  half-pixel centers. Taken only for the ONNX coordinate modes for which that formula is exact (see
  :func:`_exact_as_repetition`); other modes and non-integer scales are refused.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .layout import NHWC, Value
from .padding import same_pads, spatial_pads


def _pool_common(t, tf, node, a):
    x = t.tensor_in(node, node.input[0])
    if len(x.perm) != 4:
        t.fail(node, "2-D pooling only")
    if int(a.get("ceil_mode", 0)):
        t.fail(node, "ceil_mode=1")
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        t.fail(node, "dilated pooling")
    if int(a.get("storage_order", 0)):
        t.fail(node, "storage_order=1")
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1, 1]))
    pad = spatial_pads(a, x.shape[2:], kernel, strides, [1, 1], partial(t.fail, node))
    return t.to_perm(tf, x, NHWC), kernel, strides, pad


def max_pool(t, tf, node, a) -> list[Value]:
    if len(node.output) > 1 and node.output[1]:
        t.fail(node, "MaxPool indices output")
    xs, kernel, strides, pad = _pool_common(t, tf, node, a)
    if isinstance(pad, list):  # TFJS MaxPool has no explicit paddings: pad with the lowest float, VALID
        xs = tf.pad(xs, [[0, 0], list(pad[0]), list(pad[1]), [0, 0]],
                    constant_values=float(np.finfo(np.float32).min))
        pad = "VALID"
    return [Value(tf.nn.max_pool2d(xs, kernel, strides, pad), NHWC)]


def average_pool(t, tf, node, a) -> list[Value]:
    xs, kernel, strides, pad = _pool_common(t, tf, node, a)
    include = int(a.get("count_include_pad", 0))
    if pad == "SAME" and include:  # TF's SAME average leaves the padding out; ONNX counts it here
        pad = same_pads(xs.shape.as_list()[1:3], kernel, strides)
    if isinstance(pad, list):
        if not include:
            t.fail(node, "count_include_pad=0 with padding other than TF's SAME")
        xs = tf.pad(xs, [[0, 0], list(pad[0]), list(pad[1]), [0, 0]])
        pad = "VALID"
    return [Value(tf.nn.avg_pool2d(xs, kernel, strides, pad), NHWC)]


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def _exact_as_repetition(coord: str, nearest: str, scales) -> bool:
    """Whether ONNX's nearest resize is ``out[i] = in[i // s]`` for these integer scales: asymmetric + floor
    always; half_pixel (+ pytorch_half_pixel) + round_prefer_floor / ceil (the source coordinate lies strictly
    within (k - 1/2, k + 1/2)), with floor only at scale 1; asymmetric + round_prefer_floor for s <= 2."""
    return ((coord == "asymmetric" and nearest == "floor")
            or (coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor",
                                                                              "round_prefer_ceil", "floor")
                and (nearest != "floor" or all(float(s) == 1 for s in scales)))
            or (coord == "asymmetric" and nearest == "round_prefer_floor" and all(float(s) <= 2 for s in scales)))


def _nearest(t, tf, node, x: Value, scales) -> list[Value]:
    if len(x.perm) != 4 or len(scales) != 4:
        t.fail(node, "4-D resize only")
    if scales[0] != 1 or scales[1] != 1:
        t.fail(node, f"scales {list(scales)} resize batch or channels")
    if any(float(s) != int(s) or int(s) < 1 for s in scales[2:]):
        t.fail(node, f"non-integer scales {list(scales)}")
    sh, sw = int(scales[2]), int(scales[3])
    h, w = x.shape[2:]
    xs = t.to_perm(tf, x, NHWC)
    if (sh, sw) == (1, 1):
        return [Value(xs, NHWC)]
    y = tf.raw_ops.ResizeNearestNeighbor(images=xs, size=[h * sh, w * sw], align_corners=False,
                                         half_pixel_centers=False)
    return [Value(y, NHWC)]


def upsample(t, tf, node, a) -> list[Value]:
    if _text(a, "mode", "nearest") != "nearest":
        t.fail(node, f"mode {a['mode']}")
    x = t.tensor_in(node, node.input[0])
    scales = list(a["scales"]) if "scales" in a else list(t.const(node, node.input[1], "scales"))
    return _nearest(t, tf, node, x, scales)


def resize(t, tf, node, a) -> list[Value]:
    if _text(a, "mode", "nearest") != "nearest":
        t.fail(node, f"mode {_text(a, 'mode', '')}")
    x = t.tensor_in(node, node.input[0])
    if t.opset < 11:
        scales = list(t.const(node, node.input[1], "scales"))
        coord, nearest = "asymmetric", "floor"
    else:
        coord = _text(a, "coordinate_transformation_mode", "half_pixel")
        nearest = _text(a, "nearest_mode", "round_prefer_floor")
        scales = (list(t.const(node, node.input[2], "scales"))
                  if len(node.input) > 2 and node.input[2] and t.values[node.input[2]].const.size else None)
        if scales is None:
            sizes = list(t.const(node, node.input[3], "sizes"))
            scales = [o / i for o, i in zip(sizes, x.shape)]
    if not _exact_as_repetition(coord, nearest, scales):
        t.fail(node, f"nearest resize with {coord} / {nearest}")
    return _nearest(t, tf, node, x, scales)

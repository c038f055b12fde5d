"""Shared pieces of the int64 audit: the int32 range, what narrowing does, which uses of an integer change
meaning, and how an output channel maps to a class index or a box side."""
from __future__ import annotations

import re

import numpy as np

INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)
SIDES = ("left", "top", "right", "bottom")

# ONNX op -> {input index: role} for inputs whose integer values steer the computation.
ONNX_ROLES = {
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Reshape": {1: "shape"}, "Expand": {1: "shape"}, "ConstantOfShape": {0: "shape"}, "Tile": {1: "repeats"},
    "Gather": {1: "indices"}, "GatherElements": {1: "indices"}, "GatherND": {1: "indices"},
    "ScatterND": {1: "indices"}, "ScatterElements": {1: "indices"}, "Scatter": {1: "indices"},
    "Range": {0: "start", 1: "limit", 2: "delta"}, "Pad": {1: "pads"}, "TopK": {1: "k"},
    "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"}, "Split": {1: "split"}, "OneHot": {1: "depth"},
    "Resize": {3: "sizes"}, "CumSum": {1: "axis"}, "ReduceSum": {1: "axes"}, "Clip": {1: "min", 2: "max"},
    "NonMaxSuppression": {2: "max_output_boxes_per_class"},
}
# ONNX ops that pass integer values through unchanged (the audit follows them to the real consumer).
ONNX_PASSTHROUGH = {"Identity", "Cast", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Flatten"}
# ONNX ops whose output is int64 (the inventory counts them).
ONNX_INT64_PRODUCERS = {"Shape", "Size", "NonZero", "ArgMax", "ArgMin", "TopK", "NonMaxSuppression", "Range"}

# TF op -> {input index: role}
TF_ROLES = {
    "StridedSlice": {1: "begin", 2: "end", 3: "strides"}, "Slice": {1: "begin", 2: "size"},
    "Reshape": {1: "shape"}, "GatherV2": {1: "indices", 2: "axis"}, "GatherNd": {1: "indices"},
    "Gather": {1: "indices"}, "Range": {0: "start", 1: "limit", 2: "delta"}, "Fill": {0: "dims"},
    "Tile": {1: "multiples"}, "BroadcastTo": {1: "shape"}, "Pad": {1: "paddings"}, "PadV2": {1: "paddings"},
    "MirrorPad": {1: "paddings"}, "TopKV2": {1: "k"}, "SparseToDense": {0: "indices", 1: "output_shape"},
    "OneHot": {1: "depth"}, "ConcatV2": {}, "ExpandDims": {1: "axis"}, "Squeeze": {},
    "ResizeBilinear": {1: "size"}, "ResizeNearestNeighbor": {1: "size"}, "ScatterNd": {1: "indices", 2: "shape"},
}
SLICE_BOUND_ROLES = {("StridedSlice", "begin"), ("StridedSlice", "end"), ("Slice", "begin"), ("Slice", "size")}


def narrow(values) -> np.ndarray:
    """What tensorflowjs_converter stores for int64 values: a plain numpy cast to int32 (wraps around)."""
    return np.asarray(values, dtype=np.int64).astype(np.int32)


def out_of_range_mask(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.int64)
    return (a > INT32_MAX) | (a < INT32_MIN)


def describe_int(v: int) -> str:
    names = {int(np.iinfo(np.int64).max): "INT64_MAX", int(np.iinfo(np.int64).min): "INT64_MIN"}
    return names.get(int(v), str(int(v)))


def output_kind(name: str) -> tuple[str, int] | None:
    """('cls'|'dis', stride) for signature outputs ``cls_pred_stride_{s}`` / ``dis_pred_stride_{s}``."""
    m = re.fullmatch(r"(cls|dis)_pred_stride_(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else None


def channel_meaning(output: str, channels, reg_max: int | None, num_channels: int | None = None) -> dict:
    """Map output channel indices to class indices (cls outputs) or box sides (dis outputs)."""
    channels = sorted(int(c) for c in channels)
    kind = output_kind(output)
    if kind is None:
        return {"channels": channels}
    if kind[0] == "cls":
        return {"classes": channels}
    bins = (reg_max + 1) if reg_max is not None else (num_channels // 4 if num_channels else None)
    if not bins:
        return {"channels": channels}
    return {"channels": channels, "sides": sorted({SIDES[c // bins] for c in channels if c // bins < 4})}


def slice_effect(start: int, end: int, step: int, dim: int | None) -> list[int] | None:
    """Indices an ONNX Slice keeps on an axis of length ``dim`` (python slicing = ONNX clamping)."""
    if dim is None or step == 0:
        return None
    return list(range(dim))[slice(int(start), int(end), int(step))]

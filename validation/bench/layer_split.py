"""Per-layer split of a TFJS model's convolution time, from the kernel records of ``js/run_graph_model.mjs
--profile 1`` (``meta["kernel_records"]``: every kernel call in execution order with its input and output shapes).

Why: the kernel split by type (``measurement.kernel_profile``) says that the convolutions take most of the time,
not which ones, nor whether some run far below the others' speed. A conv's multiply-adds follow from its shapes
(NHWC output [1, H, W, C_out], filter [kH, kW, C_in, C_out] or depthwise [kH, kW, C, multiplier]), so each
record gives its achieved multiply-adds per second, comparable across layers of any size.
"""
from __future__ import annotations

import statistics

CONV_KERNELS = ("FusedConv2D", "Conv2D")
DEPTHWISE_KERNELS = ("FusedDepthwiseConv2D", "DepthwiseConv2dNative")


def kernel_macs(record: dict) -> int | None:
    """Multiply-adds of one conv kernel call (None for any other kernel)."""
    name = record["name"]
    if name not in CONV_KERNELS + DEPTHWISE_KERNELS:
        return None
    out, filt = record["output_shapes"][0], record["input_shapes"][1]
    n, h, w, c_out = out
    taps = filt[0] * filt[1] * (filt[2] if name in CONV_KERNELS else 1)
    return n * h * w * c_out * taps


def conv_layers(runs: list[list[dict]]) -> list[dict]:
    """One row per conv kernel call, in execution order: its shapes, multiply-adds, median and fastest ms over
    the profiled inferences ``runs`` (each a list of kernel records of one inference, same graph), and its
    multiply-adds per second (G/s) at the fastest time: on a shared machine the minimum is the least disturbed."""
    if not runs or any(len(r) != len(runs[0]) for r in runs):
        raise ValueError("kernel records of different graphs (or none)")
    rows = []
    for i, rec in enumerate(runs[0]):
        macs = kernel_macs(rec)
        if macs is None:
            continue
        times = [r[i]["ms"] for r in runs]
        fastest = min(times)
        rows.append({"index": i, "kernel": rec["name"], "input": rec["input_shapes"][0],
                     "filter": rec["input_shapes"][1], "output": rec["output_shapes"][0], "macs": macs,
                     "median_ms": statistics.median(times), "min_ms": fastest,
                     "gmacs_per_s": macs / fastest / 1e6 if fastest > 0 else None})
    return rows

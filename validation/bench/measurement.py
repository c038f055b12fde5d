"""Latency and AP of one model, through validation's runners.

TFJS models run in Node (``validation.runners.tfjs_node.TfjsNodeRunner``, ``js/run_graph_model.mjs``): it loads
the model (timed), runs one warm-up inference (the "first" inference), then one inference per image, each timed.
The wasm median of the AP run is over all the images, the cpu median over a few. ``interleaved_wasm`` then
re-times every TFJS model in rounds (every model once per round) so that load from other processes hits all rows
alike, and ``kernel_profile`` runs a few inferences under ``tf.profile`` (a separate run: profiling slows it).
PyTorch and onnxruntime (``TorchRunner``, ``OnnxRunner``) are timed in Python, one image per inference.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from validation.runners.base import stack_items
from validation.runners.tfjs_node import TfjsNodeRunner

from .data import BenchData
from .variants import TfjsTarget

# the network's convolutions in our models: each carries a bias (batch norm folded), so TFJS fuses every one;
# an unfused conv is graph glue (tf_nhwc: the fixed depthwise kernel of the exact x2 upsampling)
CONV_KERNELS = ("FusedConv2D", "FusedDepthwiseConv2D")


def median(values) -> float | None:
    return float(statistics.median(values)) if values else None


def tfjs_runner(target: TfjsTarget, backend: str = "wasm", profile: bool = False) -> TfjsNodeRunner:
    """The Node runner of ``target`` with one warm-up inference (kernel times per inference with ``profile``)."""
    return TfjsNodeRunner(target.model_json, target.io, backend=backend, name=target.label, warmup=1,
                          profile=profile)


def job_runner(target):
    """The runner that re-times ``target`` in the interleaved rounds: a TFJS model in Node, or a target that makes
    its own (``runner()``: the onnxruntime-web rows, ``ort_web.OrtWebTarget``)."""
    make = getattr(target, "runner", None)
    return make() if make is not None else tfjs_runner(target)


def measure_tfjs(target: TfjsTarget, data: BenchData, cpu_runs: int) -> dict:
    """wasm on every image (the latency and the AP), then cpu on the first ``cpu_runs`` (0: skipped)."""
    runner = tfjs_runner(target)
    outputs = runner.run(data.tensor)
    meta = runner.meta
    out: dict = {"wasm": {"load_ms": meta["load_ms"], "first_ms": meta["warmup_ms"][0],
                          "median_ms": median(meta["infer_ms"]), "runs": len(meta["infer_ms"]),
                          "ap_run_median_ms": median(meta["infer_ms"]),
                          "simd": meta.get("simd"), "threads": meta.get("threads"),
                          "execute_async": meta.get("execute_async"), "tfjs": meta.get("tfjs_version")}}
    out["ap"] = data.ap(outputs)
    if cpu_runs:
        runner = tfjs_runner(target, "cpu")
        runner.run(data.tensor[:cpu_runs])
        meta = runner.meta
        out["cpu"] = {"load_ms": meta["load_ms"], "first_ms": meta["warmup_ms"][0],
                      "median_ms": median(meta["infer_ms"]), "runs": len(meta["infer_ms"])}
    return out


def interleaved_wasm(rows: list[dict], jobs: dict[str, TfjsTarget], batch: np.ndarray, rounds: int) -> None:
    """Warm wasm latency, interleaved: each round runs every job once (1 warm-up + one timed inference per image
    of ``batch``). ``jobs``: row label -> its model. Sets wasm.median_ms (whole inference: feed in, execute,
    outputs read) and wasm.execute_median_ms (``model.execute`` alone) over all rounds."""
    runners = {label: job_runner(target) for label, target in jobs.items()}
    times: dict[str, list[float]] = {label: [] for label in jobs}
    execute: dict[str, list[float]] = {label: [] for label in jobs}
    for _ in range(rounds):
        for label, runner in runners.items():
            runner.run(batch)
            times[label] += runner.meta["infer_ms"]
            execute[label] += runner.meta.get("execute_ms", [])
    for row in rows:
        if times.get(row["label"]):
            row["wasm"]["median_ms"] = median(times[row["label"]])
            row["wasm"]["execute_median_ms"] = median(execute[row["label"]])
            row["wasm"]["runs"] = len(times[row["label"]])
            row["wasm"]["interleaved"] = f"{rounds} rounds x {len(batch)}"


def kernel_profile(target: TfjsTarget, batch: np.ndarray) -> dict:
    """Kernel time per kernel name (tf.profile in the Node runner, wasm), median over the images of ``batch``."""
    runner = tfjs_runner(target, profile=True)
    runner.run(batch)
    per_run = runner.meta["kernel_ms"]
    names = sorted({k for run in per_run for k in run})
    kernels = {k: median([run.get(k, 0.0) for run in per_run]) for k in names}
    return {"runs": len(per_run), "total_ms": median([sum(run.values()) for run in per_run]),
            "conv_ms": median([sum(v for k, v in run.items() if k in CONV_KERNELS) for run in per_run]),
            "kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1]))}


def measure_python(make_runner, data: BenchData, warm: int) -> dict:
    """``make_runner()`` (timed as 'load'); then the first inference, ``warm`` timed ones, and AP on all images,
    one image per inference."""
    tensor = data.tensor
    t0 = time.perf_counter()
    runner = make_runner()
    load = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    runner.run(tensor[:1])
    first = (time.perf_counter() - t0) * 1000
    times = []
    for i in range(warm):
        one = tensor[i % len(tensor):][:1]
        t0 = time.perf_counter()
        runner.run(one)
        times.append((time.perf_counter() - t0) * 1000)
    outputs = stack_items([runner.run(tensor[i:i + 1]) for i in range(len(tensor))])
    return {"python": {"load_ms": load, "first_ms": first, "median_ms": median(times), "runs": warm,
                       "threads": torch_threads()}, "ap": data.ap(outputs)}


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()

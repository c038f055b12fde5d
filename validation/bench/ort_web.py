"""The onnxruntime-web rows of the bench: our ``model.sim.onnx`` run by onnxruntime-web (wasm) in Node, at 1 thread
and at all cores, the runtime a JS user would pick instead of TFJS.

They are rows of the main (Node) table, marked ``alternative`` (never one of "our TFJS models" in the targets),
measured like the TFJS rows (every image, AP) and re-timed in the same interleaved rounds (``OrtWebTarget.runner``
is what ``measurement.job_runner`` calls). In Chromium they are measured with the other browser rows
(``chromium_rows``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contracts.manifest import Manifest
from validation.artifacts import stage_io_spec

from .data import BenchData
from .measurement import median
from .progress import log

ORT_LABEL = "onnxruntime-web"     # what --only selects them by
ALTERNATIVE = "onnxruntime-web"   # the rows' ``alternative`` mark


def thread_counts() -> list[int]:
    """1 thread and all cores (the OS's count), without repeats."""
    return sorted({1, os.cpu_count() or 1})


def threads_label(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads != 1 else "")


@dataclass
class OrtWebTarget:
    """Our model.sim.onnx at a thread count, in Node."""
    label: str
    onnx_path: Path
    io: object          # contracts.io_spec.IoSpec of the onnx_sim stage
    threads: int
    artifact: str

    def runner(self, warmup: int = 1):
        from validation.runners.onnx_web import OrtWebRunner
        return OrtWebRunner(self.onnx_path, self.io, "node", self.threads, name=self.label, warmup=warmup)


def sim_onnx(variants: dict, cfg) -> tuple[Path, object, str] | None:
    """(model.sim.onnx, its io spec, artifact name) of the first built variant that has one (they share the
    export), or None."""
    for found in variants.values():
        if isinstance(found, Path) and (found / "model.sim.onnx").is_file():
            manifest = Manifest.load(found)
            path = found / "model.sim.onnx"
            return path, stage_io_spec(manifest, "onnx_sim", path, cfg), found.name
    return None


def ort_web_targets(variants: dict, cfg) -> list[OrtWebTarget]:
    """One target per thread count; none where no variant has a model.sim.onnx."""
    found = sim_onnx(variants, cfg)
    if found is None:
        return []
    path, io, artifact = found
    return [OrtWebTarget(f"{ALTERNATIVE} ({threads_label(t)})", path, io, t, artifact) for t in thread_counts()]


def measure_ort_web(target: OrtWebTarget, data: BenchData) -> dict:
    """Every image (one warm-up first): the latency and the AP, with the threads onnxruntime-web settled on."""
    runner = target.runner()
    outputs = runner.run(data.tensor)
    meta = runner.meta
    return {"artifact": target.artifact, "size": target.onnx_path.stat().st_size, "alternative": ALTERNATIVE,
            "wasm": {"load_ms": meta["load_ms"], "first_ms": meta["warmup_ms"][0] if meta["warmup_ms"] else None,
                     "median_ms": median(meta["infer_ms"]), "runs": len(meta["infer_ms"]),
                     "ap_run_median_ms": median(meta["infer_ms"]), "threads": meta.get("threads"),
                     "requested_threads": target.threads, "ort": meta.get("ort")},
            "ap": data.ap(outputs)}


def add_ort_web_rows(rows: list[dict], measured: dict, targets: list[OrtWebTarget], data: BenchData, measure_row
                     ) -> None:
    """Append the Node onnxruntime-web rows (``rows.measure_row`` marks a failed one); measured ones join
    ``measured`` so that the interleaved rounds re-time them with the TFJS rows."""
    if not targets:
        log(f"- {ALTERNATIVE}: no model.sim.onnx among the built variants: rows skipped")
    for target in targets:
        measure_row(rows, target.label, _measure_and_record, target, data, measured)


def _measure_and_record(target: OrtWebTarget, data: BenchData, measured: dict) -> dict:
    res = measure_ort_web(target, data)
    measured[target.label] = target
    return res

"""One table row per artifact: measured, or marked with the error that stopped it (the other rows still run).

``measure_rows`` fills the rows in the table's order (PyTorch, onnxruntime, our variants, the peer) and returns
the TFJS models it measured by row label; ``refine_latency`` then profiles the kernels of ``PROFILED`` and the peer
and re-times every TFJS row in interleaved rounds. A failure is a row's ``error`` (or, for the refinements, a
line in ``failures``); the bench exits 1 on any of them.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT, artifacts_dir

from .artifact_facts import graph_facts
from .data import BenchData
from .measurement import interleaved_wasm, kernel_profile, measure_python, measure_tfjs
from .progress import log
from .variants import (PEER_LABEL, PROFILED, VARIANTS, TfjsTarget, peer_measured, peer_target, selected,
                       variant_target)

ROW_ERRORS = (UserError, RuntimeError, OSError, KeyError, ValueError)  # what marks a row instead of ending the run


def short_error(exc: BaseException) -> str:
    """The error's first line, project paths made relative, at most 200 characters: what the row shows."""
    return str(exc).splitlines()[0].replace(str(PROJECT_ROOT) + os.sep, "")[:200]


def measure_row(rows: list[dict], label: str, measure, *args, **extra) -> None:
    """Append the row ``label``: ``extra`` and what ``measure(*args)`` returns, or the error it raised."""
    log(f"- {label}")
    row = {"label": label, **extra}
    try:
        row.update(measure(*args))
    except ROW_ERRORS as exc:
        row["error"] = short_error(exc)
        log(f"  error: {row['error']}")
    rows.append(row)


def pytorch_row(cfg, data: BenchData, runs: int) -> dict:
    from validation.runners.pytorch import TorchRunner
    return measure_python(functools.partial(TorchRunner.from_config, cfg), data, runs)


def onnxruntime_row(cfg, onnx_path: Path, data: BenchData, runs: int) -> dict:
    """The artifact's ``model.onnx`` (the default artifact of the model: the export all variants share)."""
    from contracts.signature import output_names
    from validation.runners.onnxruntime_runner import OnnxRunner

    if not onnx_path.is_file():
        raise RuntimeError(f"{onnx_path} not built")
    make = functools.partial(OnnxRunner, onnx_path, name="onnxruntime", output_names=output_names(cfg.strides))
    return {"size": onnx_path.stat().st_size, **measure_python(make, data, runs)}


def tfjs_row(target: TfjsTarget, data: BenchData, cpu_runs: int, measured: dict[str, TfjsTarget]) -> dict:
    """Static facts and latency / AP of one TFJS model; ``measured`` records it for the later refinements."""
    res = {"artifact": target.artifact, **graph_facts(target.model_json)}
    res.update(measure_tfjs(target, data, cpu_runs))
    measured[target.label] = target
    return res


def variant_row(label: str, found: Path | RuntimeError, cfg, data: BenchData, cpu_runs: int,
                measured: dict[str, TfjsTarget]) -> dict:
    """One of our variants: its conversion's error, or its measurements."""
    if isinstance(found, Exception):
        raise found
    return tfjs_row(variant_target(label, found, cfg), data, cpu_runs, measured)


def peer_row(data: BenchData, cpu_runs: int, measured: dict[str, TfjsTarget]) -> dict:
    return tfjs_row(peer_target(), data, cpu_runs, measured)


def measure_rows(args, cfg, data: BenchData, variants: dict[str, Path | RuntimeError], wanted: set[str] | None
                 ) -> tuple[list[dict], dict[str, TfjsTarget]]:
    """Every row ``wanted`` lets run (None: all), in the table's order; ``variants``: the selected variants'
    folders (``prepare_variants``). Returns (rows, the TFJS models measured by row label)."""
    rows: list[dict] = []
    measured: dict[str, TfjsTarget] = {}
    if selected("PyTorch", wanted):
        measure_row(rows, "PyTorch", pytorch_row, cfg, data, args.python_runs)
    if selected("onnxruntime", wanted):
        onnx_path = artifacts_dir() / cfg.name / "model.onnx"   # cfg.name: m-416, or m-416-320x320 at another size
        measure_row(rows, "onnxruntime", onnxruntime_row, cfg, onnx_path, data, args.python_runs)
    for label, _, _ in VARIANTS:
        if label in variants:
            measure_row(rows, label, variant_row, label, variants[label], cfg, data, args.cpu_runs, measured)
    if peer_measured(cfg.name) and selected(PEER_LABEL, wanted):
        measure_row(rows, PEER_LABEL, peer_row, data, args.cpu_runs, measured, peer=True)
    return rows, measured


def refine_latency(args, rows: list[dict], measured: dict[str, TfjsTarget], data: BenchData) -> list[str]:
    """The kernel profiles (``--profile-runs``) and the interleaved wasm medians (``--rounds``) of the measured
    TFJS rows; returns what failed (a failed interleave keeps the medians of the AP runs)."""
    jobs = {r["label"]: measured[r["label"]] for r in rows if r.get("wasm") and r["label"] in measured}
    failures = profile_kernels(rows, jobs, data, args.profile_runs) if args.profile_runs else []
    if jobs and args.rounds:
        log(f"- warm wasm latency, interleaved ({args.rounds} rounds x {args.per_round})")
        try:
            interleaved_wasm(rows, jobs, data.tensor[:max(args.per_round, args.profile_runs)], args.rounds)
        except (UserError, RuntimeError) as exc:
            log(f"  error: {exc} (medians stay those of the AP runs)")
            failures.append(f"interleaved wasm latency: {exc}")
    return failures


def profile_kernels(rows: list[dict], jobs: dict[str, TfjsTarget], data: BenchData, runs: int) -> list[str]:
    """``profile`` of the ``PROFILED`` row and the peer's: kernel times over ``runs`` images; returns failures."""
    failures = []
    by_label = {r["label"]: r for r in rows}
    for label in [label for label in jobs if label in (PROFILED, PEER_LABEL)]:
        log(f"- kernel profile: {label} (tf.profile, {runs} inferences)")
        try:
            by_label[label]["profile"] = kernel_profile(jobs[label], data.tensor[:runs])
        except (UserError, RuntimeError) as exc:
            log(f"  error: {exc}")
            failures.append(f"kernel profile of {label}: {exc}")
    return failures

"""``python -m commands bench --model m-416`` (``make bench``): size, graph ops, latency and AP of every artifact.

Variants not built yet are converted first (``validation.bench.variants``), then every row is measured
(``rows``), the TFJS rows' kernels profiled and their wasm latency re-timed in interleaved rounds, and the tables
rendered (``rendering``). Writes ``artifacts/bench/<model>.md`` (the tables, also on stdout) and ``<model>.json``
(everything, with per-op-type counts and per-kernel times). Exit code 1 when any row or measurement failed (the
tables are still written; a failed row says why, and so does the last line, ``error: ...``), 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from contracts.atomic import write_text
from contracts.errors import ReportedError, UserError, run_main
from contracts.paths import artifacts_dir

from validation.bench.data import load_bench_data
from validation.bench.measurement import torch_threads
from validation.bench.progress import log
from validation.bench.rendering import render, targets
from validation.bench.rows import measure_rows, refine_latency
from validation.bench.variants import PROFILED, prepare_variants, wanted_labels


class BenchFailed(ReportedError):
    """A row or measurement of the bench failed: the tables are still written, the exit code is 1."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="m-416", help="model name in configs/ (default m-416)")
    p.add_argument("--config", help="(not supported: bench compares named models with the peer)")
    p.add_argument("--checkpoint", help="(not supported by bench)")
    p.add_argument("--images", type=int, default=None, help="use only the first N shared images")
    p.add_argument("--cpu-runs", type=int, default=2, help="warm inferences on the TFJS cpu backend (0: skip)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved wasm latency rounds (0: use the AP run)")
    p.add_argument("--per-round", type=int, default=10, help="timed wasm inferences per model per round")
    p.add_argument("--profile-runs", type=int, default=5,
                   help=f"inferences under tf.profile for the {PROFILED} and peer kernel split (0: skip)")
    p.add_argument("--python-runs", type=int, default=10, help="warm inferences for PyTorch / onnxruntime")
    p.add_argument("--only", default=None, help="comma-separated labels to run (e.g. 'onnx2tf float32,peer')")
    p.add_argument("--no-convert", action="store_true", help="skip variants not converted yet")
    p.add_argument("--out", default=None, help="output folder (default artifacts/bench)")
    return p


def run(args) -> int:
    """Measure, render, write; BenchFailed (exit 1) after writing when anything failed."""
    from nanodet_ref.config import load_config

    if args.config or args.checkpoint:
        raise UserError("--config/--checkpoint: bench runs on named models only (use --model)")
    cfg = load_config(args.model)
    t_start = time.perf_counter()
    wanted = wanted_labels(args.only)
    data = load_bench_data(cfg, args.images)
    log(f"bench {args.model}: {len(data.files)} images")
    variants = prepare_variants(args.model, wanted, args.no_convert)
    rows, measured = measure_rows(args, cfg, data, variants, wanted)
    failures = [f"{row['label']}: {row['error']}" for row in rows if row.get("error")]
    failures += refine_latency(args, rows, measured, data)

    meta = run_meta(args, rows, len(data.files), t_start)
    text = render(rows, meta)
    out_dir = Path(args.out) if args.out else artifacts_dir() / "bench"
    write_text(out_dir / f"{args.model}.md", text)
    write_text(out_dir / f"{args.model}.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(text)
    log(f"bench took {meta['seconds']} s; wrote {out_dir / (args.model + '.md')} and .json")
    if failures:
        raise BenchFailed(f"{len(failures)} bench measurement(s) failed (marked in the table): "
                          + "; ".join(failures))
    return 0


def run_meta(args, rows: list[dict], images: int, t_start: float) -> dict:
    """What the tables' title, footnote and targets say about the run."""
    wasm = next((r["wasm"] for r in rows if r.get("wasm")), {})
    meta = {"model": args.model, "date": time.strftime("%Y-%m-%d"), "images": images,
            "device": f"{os.cpu_count()} CPU cores, Node {node_version()}",
            "wasm_note": f"wasm: SIMD {wasm.get('simd')}, {wasm.get('threads')} thread",
            "torch_threads": torch_threads(),
            "interleave": f"{args.rounds} interleaved rounds x {args.per_round} per model" if args.rounds else None,
            "seconds": round(time.perf_counter() - t_start, 1)}
    meta["targets"] = targets(rows)
    return meta


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def parse_and_run(argv=None) -> int:
    return run(parser().parse_args(argv))


def main(argv=None) -> int:
    return run_main(parse_and_run, argv)

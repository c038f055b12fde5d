"""``python -m commands bench --model m-416`` (``make bench``): size, graph ops, latency and AP of every artifact.

Variants not built yet are converted first (``validation.bench.variants``), then every row is measured
(``rows``; onnxruntime-web on our model.sim.onnx in Node: ``ort_web``), the TFJS rows' kernels profiled and their
wasm latency re-timed in interleaved rounds; then the same models in headless Chromium (wasm at 1 thread and all
cores, WebGL through SwiftShader) and the browser fidelity stages (``browser``), and the tables rendered
(``rendering``, ``runtime_table``). Writes ``artifacts/bench/<model>.md`` (the tables, also on stdout) and
``<model>.json`` (everything, with per-op-type counts and per-kernel times). Exit code 1 when any row or measurement failed (the
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
from validation.bench.browser import browser_targets, measure_browser, render_browser, targets_text
from validation.bench.ort_web import ORT_LABEL, add_ort_web_rows, ort_web_targets
from validation.bench.rows import measure_row, measure_rows, refine_latency
from validation.bench.variants import PROFILED, prepare_variants, selected, wanted_labels


class BenchFailed(ReportedError):
    """A row or measurement of the bench failed: the tables are still written, the exit code is 1."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="m-416", help="model name in configs/ (default m-416)")
    p.add_argument("--config", help="(not supported: bench compares named models with the peer)")
    p.add_argument("--checkpoint", help="(not supported by bench)")
    p.add_argument("--input-size", metavar="W,H", help="the model at this input size (artifacts <model>-WxH-..., "
                                                       "converted with --input-size where not built yet)")
    p.add_argument("--images", type=int, default=None, help="use only the first N shared images")
    p.add_argument("--cpu-runs", type=int, default=2, help="warm inferences on the TFJS cpu backend (0: skip)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved wasm latency rounds (0: use the AP run)")
    p.add_argument("--per-round", type=int, default=10, help="timed wasm inferences per model per round")
    p.add_argument("--profile-runs", type=int, default=5,
                   help=f"inferences under tf.profile for the {PROFILED} and peer kernel split (0: skip)")
    p.add_argument("--python-runs", type=int, default=10, help="warm inferences for PyTorch / onnxruntime")
    p.add_argument("--webgl-images", type=int, default=1,
                   help="timed WebGL (SwiftShader) inferences per model per round in Chromium")
    p.add_argument("--no-browser", action="store_true",
                   help="skip the Chromium rows and the browser fidelity stages (quick runs)")
    p.add_argument("--only", default=None, help="comma-separated labels to run (e.g. 'onnx2tf float32,peer')")
    p.add_argument("--no-convert", action="store_true", help="skip variants not converted yet")
    p.add_argument("--out", default=None, help="output folder (default artifacts/bench)")
    return p


def run(args) -> int:
    """Measure, render, write; BenchFailed (exit 1) after writing when anything failed."""
    from nanodet_ref.config import load_config
    from nanodet_ref.input_size import parse_input_size, with_input_size

    if args.config or args.checkpoint:
        raise UserError("--config/--checkpoint: bench runs on named models only (use --model)")
    size = parse_input_size(args.input_size)
    cfg = with_input_size(load_config(args.model), size)   # named m-416-320x320 at another size
    t_start = time.perf_counter()
    wanted = wanted_labels(args.only)
    data = load_bench_data(cfg, args.images)
    log(f"bench {cfg.name}: {len(data.files)} images")
    variants = prepare_variants(args.model, wanted, args.no_convert, size if cfg.name != args.model else None)
    rows, measured = measure_rows(args, cfg, data, variants, wanted)
    if selected(ORT_LABEL, wanted):
        add_ort_web_rows(rows, measured, ort_web_targets(variants, cfg), data, measure_row)
    failures = [f"{row['label']}: {row['error']}" for row in rows if row.get("error")]
    failures += refine_latency(args, rows, measured, data)
    out_dir = Path(args.out) if args.out else artifacts_dir() / "bench"
    browser = {"rows": [], "fidelity": None, "facts": {}, "failures": [], "note": "skipped (--no-browser)"}
    if not args.no_browser:
        browser = measure_browser(args, cfg, data, rows, measured, variants, out_dir)
    failures += browser["failures"]

    meta = run_meta(args, rows, len(data.files), t_start, cfg.name)
    meta["targets"] += browser_targets(rows, browser)
    text = render(rows, {**meta, "targets": []}) + render_browser(rows, browser, node_version()) + \
        targets_text(meta["targets"])
    write_text(out_dir / f"{cfg.name}.md", text)
    write_text(out_dir / f"{cfg.name}.json", json.dumps({"meta": meta, "rows": rows, "browser": browser}, indent=1))
    print(text)
    log(f"bench took {meta['seconds']} s; wrote {out_dir / (cfg.name + '.md')} and .json")
    if failures:
        raise BenchFailed(f"{len(failures)} bench measurement(s) failed (marked in the table): "
                          + "; ".join(failures))
    return 0


def run_meta(args, rows: list[dict], images: int, t_start: float, model: str | None = None) -> dict:
    """What the tables' title, footnote and targets say about the run (``model``: the name at its input size)."""
    wasm = next((r["wasm"] for r in rows if r.get("wasm")), {})
    meta = {"model": model or args.model, "date": time.strftime("%Y-%m-%d"), "images": images,
            "make_args": f"MODEL={args.model}" + (f" INPUT_SIZE={args.input_size}" if model and model != args.model
                                                   else ""),
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

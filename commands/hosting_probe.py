"""``python -m commands hosting-probe --artifact DIR``: the wasm runtimes in headless Chromium hosted on the page's
main thread and in a Web Worker, timed in interleaved rounds of one browser (``validation.bench.hosting``); prints a
markdown table. DIR: a converted m-416 tf_nhwc artifact (tfjs/ and model.sim.onnx), compared with the peer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.errors import UserError, run_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands hosting-probe", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", required=True, metavar="DIR", help="a converted m-416 tf_nhwc artifact folder")
    p.add_argument("--images", type=int, default=8, help="the first N shared images (AP pass; default 8)")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    p.add_argument("--per-round", type=int, default=4, help="timed inferences per model per round (default 4)")
    p.add_argument("--worker-first", action="store_true", help="worker pages before main ones in every round")
    return p


def check_artifact(folder: Path) -> None:
    """UserError where ``folder`` lacks what the probe runs."""
    for need in ("manifest.json", "tfjs/model.json", "model.sim.onnx"):
        if not (folder / need).is_file():
            raise UserError(f"{folder / need}: not found: --artifact needs a converted tf_nhwc artifact "
                            "(python -m commands convert --model m-416 --backend tf_nhwc)")


def _main(argv=None) -> int:
    from nanodet_ref.config import load_config
    from validation.bench.data import load_bench_data
    from validation.bench.hosting import measure_hosting, render_hosting
    from validation.runners.chromium_session import browser_missing

    args = parser().parse_args(argv)
    folder = Path(args.artifact)
    check_artifact(folder)
    if min(args.images, args.rounds, args.per_round) < 1:
        raise UserError("--images, --rounds and --per-round must be at least 1")
    missing = browser_missing()
    if missing:
        raise UserError(missing)
    cfg = load_config("m-416")
    rows, browser = measure_hosting(folder, cfg, load_bench_data(cfg, args.images), args.rounds, args.per_round,
                                    args.worker_first)
    print(f"{browser}, {folder.name}: {args.images} images (AP), {args.rounds} rounds x {args.per_round} per model "
          f"({'worker' if args.worker_first else 'main'} pages first); median ms")
    print("\n".join(render_hosting(rows)))
    sys.stdout.flush()
    return 0


def main(argv=None) -> int:
    return run_main(_main, argv)

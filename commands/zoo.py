"""``python -m commands zoo`` (``make zoo``): every config of a folder converted and validated, in one table.

    python -m commands zoo                                # the shared upstream configs, default backend
    python -m commands zoo --configs my-configs/ --backend onnx2tf --limit 4

Default folder: the shared unchanged copies of upstream's configs (``<shared>/reference/upstream-configs``).
Each config runs ``python -m commands convert`` (opset 10) into its own folder under ``--out`` (default
``artifacts/zoo``), validated on the first ``--limit`` images; the table goes to the console and, with every
detail, to ``zoo.json`` and ``zoo.md`` there. Exit 0 where every row passed or is an expected refusal
(``validation.zoo.expected``), 1 otherwise, 2 on bad input.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from contracts.errors import ReportedError, UserError, run_main
from contracts.paths import SHARED_ENV, artifacts_dir, shared_path
from converters.options import BACKENDS, DEFAULT_BACKEND
from converters.pipeline import STAGE_NAMES

UPSTREAM_CONFIGS = ("reference", "upstream-configs")
DEFAULT_LIMIT = 8


class ZooFailed(ReportedError):
    """A config failed, or was refused without being an expected refusal: exit 1 (the table is written)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands zoo", description=__doc__.split("\n")[0])
    p.add_argument("--configs", metavar="DIR", help="folder of NanoDet configs (default: the shared upstream copies)")
    p.add_argument("--out", metavar="DIR", help="output folder (default artifacts/zoo)")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help="ONNX -> SavedModel converter")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"validation images per config (default {DEFAULT_LIMIT})")
    p.add_argument("--until", choices=STAGE_NAMES, metavar="STAGE",
                   help=f"build the stages up to this one only ({', '.join(STAGE_NAMES[:-1])}; quick runs)")
    p.add_argument("--audit", action="store_true", help="run the int64 audit of each conversion too")
    p.add_argument("--random-weights", action="store_true",
                   help="seeded random weights even where the toolkit has the model's real checkpoint")
    return p


def configs_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    found = shared_path(*UPSTREAM_CONFIGS)
    if found is None:
        raise UserError(f"the shared upstream configs (<shared>/{'/'.join(UPSTREAM_CONFIGS)}) are absent: set "
                        f"{SHARED_ENV} to the shared folder or give --configs DIR")
    return found


def run(args, argv: list[str]) -> int:
    from validation.zoo import PASSING, ZooSettings, console_table, run_zoo

    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a number of images >= 1")
    folder = configs_folder(args.configs)
    out = Path(args.out) if args.out else artifacts_dir() / "zoo"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    settings = ZooSettings(out=out, backend=args.backend, limit=args.limit, until=args.until, audit=args.audit,
                           random_weights=args.random_weights)
    command = " ".join(["python -m commands zoo", *(shlex.quote(a) for a in argv)])
    summary = run_zoo(folder, settings, command, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(console_table(summary["rows"]))
    print(f"\n{len(summary['rows'])} configs in {summary['seconds'] / 60:.1f} min; wrote {out / 'zoo.md'} and "
          f"zoo.json", file=sys.stderr)
    bad = [r for r in summary["rows"] if r["result"] not in PASSING]
    if bad:
        raise ZooFailed(f"{len(bad)} of {len(summary['rows'])} configs failed or were refused: "
                        + ", ".join(r["config"] for r in bad))
    return 0


def parse_and_run(argv=None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    return run(parser().parse_args(argv), argv)


def main(argv=None) -> int:
    return run_main(parse_and_run, argv)

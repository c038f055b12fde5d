"""The zoo: every NanoDet config of a folder (by default the shared unchanged copies of upstream's) converted at
opset 10 and validated on a few images, in one table (``python -m commands zoo``, ``make zoo``).

Per config (``runner``): the toolkit's convert command in a child process, into ``<out>/<config>[-backend]/``,
with the real checkpoint where the toolkit has one for the same model (``weights``), else seeded random weights;
its stage results, worst max_abs_diff and matched fraction from its validation.json; the structural oracle check
where one exists (``oracle``). A config the converter refuses is a row with its one-line refusal: expected for
the few in ``expected``, a failure for any other. The table (``table``) goes to the console and, with everything,
to ``<out>/zoo.json`` and ``<out>/zoo.md``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from contracts.atomic import write_json, write_text
from contracts.errors import UserError
from converters.sources import display_path

from .runner import ZooSettings, run_config
from .table import console_table, markdown_report
from .weights import toolkit_checkpoints

PASSING = ("PASS", "EXPECTED REFUSAL")


def config_files(folder: Path) -> list[Path]:
    """The folder's ``*.yml`` / ``*.yaml`` files, sorted; UserError where there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--configs {folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise UserError(f"--configs {folder}: no *.yml config in it")
    return files


def progress_line(i: int, n: int, row: dict) -> str:
    detail = row.get("error") or ("" if row["result"] == "PASS" else row["builds"])
    return (f"[{i:>{len(str(n))}}/{n}] {row['config']:<36} {row['result']:<16} {row['seconds']:6.1f} s"
            f"{'  ' + detail[:110] if detail else ''}")


def run_zoo(folder: Path, settings: ZooSettings, command: str, log=print) -> dict:
    """Run every config of ``folder``; writes zoo.json and zoo.md into ``settings.out``; returns the summary
    (``verdict`` PASS where every row passed or is an expected refusal)."""
    files = config_files(folder)
    settings.out.mkdir(parents=True, exist_ok=True)
    known = {} if settings.random_weights else toolkit_checkpoints()
    t0, rows, load = time.perf_counter(), [], os.getloadavg()[0]
    log(f"zoo: {len(files)} configs of {display_path(folder)} -> {settings.out} (backend {settings.backend}, "
        f"{settings.limit} validation images each)")
    for i, path in enumerate(files, 1):
        rows.append(run_config(path, settings, known))
        log(progress_line(i, len(files), rows[-1]))
    summary = {"configs": display_path(folder), "command": command, "date": time.strftime("%Y-%m-%d"),
               "machine": f"{os.cpu_count()} CPU cores", "backend": settings.backend, "limit": settings.limit,
               "until": settings.until, "seconds": round(time.perf_counter() - t0, 1),
               "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 1),
               "load_average": [round(load, 1), round(os.getloadavg()[0], 1)],   # at start, at end (1 min)
               "verdict": "PASS" if all(r["result"] in PASSING for r in rows) else "FAIL", "rows": rows}
    write_json(settings.out / "zoo.json", summary)
    write_text(settings.out / "zoo.md", markdown_report(summary))
    return summary


__all__ = ["PASSING", "ZooSettings", "run_zoo", "console_table", "config_files"]

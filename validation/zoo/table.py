"""The zoo's one table, as console text and markdown, and the explicit table of expected refusals."""
from __future__ import annotations

from .expected import EXPECTED_REFUSALS
from .oracle import summary as oracle_cell
from .runner import STAGES

HEAD = ["config", "family", "backbone / neck", "weights", "builds", *STAGES, "worst max_abs_diff", "matched",
        "AP PyTorch / lowest stage", "oracle", "seconds", "CPU s", "result"]


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def cells(row: dict, width: int | None = None) -> list[str]:
    """One row's cells; ``width``: cut the long text cells (builds, weights, oracle) for the console."""
    def cut(text: str) -> str:
        return text if width is None or len(text) <= width else text[:width - 3] + "..."
    builds = row["builds"] if row["builds"] == "yes" else f"refused: {row['builds']}" \
        if row["result"] in ("REFUSED", "EXPECTED REFUSAL") else row["builds"]
    return [row["config"], row["family"], row["arch"], cut(row["weights"]), cut(builds),
            *(row["stages"][s] for s in STAGES), _num(row["max_abs_diff"], ".2g"), _num(row["matched"], ".3f"),
            f"{_num(row.get('ap'), '.4f')} / {_num(row.get('stage_ap'), '.4f')}", cut(oracle_cell(row["oracle"])),
            f"{row['seconds']:.0f}", f"{row['cpu_seconds']:.0f}", row["result"]]


def console_table(rows: list[dict], width: int = 48) -> str:
    table = [HEAD] + [cells(r, width) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(head: list[str], rows: list[list[str]]) -> str:
    def line(r):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"
    return "\n".join([line(head), "|" + "---|" * len(head)] + [line(r) for r in rows])


def expected_table() -> str:
    """The explicit list of configs the toolkit refuses on purpose, with why."""
    rows = [[e.what, f"`{e.file}`" if e.file else f"`{e.key}: {e.value}`", e.reason] for e in EXPECTED_REFUSALS]
    return markdown(["expected refusal", "recognised by", "why"], rows)


def markdown_report(summary: dict) -> str:
    rows = summary["rows"]
    lines = [f"# Zoo: {summary['configs']}", "",
             f"`{summary['command']}` on {summary['machine']}, {summary['date']}: backend {summary['backend']}, "
             f"opset 10, validation on {summary['limit']} image(s) per config; {len(rows)} configs in "
             f"{summary['seconds'] / 60:.1f} min wall, {summary['cpu_seconds'] / 60:.1f} CPU-min (load average "
             f"{summary['load_average'][0]} at the start, {summary['load_average'][1]} at the end); verdict: "
             f"**{summary['verdict']}**.", "",
             markdown(HEAD, [cells(r) for r in rows]), "",
             "Stage cells: PASS / FAIL is the stage's validation against PyTorch on the same weights; `-` not "
             "built. seconds: wall time; CPU s: the child's CPU time, which does not depend on what else the "
             "machine runs. Oracle: the deployed graph's conv kernels against the public ncnn export's "
             "(`validation/zoo/oracle.py`); `-` where none exists. Logs: `logs/<config>.log`.", "",
             "Expected refusals (a refusal of any other config fails the zoo):", "", expected_table()]
    failed = [r for r in rows if r["result"] in ("FAIL", "REFUSED")]
    if failed:
        lines += ["", "Failures:", ""] + [f"- {r['config']}: {r.get('error') or r['builds']}" for r in failed]
    return "\n".join(lines) + "\n"

"""Tables printed to the console by the command lines (the pipeline and the checks return data, not text)."""
from __future__ import annotations


def stage_table(results) -> str:
    """The convert command's table: one row per stage (``converters.pipeline.StageResult``)."""
    rows = [("stage", "output", "size", "seconds", "cached")]
    for r in results:
        rows.append((r.name, r.output, human_size(r.size), f"{r.seconds:.1f}", r.cached_label))
    widths = [max(len(x) for x in col) for col in zip(*rows)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(n: int) -> str:
    """Bytes as B / KB / MB / GB (powers of 1024, one decimal above bytes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"

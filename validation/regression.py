"""CI regression check of already-converted artifacts: today's validation vs the accepted figures.

The accepted figures are the ``validation.json`` written at convert time. A stage regresses when its pass flag
flips to FAIL, its max_abs_diff grows by more than the raw tolerance, its matched fraction drops, or its AP drops
by more than ``AP_DROP`` (0.002); a stage that disappeared regresses too. Files whose sha256 no longer matches
the manifest are reported as well (a tampered or corrupted artifact).
"""
from __future__ import annotations

AP_DROP = 0.002
MATCH_EPS = 1e-9


def compare_reports(accepted: dict, current: dict, raw_atol: float, only: list[str] | None = None
                    ) -> tuple[list[str], list[str]]:
    """(regressions, notes). Each regression names the stage and the metric; ``only`` limits the stages."""
    regressions, notes = [], []
    same_images = accepted.get("image_files") == current.get("image_files")
    if not same_images:
        notes.append("images differ from the accepted run: only pass flags compared")
    for name, acc in (accepted.get("stages") or {}).items():
        if only is not None and name not in only:
            continue
        cur = (current.get("stages") or {}).get(name)
        if cur is None:
            regressions.append(f"{name}: stage missing (accepted run had it)")
            continue
        if acc.get("pass") and not cur.get("pass"):
            why = "; ".join(cur.get("failures", [])[:3])
            regressions.append(f"{name}: pass flipped PASS -> FAIL ({why})")
        if not same_images:
            continue
        a, c = acc.get("max_abs_diff"), cur.get("max_abs_diff")
        if a is not None and (c is None or c > a + raw_atol):
            regressions.append(f"{name}: max_abs_diff grew from {a:.3g} to "
                               f"{'non-finite/missing' if c is None else f'{c:.3g}'} (tolerance {raw_atol:g})")
        a, c = acc.get("matched_fraction"), cur.get("matched_fraction")
        if a is not None and (c is None or c < a - MATCH_EPS):
            regressions.append(f"{name}: matched_fraction dropped from {a:.4f} to "
                               f"{'-' if c is None else f'{c:.4f}'}")
        a, c = acc.get("ap"), cur.get("ap")
        if a is not None and (c is None or c < a - AP_DROP):
            regressions.append(f"{name}: ap dropped from {a:.4f} to {'-' if c is None else f'{c:.4f}'} "
                               f"(> {AP_DROP})")
    return regressions, notes

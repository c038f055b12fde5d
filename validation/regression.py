"""CI regression check of already-converted artifacts: today's validation vs the accepted figures.

The accepted figures are the ``validation.json`` written at convert time. A stage regresses when its pass flag
flips to FAIL, an output's max |diff| grows by more than that output's raw tolerance (``atol + rtol * scale``, as
the verdict uses it: ``comparators.output_tolerance``), its matched fraction drops, it has more unexplained
detection differences, or its AP drops by more than ``AP_DROP`` (0.002); a stage that disappeared regresses too.
Files whose sha256 no longer matches the manifest are reported as well (a tampered or corrupted artifact).
"""
from __future__ import annotations

AP_DROP = 0.002
MATCH_EPS = 1e-9


def compare_reports(accepted: dict, current: dict, raw_atol: float, only: list[str] | None = None
                    ) -> tuple[list[str], list[str]]:
    """(regressions, notes). Each regression names the stage and the metric; ``only`` limits the stages.

    Outputs are compared one by one with the tolerance the current report judged them by; ``raw_atol`` is the
    tolerance for reports that do not state one per output (written before rtol existed)."""
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
        regressions += _diff_growth(name, acc, cur, raw_atol)
        a, c = acc.get("matched_fraction"), cur.get("matched_fraction")
        if a is not None and (c is None or c < a - MATCH_EPS):
            regressions.append(f"{name}: matched_fraction dropped from {a:.4f} to "
                               f"{'-' if c is None else f'{c:.4f}'}")
        a, c = acc.get("unexplained"), cur.get("unexplained")
        if a is not None and c is not None and c > a:
            regressions.append(f"{name}: unexplained detection differences rose from {a} to {c}")
        a, c = acc.get("ap"), cur.get("ap")
        if a is not None and (c is None or c < a - AP_DROP):
            regressions.append(f"{name}: ap dropped from {a:.4f} to {'-' if c is None else f'{c:.4f}'} "
                               f"(> {AP_DROP})")
    return regressions, notes


def _diff_growth(name: str, acc: dict, cur: dict, raw_atol: float) -> list[str]:
    """Outputs whose max |diff| grew by more than their tolerance; the stage's overall figure where the reports
    have no per-output tolerance, and always when today's figure is missing or non-finite."""
    a, c = acc.get("max_abs_diff"), cur.get("max_abs_diff")
    if a is None:
        return []
    if c is None:
        return [f"{name}: max_abs_diff grew from {a:.3g} to non-finite/missing (tolerance {raw_atol:g})"]
    acc_outs, cur_outs = acc.get("outputs") or {}, cur.get("outputs") or {}
    judged = [o for o in acc_outs if (cur_outs.get(o) or {}).get("tolerance") is not None
              and acc_outs[o].get("max_abs_diff") is not None]
    if not judged:
        return [f"{name}: max_abs_diff grew from {a:.3g} to {c:.3g} (tolerance {raw_atol:g})"] \
            if c > a + raw_atol else []
    grown = []
    for o in judged:
        ao, co, tol = acc_outs[o]["max_abs_diff"], cur_outs[o].get("max_abs_diff"), cur_outs[o]["tolerance"]
        if co is None or co > ao + tol:
            grown.append(f"{name}: {o} max_abs_diff grew from {ao:.3g} to "
                         f"{'non-finite/missing' if co is None else f'{co:.3g}'} (tolerance {tol:.3g})")
    return grown

"""How localisation shows in report.md and on the console: per localised stage, the chain around its first
divergence (the last tensors that still agreed, then the first that does not) and the notes."""
from __future__ import annotations

from ..evaluate import order_stages


def _num(v) -> str:
    if v is None:
        return "-"
    return "0" if v == 0 else f"{v:.3g}"


def _cell(text) -> str:
    return str(text if text is not None else "-").replace("|", "\\|")


def console_lines(report: dict) -> list[str]:
    """One line per stage with a first divergence."""
    out = []
    for name in order_stages(report.get("stages", {})):
        fd = report["stages"][name].get("first_divergence")
        if fd:
            out.append(f"  {name}: first divergence at node {fd['node']} ({fd['op_type']}): max |diff| "
                       f"{_num(fd['max_abs_diff'])} > {_num(fd['tolerance'])}, its inputs "
                       f"{_num(fd['inputs_max_abs_diff'])}" + (f"; engine node {fd['engine_node']}"
                                                               if fd.get("engine_node") else ""))
    return out


def markdown_lines(report: dict) -> list[str]:
    """The report.md section "Localisation" (nothing where no stage was localised)."""
    stages = report.get("stages", {})
    names = [n for n in order_stages(stages) if stages[n].get("localization") is not None]
    if not names:
        return []
    lines = ["## Localisation (first intermediate tensor that differs from its reference)", ""]
    for name in names:
        entry = stages[name]
        loc, fd = entry["localization"], entry.get("first_divergence")
        lines += [f"### {name}", ""]
        if loc.get("error") or loc.get("skipped"):
            lines += [f"- {loc.get('error') or loc.get('skipped')}", ""]
            continue
        s = loc.get("summary", {})
        lines.append(f"- {s.get('tensors', 0)} tensors of {loc.get('graph')} on {loc.get('images')} image(s): "
                     f"judged against {', '.join(f'{k} {v}' for k, v in s.get('judged_against', {}).items())}; "
                     f"{s.get('no_reference', 0)} without a reference, {s.get('not_reached', 0)} not reached")
        shown = fd or loc.get("intermediate_divergence")
        if shown is None:
            lines.append("- no tensor differs")
        else:
            lines.append(f"- first divergence: node `{shown['node']}` ({shown['op_type']}), tensor "
                         f"`{shown['tensor']}`: max |diff| {_num(shown['max_abs_diff'])} > tolerance "
                         f"{_num(shown['tolerance'])} (reference: {shown.get('reference')}); its inputs: "
                         f"{_num(shown['inputs_max_abs_diff'])}"
                         + (f"; engine node `{shown['engine_node']}`" if shown.get("engine_node") else ""))
            if shown.get("engine_fuses"):
                lines.append("- the engine computes these ONNX nodes as that one node: "
                             + ", ".join(f"`{n}`" for n in shown["engine_fuses"]))
            if shown.get("unjudged_before"):
                lines.append(f"- not judged (no reference, or not reached) before it, {len(shown['unjudged_before'])} "
                             f"node(s) where it may start: " + ", ".join(f"`{n}`" for n in shown["unjudged_before"]))
        lines += [f"- note: {n}" for n in loc.get("notes", [])]
        if shown is not None:
            lines += ["", "| tensor | node | op | max \\|diff\\| | tolerance | status | reference | engine node |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in shown.get("chain", []):
                lines.append("| " + " | ".join(_cell(c) for c in (
                    r["tensor"], r.get("node"), r.get("op_type"), _num(r.get("max_abs_diff")),
                    _num(r.get("tolerance")), r.get("status"), r.get("reference"), r.get("engine_node"))) + " |")
        lines.append("")
    return lines

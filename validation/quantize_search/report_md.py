"""The mixed weight types in words: console lines after a conversion, a section of report.md.

Both read the TFJS stage's manifest entry: ``weight_types`` (``converters.weight_types.storage_record``), and
``keep`` or ``quantize_search`` (``planner``). Nothing for float32 and the plain uint8 / float16 artifacts.
"""
from __future__ import annotations


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} kB"


def _types_line(weights: dict) -> str:
    c, b = weights.get("counts", {}), weights.get("bytes", {})
    parts = [f"{c.get(t, 0)} {t} ({_kb(b.get(t, 0))})" for t in ("uint8", "float16", "float32") if c.get(t)]
    return (f"weights: {', '.join(parts)}; {_kb(weights['weights_bytes'])} in all, {_kb(weights['saved_bytes'])} "
            f"saved against float32")


def console_lines(entry: dict) -> list[str]:
    weights = entry.get("weight_types")
    if not weights:
        return []
    lines = ["", f"mixed weight types ({entry.get('quantize')}): {_types_line(weights)}"]
    if entry.get("keep"):
        lines.append(f"  kept float32 by --keep {','.join(entry['keep'])}: {weights['counts'].get('float32', 0)}")
    search = entry.get("quantize_search")
    if search:
        lines += [f"  {line}" for line in search_lines(search)]
    return lines


def search_lines(search: dict) -> list[str]:
    """What the auto search decided and what TFJS measured, on the choice half and the held-back half."""
    last = search["confirmations"][-1]
    choice, held = last["choice"], search["held_back"]
    budget = search["ap_budget"]
    wider = search["kept_wider"]
    unmeasured = sum(1 for k in wider if not k.get("measured", True))
    return [
        f"auto: {len(wider) - unmeasured} weight unit(s) kept wider than uint8 by the search"
        + (f", {unmeasured} without an ONNX twin (not measurable: stored exactly or float32)" if unmeasured else "")
        + " "
        f"({search['weight_bytes']} weight bytes, {search['weight_bytes'] / search['all_uint8_weight_bytes']:.3f}x "
        f"all-uint8); chosen on {len(search['images']['choice'])} images, AP budget {budget}"
        + (f", output error {search['error_per_image']:.2f} per image (limit {search['error_per_image_limit']})"
           if search.get("error_per_image") is not None else ""),
        f"choice half (decided on): TFJS AP {choice['ap']:.4f}, PyTorch {choice['pytorch_ap']:.4f} "
        f"(delta {choice['ap_delta']:+.4f})",
        f"held-back half ({len(search['images']['held_back'])} images no decision saw): TFJS AP {held['ap']:.4f}, "
        f"PyTorch {held['pytorch_ap']:.4f} (delta {held['ap_delta']:+.4f}): "
        f"{'within' if held['within_budget'] else 'NOT within'} the budget",
    ]


def _error(step: dict) -> str:
    """The estimate's output error per image (records written before it was measured have none)."""
    return "-" if step.get("error_per_image") is None else f"{step['error_per_image']:.2f}"


def markdown_lines(entry: dict | None) -> list[str]:
    """The report.md section (empty for float32 and the plain types)."""
    weights = (entry or {}).get("weight_types")
    if not weights:
        return []
    lines = ["## Mixed weight types", "", f"- {_types_line(weights)}"]
    if entry.get("keep"):
        lines.append(f"- `--keep {','.join(entry['keep'])}`: " + ", ".join(
            f"`{n}`" for n in weights["names"].get("float32", [])))
    search = entry.get("quantize_search")
    if search:
        lines += [f"- {line}" for line in search_lines(search)]
        lines += ["", "| TFJS weights | type | layer (ONNX node) | numbers | uint8 error alone |",
                  "|---|---|---|---:|---:|"]
        lines += [f"| {', '.join(f'`{n}`' for n in k['names'])} | {k['type']} | {k['layer']} | {k['numbers']} | "
                  f"{'not measurable' if k.get('uint8_error') is None else format(k['uint8_error'], '.4g')} |"
                  for k in search["kept_wider"]]
        lines += ["", "Estimates on the choice half (simulator), by number of units in float16:", "",
                  "| float16 units | weight bytes | output error per image | AP | within budget |",
                  "|---:|---:|---:|---:|---|"]
        lines += [f"| {s['k']} | {s['bytes']} | {_error(s)} | {s['ap']:.4f} | {'yes' if s['within'] else 'no'} |"
                  for s in search["estimates"]]
    return lines + [""]

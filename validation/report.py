"""Write a validation's results: ``validation.json`` (schema in docs/validation.md), ``report.md``
(stage x metric table), ``pictures/`` (each stage's detections side by side), and the same table on the console.
Files are written atomically (``contracts.atomic``).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from contracts.atomic import write_bytes, write_json, write_text
from nanodet_ref.preprocess import read_image

from .evaluate import class_diff_summary, order_stages
from .localize.report_md import console_lines as localize_console, markdown_lines as localize_markdown
from .quantize_search.report_md import markdown_lines as mixed_types_markdown

SCHEMA_VERSION = 1
PICTURE_SCORE = 0.35  # detections drawn in pictures (all are used for metrics)
PICTURE_HEIGHT = 360


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "PASS" if v else "FAIL"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.{digits}g}" if abs(v) < 1e-2 else f"{v:.4f}"
    return str(v)


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "result", "max_abs_diff", "mean_abs_diff", "worst class diff", "matched",
            "unmatched: near-tie/unexplained", "AP", "AP50", "criteria"]
    rows = []
    for name in order_stages(report["stages"]):
        s = report["stages"][name]
        worst = class_diff_summary(s.get("max_class_diff") or [])
        worst_txt = "-" if worst is None else "0" if worst["diff"] == 0 else f"{_fmt(worst['diff'])} (#{worst['class']})"
        ties = "-" if s.get("unexplained") is None else f"{s.get('explained', 0)}/{s['unexplained']}"
        rows.append([name, "PASS" if s.get("pass") else "FAIL", _fmt(s.get("max_abs_diff")),
                     _fmt(s.get("mean_abs_diff")), worst_txt, _fmt(s.get("matched_fraction")), ties,
                     _fmt(s.get("ap")), _fmt(s.get("ap50")), s.get("criteria", "")])
    return head, rows


def markdown_table(head, rows) -> str:
    """A markdown table; a ``|`` inside a cell (``|diff|``) is escaped so that it stays in its cell."""
    def cells(r):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"
    lines = [cells(head), "|" + "---|" * len(head)] + [cells(r) for r in rows]
    return "\n".join(lines)


def console_table(report: dict) -> str:
    head, rows = table_rows(report)
    head, rows = head[:-1], [r[:-1] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    for name in order_stages(report["stages"]):
        for f in report["stages"][name].get("failures", []):
            out.append(f"  {name}: {f}")
    out += localize_console(report)
    return "\n".join(out)


def markdown_report(report: dict, pictures: list[str]) -> str:
    head, rows = table_rows(report)
    lines = [f"# Validation of {report['model']}", "",
             f"- weights: {report['weights']}", f"- images: {report['images']} ({report.get('image_source', '')})",
             f"- annotations: {report.get('annotations') or 'none (no AP)'}",
             f"- TFJS backend: {report.get('tfjs_backend', '-')}",
             f"- tolerances: {json.dumps(report.get('tolerances', {}))}",
             "- fp32 stages: every output's max |diff| <= raw_atol + raw_rtol x its scale (its max |PyTorch value|), "
             "and every detection without a partner (same class, IoU >= 0.99) a near-tie within the stage's "
             "measured raw differences",
             *_equalization_lines(report.get("equalization")),
             f"- overall: **{'PASS' if report.get('pass') else 'FAIL'}**", ""]
    lines += [f"> WARNING: {w}" for w in report.get("warnings", [])]
    lines += ["", markdown_table(head, rows), ""]
    fails = [(n, f) for n in order_stages(report["stages"]) for f in report["stages"][n].get("failures", [])]
    if fails:
        lines += ["## Failures", ""] + [f"- **{n}**: {f}" for n, f in fails] + [""]
    lines += localize_markdown(report)
    lines += mixed_types_markdown(report.get("weight_types"))
    lines += _tie_lines(report)
    lines += ["## Per output (max |diff| vs PyTorch / its tolerance atol + rtol x scale, PASSED/FAILED)", ""]
    outs = list(dict.fromkeys(o for s in report["stages"].values() for o in s.get("outputs", {})))
    stages = [n for n in order_stages(report["stages"]) if n != "pytorch"]
    if stages and outs:
        lines.append("| output | " + " | ".join(stages) + " |")
        lines.append("|" + "---|" * (len(stages) + 1))
        for o in outs:
            cells = []
            for n in stages:
                e = report["stages"][n].get("outputs", {}).get(o)
                cells.append("-" if e is None else f"{_fmt(e.get('max_abs_diff'))}"
                             + (f" / {_fmt(e['tolerance'])}" if e.get("tolerance") is not None else "")
                             + f" {e.get('status', '')}"
                             + (f" ({e['error']})" if e.get("error") else "")
                             + (" (not judged)" if e.get("judged") is False else ""))
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    if pictures:
        lines += ["## Pictures (detections with score >= %.2f)" % PICTURE_SCORE, ""]
        lines += [f"![{p}]({p})" for p in pictures]
    return "\n".join(lines) + "\n"


def _equalization_lines(facts: dict | None) -> list[str]:
    """One header line where the graph of onnx_sim and later stages was equalized before uint8 storage."""
    if not facts:
        return []
    ratios = "; ".join(f"{k} {v['before']}x -> {v['after']}x" for k, v in facts.get("largest_range_ratio", {}).items()
                       if k != "bias |max|")
    return [f"- graph: channel ranges equalized before uint8 (patches/equalize_channel_ranges.py: {facts['pairs']} "
            f"Conv pairs, {facts['channels_rescaled']} of {facts['channels']} channels rescaled by powers of two, "
            f"exact in float32; largest channel-range ratio {ratios})"]


def _tie_lines(report: dict) -> list[str]:
    """The unmatched detections of each fp32 stage: near-ties by reason, and the unexplained ones."""
    lines = []
    for name in order_stages(report["stages"]):
        s = report["stages"][name]
        if not s.get("explained") and not s.get("unexplained"):
            continue
        reasons = ", ".join(f"{n} {why}" for why, n in (s.get("explained_by") or {}).items()) or "none"
        lines.append(f"- **{name}**: {s.get('explained', 0)} near-ties ({reasons}), {s.get('unexplained', 0)} "
                     f"unexplained; bounds: {json.dumps(s.get('tie_bounds'))}")
        lines += [f"  - unexplained: {json.dumps(ex)}" for ex in s.get("unexplained_examples") or []]
    return ["## Detections without a partner", ""] + lines + [""] if lines else []


def _label(img, text, origin, scale=0.5, color=(255, 255, 255)):
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(img, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _color(label: int):
    rng = np.random.default_rng(label * 7919 + 17)
    return tuple(int(c) for c in rng.integers(64, 256, 3))


def draw_panel(img: np.ndarray, dets, title: str, class_names) -> np.ndarray:
    panel = img.copy()
    shown = [d for d in (dets or []) if d.score >= PICTURE_SCORE]
    for d in shown:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        c = _color(d.label)
        cv2.rectangle(panel, (x1, y1), (x2, y2), c, 2)
        name = class_names[d.label] if d.label < len(class_names) else str(d.label)
        _label(panel, f"{name} {d.score:.2f}", (x1 + 2, max(y1 + 14, 14)), 0.45, c)
    scale = PICTURE_HEIGHT / panel.shape[0]
    panel = cv2.resize(panel, (max(1, int(round(panel.shape[1] * scale))), PICTURE_HEIGHT))
    _label(panel, f"{title}: {len(shown)} shown" if dets is not None else f"{title}: no detections (failed)",
           (6, 22), 0.6)
    return panel


def write_pictures(out_dir: Path, image_paths, detections: dict, class_names, count: int = 3) -> list[str]:
    """One PNG per image: a panel per stage, PyTorch first. Returns paths relative to ``out_dir``."""
    pic_dir = Path(out_dir) / "pictures"
    pic_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(list(image_paths)[:count]):
        img = read_image(path)
        panels = [draw_panel(img, (detections.get(n) or [None] * (i + 1))[i], n, class_names)
                  for n in order_stages(detections)]
        sheet = cv2.hconcat(panels)
        target = pic_dir / f"{Path(path).stem}.png"
        ok, buf = cv2.imencode(".png", sheet)
        if ok:
            write_bytes(target, buf.tobytes())
            names.append(f"pictures/{target.name}")
    return names


def write_report(out_dir: Path, report: dict, detections: dict, image_paths, class_names,
                 json_name: str = "validation.json", md_name: str = "report.md", pictures: int = 3) -> None:
    out_dir = Path(out_dir)
    pics = write_pictures(out_dir, image_paths, detections, class_names, pictures) if pictures else []
    report = dict(report)
    report["pictures"] = pics
    write_json(out_dir / json_name, report, default=_json_default)
    if md_name:
        write_text(out_dir / md_name, markdown_report(report, pics))


def _json_default(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")

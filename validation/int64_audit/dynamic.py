"""Dynamic check of the int64 audit: TFJS (real TFJS in Node) against PyTorch, per class channel.

For every class index: the largest |TFJS - PyTorch| over all images, strides and points of
``cls_pred_stride_*``; per box side likewise over ``dis_pred_stride_*``. A channel TFJS does not produce at all
(an output that came back narrower) counts as an infinite difference. Classes above the tolerance are "flagged";
each is explained by the static findings whose traced channels include it, else called "unexplained".
Because quantized weights (float16) put a floor under every class's difference, the distribution over all
classes is reported too (median, 90th percentile, max, each flagged class's rank and ratio to the median), so a
single corrupted class stands out as an outlier even where every class is above 1e-4.
"""
from __future__ import annotations

import math

import numpy as np

from .common import SIDES, output_kind

OUTLIER_RATIO = 10.0  # a class whose max diff is this many times the median over classes is an outlier


def channel_max_diff(reference: dict, candidate: dict) -> dict[str, list[float]]:
    """{output: [max |diff| per last-axis channel]} (inf for channels the candidate lacks)."""
    out = {}
    for name, ref in reference.items():
        got = candidate.get(name)
        ref = np.asarray(ref, np.float64)
        n = ref.shape[-1]
        if got is None:
            out[name] = [math.inf] * n
            continue
        got = np.asarray(got, np.float64)
        if got.ndim != ref.ndim or got.shape[:-1] != ref.shape[:-1]:
            out[name] = [math.inf] * n
            continue
        m = min(n, got.shape[-1])
        diff = np.abs(ref[..., :m] - got[..., :m]).reshape(-1, m)
        per = np.where(np.isnan(diff), np.inf, diff).max(axis=0) if diff.size else np.zeros(m)
        out[name] = [float(v) for v in per] + [math.inf] * (n - m)
    return out


def summarize(per_channel: dict[str, list[float]], reg_max: int | None, tolerance: float,
              findings: list[dict] | None = None) -> dict:
    """Per-class and per-side maxima, flagged classes with their explanation, the distribution over classes."""
    classes: dict[int, float] = {}
    sides: dict[str, float] = {}
    shapes = {}
    for name, vals in per_channel.items():
        kind = output_kind(name)
        if kind is None:
            continue
        if kind[0] == "cls":
            for c, v in enumerate(vals):
                classes[c] = max(classes.get(c, 0.0), v)
        else:
            bins = (reg_max + 1) if reg_max is not None else max(1, len(vals) // 4)
            for c, v in enumerate(vals):
                side = SIDES[min(c // bins, 3)]
                sides[side] = max(sides.get(side, 0.0), v)
        shapes[name] = len(vals)
    values = np.array([classes[c] for c in sorted(classes)], np.float64)
    finite = values[np.isfinite(values)]
    median = float(np.median(finite)) if finite.size else 0.0
    dist = {"median": median, "p90": float(np.percentile(finite, 90)) if finite.size else 0.0,
            "max": float(values.max()) if values.size else 0.0,
            "argmax": int(values.argmax()) if values.size else None}
    order = sorted(classes, key=lambda c: -classes[c])
    rank = {c: i + 1 for i, c in enumerate(order)}
    explain = _explanations(findings or [])
    flagged = []
    for c in sorted(classes):
        v = classes[c]
        if v > tolerance:
            flagged.append({"class": c, "max_diff": _num(v), "rank": rank[c],
                            "ratio_to_median": _num(v / median) if median > 0 else None,
                            "outlier": bool(median > 0 and v > OUTLIER_RATIO * median) or math.isinf(v),
                            "explained_by": explain.get(c) or "unexplained"})
    return {"tolerance": tolerance, "per_class_max_diff": {str(c): _num(classes[c]) for c in sorted(classes)},
            "per_side_max_diff": {s: _num(v) for s, v in sides.items()}, "distribution": dist,
            "class_rank": {str(c): rank[c] for c in sorted(classes)},
            "flagged_classes": flagged,
            "outlier_classes": [f["class"] for f in flagged if f["outlier"]]}


def class_report(summary: dict, class_index: int) -> dict:
    """One class's numbers against the distribution over all classes."""
    v = summary["per_class_max_diff"].get(str(class_index))
    med = summary["distribution"]["median"]
    return {"class": class_index, "max_diff": v, "rank": summary["class_rank"].get(str(class_index)),
            "of": len(summary["per_class_max_diff"]),
            "ratio_to_median": (v / med) if (v is not None and med and not isinstance(v, str)) else None}


def _num(v: float):
    return "inf" if math.isinf(v) else float(v)


def _explanations(findings: list[dict]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for f in findings:
        for outname, entry in (f.get("affected_outputs") or {}).items():
            for c in entry.get("classes", []) or []:
                out.setdefault(int(c), []).append(f["id"])
    return out


def run_dynamic(tfjs_model_json, io_spec, reference_runner, batch: np.ndarray, reg_max: int | None,
                tolerance: float, findings: list[dict] | None = None, backend: str = "wasm") -> dict:
    """TFJS in Node vs the reference runner on ``batch`` [N,3,H,W]; the per-class summary."""
    from validation.runners.tfjs_node import run_tfjs_graph

    x = io_spec.prepare_input(batch)
    wanted = io_spec.artifact_outputs()
    results = run_tfjs_graph(tfjs_model_json, [{io_spec.input_name: x[i:i + 1]} for i in range(len(x))],
                             wanted, backend)
    got = {}
    for sig, target in io_spec.outputs.items():
        parts = []
        for r in results:
            v = r.get(target.name, r.get(target.name[:-2] if target.name.endswith(":0") else target.name + ":0"))
            if v is None:
                parts = None
                break
            v = np.asarray(v)
            parts.append(target.take(v, str(tfjs_model_json)))
        if parts is not None:
            got[sig] = np.concatenate(parts) if len({p.shape for p in parts}) == 1 else parts[0]
    ref = reference_runner(batch) if callable(reference_runner) else reference_runner.run(batch)
    per = channel_max_diff(ref, got)
    summary = summarize(per, reg_max, tolerance, findings)
    summary["images"] = int(len(batch))
    summary["backend"] = backend
    summary["output_shapes"] = {k: {"reference": list(np.asarray(ref[k]).shape),
                                    "tfjs": list(np.asarray(got[k]).shape) if k in got else None} for k in ref}
    return summary

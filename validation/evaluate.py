"""Run every stage on the same input tensors and judge it against PyTorch with the config's tolerances.

Criteria (``toolkit.validation`` of the config):
- fp32 stages: every raw output within ``raw_atol`` (default 1e-4) of PyTorch AND ``matched_fraction`` >=
  ``min_matched`` (default 1.0);
- quantized stages (TFJS float16 / uint8 weights): COCO AP within ``quantized_ap_delta`` of PyTorch's AP; raw
  diffs are reported but not judged. Without annotations: ``matched_fraction`` >= ``quantized_min_matched``
  (default 0.9) instead, said in the stage's ``notes``;
- pytorch: its own AP, compared with ``reference_ap`` (measured outside the project) only when the checkpoint and
  the shared 40 images are used.
A runner that crashes makes its stage FAIL with the error; the other stages still run.
"""
from __future__ import annotations

import time
import traceback

import numpy as np

from .comparators import compare_detections, compare_raw, decode_batch, max_class_diff

DEFAULTS = {"raw_atol": 1e-4, "min_matched": 1.0, "quantized_ap_delta": 0.01, "quantized_min_matched": 0.9,
            "reference_ap_tolerance": 0.003}
STAGE_ORDER = ("pytorch", "onnx", "onnx_sim", "saved_model", "tfjs")


def tolerances(cfg) -> dict:
    tol = dict(DEFAULTS)
    tol.update({k: v for k, v in (cfg.toolkit.get("validation") or {}).items() if v is not None})
    return tol


def _ap(annotations, batch, dets):
    if annotations is None:
        return None
    names = {p.name: d for p, d in zip(batch.images.paths, dets)}
    return annotations.evaluate(names)


def evaluate_stages(cfg, batch, reference, stages: dict, annotations=None, quantized: dict | None = None,
                    reference_ap_applies: bool = False, log=print) -> tuple[dict, dict]:
    """Returns (stage results by name, detections in image pixels by stage name)."""
    tol = tolerances(cfg)
    quantized = quantized or {}
    results, pictures = {}, {}

    t0 = time.perf_counter()
    ref_out = reference.run(batch.tensor)
    ref_seconds = time.perf_counter() - t0
    ref_in = decode_batch(ref_out, cfg)
    ref_img = decode_batch(ref_out, cfg, batch.warps, batch.image_hws)
    pictures["pytorch"] = ref_img
    ref_ap = _ap(annotations, batch, ref_img)
    entry = {
        "max_abs_diff": 0.0, "mean_abs_diff": 0.0,
        "outputs": {k: {"shape": list(v.shape), "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "status": "PASSED"}
                    for k, v in ref_out.items()},
        "max_class_diff": [0.0] * cfg.num_classes, "matched_fraction": 1.0,
        "matched": sum(len(d) for d in ref_in), "reference_detections": sum(len(d) for d in ref_in),
        "stage_detections": sum(len(d) for d in ref_in),
        "ap": ref_ap["ap"] if ref_ap else None, "ap50": ref_ap["ap50"] if ref_ap else None,
        "quantized": None, "criteria": "reference", "seconds": round(ref_seconds, 3), "failures": [], "notes": [],
    }
    want = tol.get("reference_ap")
    if ref_ap and want is not None:
        if reference_ap_applies:
            if abs(ref_ap["ap"] - float(want)) > tol["reference_ap_tolerance"]:
                entry["failures"].append(f"ap {ref_ap['ap']:.4f} differs from the config's reference_ap {want} "
                                         f"by more than {tol['reference_ap_tolerance']}")
        else:
            entry["notes"].append(f"reference_ap {want} not checked (other images or weights)")
    entry["pass"] = not entry["failures"]
    results["pytorch"] = entry
    log(f"[validate] pytorch: {entry['reference_detections']} detections, AP "
        f"{entry['ap'] if entry['ap'] is None else round(entry['ap'], 4)} ({ref_seconds:.1f} s)")

    for name, runner in stages.items():
        t0 = time.perf_counter()
        try:
            got = runner.run(batch.tensor)
        except Exception as exc:  # a broken artifact: record it, keep validating the others
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results[name] = _crashed(cfg, f"{name} runner failed: {last[:300]}")
            log(f"[validate] {name}: runner FAILED: {last[:200]}")
            continue
        seconds = time.perf_counter() - t0
        results[name], pictures[name] = judge_stage(cfg, tol, batch, ref_out, ref_in, got, annotations, ref_ap,
                                                    quantized.get(name))
        results[name]["seconds"] = round(seconds, 3)
        meta = getattr(runner, "meta", None)
        if meta:
            results[name]["runner"] = {k: meta[k] for k in ("backend", "simd", "threads", "load_ms") if k in meta}
            if meta.get("infer_ms"):
                results[name]["runner"]["infer_ms_median"] = float(np.median(meta["infer_ms"]))
                results[name]["runner"]["infer_ms_first"] = float(meta["infer_ms"][0])
        r = results[name]
        log(f"[validate] {name}: {'PASS' if r['pass'] else 'FAIL'} max_abs_diff {r['max_abs_diff']} "
            f"matched {r['matched_fraction']} ({seconds:.1f} s)")
    return results, pictures


def _crashed(cfg, message: str) -> dict:
    return {"max_abs_diff": None, "mean_abs_diff": None, "outputs": {}, "max_class_diff": [None] * cfg.num_classes,
            "matched_fraction": 0.0, "ap": None, "ap50": None, "pass": False, "failures": [message], "notes": [],
            "criteria": "not run", "quantized": None}


def judge_stage(cfg, tol, batch, ref_out, ref_in, got, annotations, ref_ap, quantization: str | None):
    """One stage's metrics and verdict; returns (entry, detections in image pixels or None)."""
    raw = compare_raw(ref_out, got, tol["raw_atol"])
    entry = {"max_abs_diff": raw["max_abs_diff"], "mean_abs_diff": raw["mean_abs_diff"], "outputs": raw["outputs"],
             "max_class_diff": max_class_diff(ref_out, got, cfg.strides, cfg.num_classes),
             "quantized": quantization, "notes": []}
    if raw["extra_outputs"]:
        entry["notes"].append(f"extra outputs ignored: {', '.join(raw['extra_outputs'])}")
    failures = []
    decodable = all(o.get("shape") == o["reference_shape"] for o in raw["outputs"].values()) and \
        raw["max_abs_diff"] is not None
    img_dets = None
    if decodable:
        got_in = decode_batch(got, cfg)
        img_dets = decode_batch(got, cfg, batch.warps, batch.image_hws)
        entry.update(compare_detections(ref_in, got_in))
        ap = _ap(annotations, batch, img_dets)
        entry["ap"], entry["ap50"] = (ap["ap"], ap["ap50"]) if ap else (None, None)
    else:
        entry.update(matched_fraction=0.0, ap=None, ap50=None)
        failures.append("outputs cannot be decoded (missing, mis-shaped or non-finite): detections not compared")
    mf = entry["matched_fraction"]
    if quantization:
        for o in entry["outputs"].values():
            o["judged"] = False
        entry["criteria"] = f"quantized ({quantization}): AP delta <= {tol['quantized_ap_delta']}"
        if entry["ap"] is not None and ref_ap is not None:
            delta = ref_ap["ap"] - entry["ap"]
            entry["ap_delta"] = delta
            if delta > tol["quantized_ap_delta"]:
                failures.append(f"ap {entry['ap']:.4f} is {delta:.4f} below PyTorch's {ref_ap['ap']:.4f} "
                                f"(> quantized_ap_delta {tol['quantized_ap_delta']})")
        else:
            entry["criteria"] = f"quantized ({quantization}), no annotations: matched_fraction >= " \
                                f"{tol['quantized_min_matched']}"
            entry["notes"].append("no annotations: AP delta not measurable, judged on matched_fraction")
            if decodable and mf < tol["quantized_min_matched"]:
                failures.append(f"matched_fraction {mf:.4f} < quantized_min_matched {tol['quantized_min_matched']}")
        failures += [f for f in raw["failures"] if "shape" in f or "missing" in f or "non-finite" in f]
    else:
        entry["criteria"] = f"fp32: raw max_abs_diff <= {tol['raw_atol']} and matched_fraction >= " \
                            f"{tol['min_matched']}"
        failures += raw["failures"]
        if decodable and mf < tol["min_matched"]:
            failures.append(f"matched_fraction {mf:.4f} < min_matched {tol['min_matched']} "
                            f"({entry['matched']} of {entry['reference_detections']} PyTorch detections matched, "
                            f"{entry['stage_detections']} stage detections)")
    entry["failures"] = failures
    entry["pass"] = not failures
    return entry, img_dets


def order_stages(names) -> list[str]:
    known = [n for n in STAGE_ORDER if n in names]
    return known + [n for n in names if n not in known]


def class_diff_summary(values: list) -> dict | None:
    """Worst class of a ``max_class_diff`` list: {"class": index, "diff": value}."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    i = int(np.nanargmax(np.asarray([v if v is not None else -1 for v in values], float)))
    return {"class": i, "diff": float(values[i])}

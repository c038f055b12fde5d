"""Run every stage on the same input tensors and judge it against PyTorch with the config's tolerances.

Criteria (``toolkit.validation`` of the config):
- fp32 stages: every raw output within ``raw_atol + raw_rtol * scale`` of PyTorch (defaults 1e-4 and 1e-4, scale =
  the output's max |PyTorch value|; why: ``comparators.output_tolerance``) AND no unexplained detection
  difference: every detection without a partner must be a near-tie (``near_ties``);
- quantized stages (TFJS float16 / uint8 weights): COCO AP within ``quantized_ap_delta`` of PyTorch's AP; raw
  diffs are reported but not judged, near-ties not sought. Without annotations: ``matched_fraction`` >=
  ``quantized_min_matched`` (default 0.9) instead, said in the stage's ``notes``;
- half-float storage (the browser stage ``tfjs_webgl_f16``, ``validation.browser_stages``): every raw output within
  ``half_float_raw_atol + half_float_raw_rtol * scale`` AND AP within ``half_float_ap_delta`` of PyTorch's (without
  annotations: ``matched_fraction`` >= ``quantized_min_matched``); near-ties not sought. With quantized weights on
  top: raw diffs not judged, AP within ``quantized_ap_delta + half_float_ap_delta``;
- pytorch: its own AP, compared with ``reference_ap`` (measured outside the project) only when the config's own
  checkpoint (its sha256) and the shared 40 images are used.
A runner that crashes makes its stage FAIL with the error; the other stages still run.
"""
from __future__ import annotations

import time
import traceback

import numpy as np

from .comparators import compare_detections, compare_raw, decode_batch, max_class_diff
from .near_ties import explain_differences, tie_bounds

DEFAULTS = {"raw_atol": 1e-4, "raw_rtol": 1e-4, "quantized_ap_delta": 0.01, "quantized_min_matched": 0.9,
            "reference_ap_tolerance": 0.003,
            "half_float_raw_atol": 0.03, "half_float_raw_rtol": 0.03, "half_float_ap_delta": 0.005}
HALF_FLOAT = "half-float storage"   # the criteria of a stage that stores tensors in 16-bit floats (WebGL f16)
STAGE_ORDER = ("pytorch", "onnx", "onnx_sim", "saved_model", "tfjs", "tfjs_chromium", "tfjs_webgl_f16")


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
        "max_class_diff": [0.0] * cfg.num_classes, "matched_fraction": 1.0, "explained": 0, "unexplained": 0,
        "matched": sum(len(d) for d in ref_in), "reference_detections": sum(len(d) for d in ref_in),
        "stage_detections": sum(len(d) for d in ref_in),
        "ap": ref_ap["ap"] if ref_ap else None, "ap50": ref_ap["ap50"] if ref_ap else None,
        "quantized": None, "criteria": "reference", "seconds": round(ref_seconds, 3), "failures": [], "notes": [],
    }
    want = tol.get("reference_ap")
    if ref_ap and want is not None:
        if reference_ap_applies and configured_weights(cfg, getattr(reference, "provenance", None) or {}):
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
            f"matched {r['matched_fraction']}{_explained_text(r)} ({seconds:.1f} s)")
    return results, pictures


def configured_weights(cfg, provenance: dict) -> bool:
    """Whether the reference runs the checkpoint the config names (its sha256, where the config gives one): the
    config's ``reference_ap`` was measured with those weights, another checkpoint is not held to it."""
    want = (cfg.toolkit.get("weights") or {}).get("sha256")
    return want is None or provenance.get("sha256") == want


def _explained_text(entry: dict) -> str:
    if entry.get("unexplained") is None:
        return ""
    return f", unmatched: {entry['explained']} near-ties, {entry['unexplained']} unexplained"


def _crashed(cfg, message: str) -> dict:
    return {"max_abs_diff": None, "mean_abs_diff": None, "outputs": {}, "max_class_diff": [None] * cfg.num_classes,
            "matched_fraction": 0.0, "ap": None, "ap50": None, "pass": False, "failures": [message], "notes": [],
            "criteria": "not run", "quantized": None}


def judge_stage(cfg, tol, batch, ref_out, ref_in, got, annotations, ref_ap, quantization: str | None):
    """One stage's metrics and verdict; returns (entry, detections in image pixels or None)."""
    half = bool(quantization) and quantization.startswith(HALF_FLOAT)
    raw = compare_raw(ref_out, got, *((tol["half_float_raw_atol"], tol["half_float_raw_rtol"]) if half
                                      else (tol["raw_atol"], tol["raw_rtol"])))
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
        if not quantization:
            entry.update(explain_differences(cfg, ref_out, got, ref_in, got_in, tie_bounds(raw["outputs"], cfg.strides),
                                             _image_names(batch)))
        ap = _ap(annotations, batch, img_dets)
        entry["ap"], entry["ap50"] = (ap["ap"], ap["ap50"]) if ap else (None, None)
    else:
        entry.update(matched_fraction=0.0, ap=None, ap50=None)
        failures.append("outputs cannot be decoded (missing, mis-shaped or non-finite): detections not compared")
    if half:
        failures += _half_float_failures(entry, raw, tol, ref_ap, quantization, decodable)
    elif quantization:
        failures += _quantized_failures(entry, tol, ref_ap, quantization, decodable)
        failures += [f for f in raw["failures"] if "shape" in f or "missing" in f or "non-finite" in f]
    else:
        entry["criteria"] = f"fp32: every output's |diff| <= {tol['raw_atol']:g} + {tol['raw_rtol']:g} x its max " \
                            f"|PyTorch value|, and every unmatched detection a near-tie"
        failures += raw["failures"]
        if decodable and entry["unexplained"]:
            failures.append(_unexplained_failure(entry))
    entry["failures"] = failures
    entry["pass"] = not failures
    return entry, img_dets


def _image_names(batch) -> list[str] | None:
    paths = getattr(getattr(batch, "images", None), "paths", None)
    return [p.name for p in paths] if paths is not None else None


def _unexplained_failure(entry: dict) -> str:
    ex = entry["unexplained_examples"][0]
    other = ex["other_side_same_point"]
    lacks = "stage" if ex["only_in"] == "pytorch" else "pytorch"
    seen = "nothing from that point" if other is None else \
        f"the same point at {other['box']} score {other['score']} (moved {other['max_coordinate_move']} px)"
    return (f"{entry['unexplained']} unmatched detection(s) are not near-ties ({entry['matched']} of "
            f"{entry['reference_detections']} PyTorch detections matched, {entry['explained']} unmatched explained); "
            f"e.g. image {ex['image']}: {ex['only_in']} has {ex['class_name']} score {ex['score']} box {ex['box']}, "
            f"{lacks} has {seen}")


def _quantized_failures(entry: dict, tol: dict, ref_ap, quantization: str, decodable: bool) -> list[str]:
    """Quantized stages: raw diffs not judged; AP delta, or matched fraction without annotations."""
    failures = []
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
        if decodable and entry["matched_fraction"] < tol["quantized_min_matched"]:
            failures.append(f"matched_fraction {entry['matched_fraction']:.4f} < quantized_min_matched "
                            f"{tol['quantized_min_matched']}")
    return failures


def _half_float_failures(entry: dict, raw: dict, tol: dict, ref_ap, criteria: str, decodable: bool) -> list[str]:
    """Half-float storage: raw outputs within the half-float tolerance (not judged where the weights are quantized
    too), and AP within the half-float budget (plus the quantized one), or matched detections without
    annotations."""
    weights_quantized = criteria != HALF_FLOAT
    budget = tol["half_float_ap_delta"] + (tol["quantized_ap_delta"] if weights_quantized else 0.0)
    if weights_quantized:
        for o in entry["outputs"].values():
            o["judged"] = False
        failures = [f for f in raw["failures"] if "shape" in f or "missing" in f or "non-finite" in f]
        entry["criteria"] = f"{criteria}: AP delta <= {budget:g}"
    else:
        failures = list(raw["failures"])
        entry["criteria"] = (f"{HALF_FLOAT}: every output's |diff| <= {tol['half_float_raw_atol']:g} + "
                             f"{tol['half_float_raw_rtol']:g} x its max |PyTorch value|, and AP delta <= {budget:g}")
    if entry["ap"] is not None and ref_ap is not None:
        entry["ap_delta"] = ref_ap["ap"] - entry["ap"]
        if entry["ap_delta"] > budget:
            failures.append(f"ap {entry['ap']:.4f} is {entry['ap_delta']:.4f} below PyTorch's {ref_ap['ap']:.4f} "
                            f"(> the {HALF_FLOAT} budget {budget:g})")
    else:
        entry["notes"].append("no annotations: AP delta not measurable, judged on matched_fraction")
    if (entry["ap"] is None or ref_ap is None) and decodable and \
            entry["matched_fraction"] < tol["quantized_min_matched"]:
        failures.append(f"matched_fraction {entry['matched_fraction']:.4f} < quantized_min_matched "
                        f"{tol['quantized_min_matched']}")
    return failures


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

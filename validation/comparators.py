"""Compare one stage's outputs with PyTorch's on identical input tensors. Comparators never run anything.

- ``compare_raw``: per output max / mean |diff|, PASSED / FAILED against ``atol + rtol * scale`` (polygraphy
  style; scale = the output's max |reference|, see ``output_tolerance``), the atol it needed at that rtol and the
  rtol it needed at that atol; a missing output or one of the wrong shape FAILS with the reason.
- ``max_class_diff``: the largest score difference of each class over all levels and images.
- ``match_detections``: detections of the ONE shared decoder (``nanodet_ref.decode.decode``) matched by class and
  IoU >= 0.99. ``matched_fraction`` = matched / max(#PyTorch detections, #stage detections), so a stage that loses
  or adds detections both fall below 1.0. Which of the unmatched ones are near-ties: ``validation.near_ties``.
"""
from __future__ import annotations

import math

import numpy as np

from nanodet_ref.decode import Detection, decode, iou_one_to_many

MATCH_IOU = 0.99


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def compare_raw(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], atol: float, rtol: float = 0.0) -> dict:
    """Per-output diffs vs the reference, judged by ``|got - ref| <= atol + rtol * scale`` (``scale`` = the
    output's max |reference|, see ``output_tolerance``); overall max/mean; ``failures`` lists what did not pass."""
    outputs, failures = {}, []
    total_abs, total_n, overall_max = 0.0, 0, 0.0
    for name, r in ref.items():
        entry = {"reference_shape": list(r.shape)}
        g = got.get(name)
        if g is None:
            entry.update(status="FAILED", error="output missing", max_abs_diff=None, mean_abs_diff=None)
            failures.append(f"{name}: output missing")
            overall_max = math.inf
        elif tuple(g.shape) != tuple(r.shape):
            entry.update(status="FAILED", shape=list(g.shape), max_abs_diff=None, mean_abs_diff=None,
                         error=f"shape {list(g.shape)} != reference {list(r.shape)}")
            failures.append(f"{name}: shape {list(g.shape)} != reference {list(r.shape)}")
            overall_max = math.inf
        else:
            d = np.abs(g.astype(np.float64) - r.astype(np.float64))
            finite = bool(np.isfinite(d).all())
            mx = float(d.max()) if finite and d.size else (0.0 if finite else math.inf)
            mean = float(d.mean()) if finite and d.size else (0.0 if finite else math.inf)
            tol = output_tolerance(r, atol, rtol)
            ok = finite and mx <= tol["tolerance"]
            entry.update(shape=list(g.shape), max_abs_diff=_finite(mx), mean_abs_diff=_finite(mean), **tol,
                         needed_atol=_finite(max(mx - rtol * tol["scale"], 0.0)),
                         needed_rtol=_needed_rtol(mx, atol, tol["scale"]), status="PASSED" if ok else "FAILED")
            if not finite:
                entry["error"] = "non-finite values"
            if not ok:
                failures.append(f"{name}: max_abs_diff {mx:.3g} > atol {atol:g} + rtol {rtol:g} x scale "
                                f"{tol['scale']:.3g} = {tol['tolerance']:.3g}" if finite
                                else f"{name}: non-finite values")
            overall_max = max(overall_max, mx)
            total_abs += float(d.sum()) if finite else math.inf
            total_n += d.size
        outputs[name] = entry
    extra = sorted(set(got) - set(ref))
    mean_all = total_abs / total_n if total_n else 0.0
    if overall_max == math.inf:
        mean_all = math.inf
    return {"max_abs_diff": _finite(overall_max), "mean_abs_diff": _finite(mean_all), "outputs": outputs,
            "extra_outputs": extra, "failures": failures, "pass": not failures}


def output_tolerance(ref: np.ndarray, atol: float, rtol: float) -> dict:
    """The largest |diff| an fp32 stage may show on one output: ``atol + rtol * scale``, scale = max |ref|.

    Why this form. Every stage computes in float32 but sums in its own order (its kernels, fused operators, graph
    rewrites), so two correct stages differ by rounding. Reordering a K-term sum changes it by about
    sqrt(K) * u * sum|terms| (at most K * u * sum|terms|; u = 2^-24), i.e. in proportion to the magnitude of
    what is summed, not to the element's own value (an element near 0 may be the difference of large terms),
    and the network repeats this in each of its L layers. The output's max |ref| measures that magnitude where
    it is largest, and a per-output scale does not demand exactness from elements near 0 as a per-element
    relative term would. rtol is of order L * sqrt(K) * u: NanoDet-m has ~55 convolutions on its longest path
    with K up to 464 (1x1 over 464 channels), NanoDet-g ~30 with K up to 2304 (3x3 over 256), so
    L * sqrt(K) * u ~ 7e-5; rtol = 1e-4 is that, rounded up. The scale follows the weights (box logits reach
    |8-13| for trained and random weights alike), so the bound holds for any weights. atol keeps a floor for
    outputs of small scale (sigmoid scores <= 1). A conversion error (a layout, a padding, an operator) moves
    outputs by 1e-2 to 1e1 of their scale, orders of magnitude above.
    """
    r = np.abs(np.asarray(ref, np.float64))
    r = r[np.isfinite(r)]
    scale = float(r.max()) if r.size else 0.0
    return {"atol": float(atol), "rtol": float(rtol), "scale": scale, "tolerance": float(atol) + float(rtol) * scale}


def _needed_rtol(max_diff: float, atol: float, scale: float) -> float | None:
    """The rtol this output needed at the given atol (0 when atol alone covers it; None: no rtol would do)."""
    if not math.isfinite(max_diff):
        return None
    if max_diff <= atol:
        return 0.0
    return None if scale == 0 else (max_diff - atol) / scale


def max_class_diff(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], strides, num_classes: int) -> list:
    """Max |score diff| per class over every level and image (None where a level could not be compared)."""
    best = np.zeros(num_classes)
    for s in strides:
        name = f"cls_pred_stride_{s}"
        r, g = ref.get(name), got.get(name)
        if r is None or g is None or r.shape != g.shape or r.shape[-1] != num_classes:
            return [None] * num_classes
        d = np.abs(g.astype(np.float64) - r.astype(np.float64)).reshape(-1, num_classes)
        if not np.isfinite(d).all():
            return [None] * num_classes
        best = np.maximum(best, d.max(axis=0))
    return [float(v) for v in best]


def decode_batch(outputs: dict[str, np.ndarray], cfg, warps=None, image_hws=None) -> list[list[Detection]]:
    """Detections per image through the shared decoder; image pixels when warps / sizes are given."""
    n = len(next(iter(outputs.values())))
    dets = []
    for i in range(n):
        w = warps[i] if warps is not None else None
        hw = image_hws[i] if image_hws is not None else None
        dets.append(decode(outputs, cfg, warp=w, image_hw=hw, batch_index=i))
    return dets


def pair_detections(ref: list[Detection], got: list[Detection], iou: float = MATCH_IOU
                    ) -> tuple[int, list[int], list[int]]:
    """Match reference detections to stage detections of the same class with IoU >= ``iou`` (greedy, highest
    reference score first, each stage detection used once). Returns (matched, indices of the reference
    detections without a partner, indices of the stage detections without one)."""
    used = np.zeros(len(got), bool)
    lonely_ref = []
    got_boxes = np.asarray([d.box for d in got], np.float64).reshape(-1, 4)
    got_labels = np.asarray([d.label for d in got])
    for k in sorted(range(len(ref)), key=lambda k: -ref[k].score):
        d = ref[k]
        cand = np.nonzero((got_labels == d.label) & ~used)[0]
        ious = iou_one_to_many(np.asarray(d.box, np.float64), got_boxes[cand]) if cand.size else np.zeros(0)
        j = int(np.argmax(ious)) if cand.size else -1
        if cand.size and ious[j] >= iou:
            used[cand[j]] = True
        else:
            lonely_ref.append(k)
    return int(used.sum()), sorted(lonely_ref), [int(j) for j in np.nonzero(~used)[0]]


def match_detections(ref: list[Detection], got: list[Detection], iou: float = MATCH_IOU) -> int:
    """How many reference detections find a stage detection of the same class with IoU >= ``iou``
    (greedy, highest reference score first, each stage detection used once)."""
    return pair_detections(ref, got, iou)[0]


def compare_detections(ref_dets: list[list[Detection]], got_dets: list[list[Detection]],
                       iou: float = MATCH_IOU) -> dict:
    """Matched fraction over a batch (per image matching, summed)."""
    if len(ref_dets) != len(got_dets):
        raise ValueError(f"{len(ref_dets)} reference images but {len(got_dets)} stage images")
    matched = sum(match_detections(r, g, iou) for r, g in zip(ref_dets, got_dets))
    n_ref = sum(len(r) for r in ref_dets)
    n_got = sum(len(g) for g in got_dets)
    denom = max(n_ref, n_got)
    return {"matched": matched, "reference_detections": n_ref, "stage_detections": n_got,
            "matched_fraction": (matched / denom) if denom else 1.0, "match_iou": iou}

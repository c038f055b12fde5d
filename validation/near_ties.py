"""Which detection differences between a stage and PyTorch are near-ties (explained) and which are not.

A detection that one side has and the other lacks (no partner of its class with IoU >= 0.99) is EXPLAINED when
one of the decoder's decisions about it could go either way within the raw differences this stage showed:
its score against the score threshold, its point against its level's ``nms_pre`` cut, its IoU with a box of its
class against the NMS threshold, its score against such a box's (which of the two suppresses the other), or its
score against the ``max_detections``-th (``nanodet_ref.decode_margins`` decides this, on the raw outputs of the
side that has the detection). A detection whose every decision is certain is also explained when the other side
has it from the same point and class with each box coordinate within the move its distance logits allow (a
small box whose IoU falls below 0.99 by rounding). Anything else is UNEXPLAINED: a real disagreement.

The bounds are the stage's measured max |diff| per output, capped at that output's tolerance
(``compare_raw``): a difference beyond the tolerance already fails the raw check, and must not explain
detections away as well. Scores: the largest of the class-score outputs' bounds; box logits: per level.
"""
from __future__ import annotations

from nanodet_ref.decode_margins import IN, MAYBE, Bounds, box_move, stability

from .comparators import MATCH_IOU, pair_detections

EXAMPLES = 5


def tie_bounds(raw_outputs: dict, strides) -> Bounds | None:
    """Bounds from ``compare_raw``'s per-output entries (None when an output lacks a finite diff)."""
    def bound(name):
        e = raw_outputs.get(name) or {}
        if e.get("max_abs_diff") is None or e.get("tolerance") is None:
            return None
        return min(float(e["max_abs_diff"]), float(e["tolerance"]))

    scores = [bound(f"cls_pred_stride_{s}") for s in strides]
    dists = {int(s): bound(f"dis_pred_stride_{s}") for s in strides}
    if None in scores or None in dists.values():
        return None
    return Bounds(max(scores), dists)


def explain_differences(cfg, ref_out: dict, got_out: dict, ref_dets: list, got_dets: list, bounds: Bounds,
                        names: list[str] | None = None, iou: float = MATCH_IOU) -> dict:
    """Counts of explained / unexplained unmatched detections over a batch (boxes in input pixels), the reasons,
    a few unexplained examples and the bounds used."""
    by_reason: dict[str, int] = {}
    unexplained = []
    for i, (ref, got) in enumerate(zip(ref_dets, got_dets)):
        _, lonely_ref, lonely_got = pair_detections(ref, got, iou)
        for side, out, dets, lonely, other in (("pytorch", ref_out, ref, lonely_ref, got),
                                               ("stage", got_out, got, lonely_got, ref)):
            if not lonely:
                continue
            st = stability(out, cfg, bounds, i)
            for k in lonely:
                why = _reason(cfg, bounds, st, dets[k], other)
                if why is None:
                    unexplained.append(_example(cfg, names, i, side, dets[k], other))
                else:
                    by_reason[why] = by_reason.get(why, 0) + 1
    return {"explained": sum(by_reason.values()), "unexplained": len(unexplained),
            "explained_by": dict(sorted(by_reason.items())), "unexplained_examples": unexplained[:EXAMPLES],
            "tie_bounds": bounds_record(cfg, bounds)}


def _reason(cfg, bounds: Bounds, st, det, other: list) -> str | None:
    status, why = st.of(det.source, det.label)
    if status == MAYBE:
        return why
    if status == IN:
        twin = _twin(det, other)
        if twin is not None and _max_move(det, twin) <= box_move(bounds, det.source[0], cfg.reg_max,
                                                                  cfg.input_size):
            return "box"
    return None


def _twin(det, other: list):
    """The other side's detection from the same point and class, if any."""
    return next((o for o in other if o.source == det.source and o.label == det.label), None)


def _max_move(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a.box, b.box))


def _example(cfg, names, i, side, det, other) -> dict:
    twin = _twin(det, other)
    return {"image": names[i] if names else i, "only_in": side, "label": int(det.label),
            "class_name": cfg.class_names[det.label] if det.label < len(cfg.class_names) else None,
            "score": round(float(det.score), 6), "box": [round(float(v), 3) for v in det.box],
            "source": list(det.source) if det.source else None,
            "other_side_same_point": None if twin is None else
            {"score": round(float(twin.score), 6), "box": [round(float(v), 3) for v in twin.box],
             "max_coordinate_move": round(_max_move(det, twin), 4)}}


def bounds_record(cfg, bounds: Bounds) -> dict:
    """The bounds as the report states them: score, distance logits and box coordinates (input pixels)."""
    return {"score": bounds.score, "dist_logit": {str(s): v for s, v in bounds.dist_logit.items()},
            "box_px": {str(s): box_move(bounds, s, cfg.reg_max, cfg.input_size) for s in bounds.dist_logit}}

"""How close the shared decoder's decisions are to flipping: ``nanodet_ref.decode``'s rules in interval form.

Two stages computing the same network differ in their raw outputs by float32 rounding; the decoder's discrete
decisions still go different ways where a value sits that close to a boundary: a score at the score threshold,
two points tied at a level's ``nms_pre`` cut, an IoU at the NMS threshold, two overlapping boxes of one class
with nearly equal scores (which one suppresses the other), a score tied with the ``max_detections``-th.
``stability`` answers, for the candidates of one image, whether each is in the decoder's output for EVERY set of
raw outputs within ``Bounds`` of the given ones (IN), for none of them (OUT), or possibly either (MAYBE, with the
first decision that can flip). Doubtful cases are answered MAYBE, never IN or OUT: an IN or OUT answer holds for
every perturbation within the bounds, which is what a verdict may rely on.

Bounds. A class score is a raw output, so it moves by at most ``Bounds.score``; a comparison of two scores can
flip when they are within 2 x that. A box coordinate is a point centre +- stride * E[k], the mean bin of the
softmax p over the R + 1 distance logits of its side (R = reg_max). Move the logits z along z + t e, t in [0, 1],
|e_k| <= d: then dE/dt = Cov_t(k, e) <= sd(k) sd(e) <= (R / 2) d (a variable confined to an interval of length L
has variance <= L^2 / 4), so |E' - E| <= R d / 2 and the coordinate moves by at most stride * R * d / 2
(``box_move``; reached by half the mass on bin 0 and half on bin R; clipping to the input never increases a move).
The decoder's own float32 rounding adds a few units in the last place of the input size (``ROUNDING``) to boxes
and of 1 to IoUs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import candidate_order, image_outputs, level_boxes, level_points

IN, MAYBE, OUT = 2, 1, 0
ROUNDING = 8 * float(np.finfo(np.float32).eps)  # relative slack for the decoder's float32 arithmetic


@dataclass(frozen=True)
class Bounds:
    """How far raw outputs may move: every class score by ``score``, every distance logit of stride s by
    ``dist_logit[s]``."""

    score: float
    dist_logit: dict


def box_move(bounds: Bounds, stride: int, reg_max: int, input_wh) -> float:
    """Largest move (input pixels) of a box coordinate of level ``stride`` within ``bounds``."""
    d = float(bounds.dist_logit.get(stride, 0.0))
    return stride * reg_max * d / 2 + ROUNDING * max(input_wh)


def iou_bounds(box: np.ndarray, move: float, boxes: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest IoU of ``box`` with each of ``boxes`` when their coordinates move by at most ``move`` /
    ``moves``. The overlap's width moves by at most 2 x the larger move (a min and a max of moved coordinates),
    each box's width by 2 x its own; the union is bounded from the areas and the overlap."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64)
    both = 2 * np.maximum(move, moves)
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter_lo = np.clip(iw - both, 0, None) * np.clip(ih - both, 0, None)
    inter_hi = np.clip(iw + both, 0, None) * np.clip(ih + both, 0, None)
    area_lo, area_hi = _area_bounds(box[None], np.asarray([move]))
    areas_lo, areas_hi = _area_bounds(boxes, np.asarray(moves, np.float64))
    union_hi = area_hi + areas_hi - inter_lo
    union_lo = np.maximum.reduce([area_lo + areas_lo - inter_hi, np.broadcast_to(area_lo, areas_lo.shape),
                                  areas_lo, inter_lo])
    lo = np.where(union_hi > 0, inter_lo / np.where(union_hi > 0, union_hi, 1), 0.0)
    hi = np.where(union_lo > 0, np.minimum(inter_hi / np.where(union_lo > 0, union_lo, 1), 1.0), 1.0)
    return lo - ROUNDING, hi + ROUNDING


def _area_bounds(boxes: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    lo = np.clip(w - 2 * moves, 0, None) * np.clip(h - 2 * moves, 0, None)
    return lo, (w + 2 * moves) * (h + 2 * moves)


@dataclass
class Stability:
    """Status (IN / MAYBE / OUT) and the reason of a MAYBE for candidates of one image, keyed by
    (stride, point, label); every candidate not listed is OUT."""

    entries: dict

    def of(self, source, label: int) -> tuple[int, str | None]:
        if source is None:
            return OUT, None
        return self.entries.get((int(source[0]), int(source[1]), int(label)), (OUT, None))


def point_status(max_scores: np.ndarray, nms_pre: int | None, delta: float) -> np.ndarray:
    """IN / MAYBE / OUT of each point of a level at the ``nms_pre`` cut when its max class score moves by <= delta
    (a max of scores moves by at most as much as they do)."""
    n = len(max_scores)
    status = np.full(n, IN, np.int64)
    if not nms_pre or n <= nms_pre:
        return status
    if delta == 0:
        status[:] = OUT
        status[level_points(max_scores[:, None], nms_pre)] = IN
        return status
    m = max_scores.astype(np.float64)
    ranked = np.sort(m)
    possibly_above = n - np.searchsorted(ranked, m - 2 * delta, "left") - 1
    certainly_above = n - np.searchsorted(ranked, m + 2 * delta, "right")
    status[possibly_above >= nms_pre] = MAYBE
    status[certainly_above >= nms_pre] = OUT
    return status


@dataclass
class _Candidates:
    """Every candidate that may reach NMS under the bounds, in the decoder's order (sorted)."""

    score: np.ndarray     # float64
    label: np.ndarray
    box: np.ndarray       # float64 [K, 4]
    move: np.ndarray      # box coordinate bound of each candidate
    presence: np.ndarray  # IN / MAYBE: certainly or possibly above the threshold and inside its level's cut
    why: list             # reason of a MAYBE presence
    key: list             # (stride, point, label)
    reach: np.ndarray     # candidates j+1 .. reach[j]-1 are below j in order but may overtake it (score within 2 delta)


def _possible_candidates(outputs, cfg, bounds: Bounds, batch_index: int) -> _Candidates:
    opts, delta = cfg.decode, float(bounds.score)
    thr = opts["score_threshold"]
    parts = []
    for s, sc, di in image_outputs(outputs, cfg, batch_index):
        pstat = point_status(sc.max(axis=1), opts.get("nms_pre"), delta)
        top = level_points(sc, opts.get("nms_pre"))  # the decoder's row order, then the points that may join
        rest = np.setdiff1d(np.nonzero(pstat == MAYBE)[0], top)
        rows = np.concatenate([top, rest[np.argsort(-sc.max(axis=1)[rest], kind="stable")]]).astype(np.int64)
        boxes = level_boxes(di, s, cfg.input_size, cfg.reg_max, cfg.prior_offset)[rows]
        r, lab = np.nonzero(sc[rows].astype(np.float64) + delta > thr)
        score = sc[rows[r], lab].astype(np.float64)
        certain = (score - delta > thr) & (pstat[rows[r]] == IN)
        why = np.where(pstat[rows[r]] == IN, "score_threshold", "nms_pre")
        parts.append((score, lab, boxes[r], np.full(len(r), box_move(bounds, s, cfg.reg_max, cfg.input_size)),
                      np.where(certain, IN, MAYBE), why, [(s, int(rows[i]), int(c)) for i, c in zip(r, lab)]))
    score = np.concatenate([p[0] for p in parts])
    label = np.concatenate([p[1] for p in parts])
    order = candidate_order(score.astype(np.float32), label)
    keys = [k for p in parts for k in p[6]]
    why = np.concatenate([p[5] for p in parts])
    score = score[order]
    next_ = np.arange(1, len(score) + 1)
    reach = np.maximum(np.searchsorted(-score, -(score - 2 * delta), "right"), next_) if delta > 0 else next_
    return _Candidates(score, label[order], np.concatenate([p[2] for p in parts])[order].astype(np.float64),
                       np.concatenate([p[3] for p in parts])[order], np.concatenate([p[4] for p in parts])[order],
                       [why[i] for i in order], [keys[i] for i in order], reach)


def stability(outputs: dict, cfg, bounds: Bounds, batch_index: int = 0) -> Stability:
    """IN / MAYBE / OUT of the candidates of one image in the decoder's output under ``bounds``."""
    c = _possible_candidates(outputs, cfg, bounds, batch_index)
    kept, why, end = _nms_status(c, cfg.decode["nms_iou"], cfg.decode["max_detections"], float(bounds.score))
    final = _cut_status(c, kept, why, end, cfg.decode["max_detections"], float(bounds.score))
    return Stability({c.key[j]: final[j] for j in range(end) if final[j][0] != OUT})


def _nms_status(c: _Candidates, iou_threshold: float, max_detections: int | None, delta: float):
    """NMS status of candidates in decoding order until the outcome of the rest is certain: OUT once
    ``max_detections`` certainly kept ones certainly rank above them. Returns (status, reasons, end)."""
    n = len(c.score)
    kept = np.full(n, OUT, np.int64)
    why: list = [None] * n
    live: dict[int, list[int]] = {}  # per label: positions possibly kept so far
    n_in, s_star = 0, None
    for j in range(n):
        if max_detections is not None and n_in >= max_detections and (delta == 0 or c.score[j] < s_star - 2 * delta):
            return kept, why, j
        status, reason = _suppression(c, j, live.get(int(c.label[j]), []), kept, iou_threshold)
        if c.presence[j] == MAYBE:
            status, reason = min(status, MAYBE), c.why[j]
        kept[j], why[j] = status, (reason if status == MAYBE else None)
        if status >= MAYBE:
            live.setdefault(int(c.label[j]), []).append(j)
        if status == IN:
            n_in += 1
            s_star = c.score[j] if n_in == max_detections else s_star
    return kept, why, n


def _suppression(c: _Candidates, j: int, earlier: list, kept, iou_threshold) -> tuple[int, str | None]:
    """NMS status of candidate ``j`` from the possibly kept ones of its label above it, and those below it whose
    score may still overtake it."""
    if earlier:
        prev = np.asarray(earlier)
        lo, hi = iou_bounds(c.box[j], c.move[j], c.box[prev], c.move[prev])
        # a certainly kept candidate certainly ranks above j here: had j been within 2 delta of its score, j would
        # have been among the ones that might overtake it, and it would be MAYBE
        if ((kept[prev] == IN) & (lo > iou_threshold)).any():
            return OUT, None
        if (hi > iou_threshold).any():
            return MAYBE, "nms"
    if c.reach[j] > j + 1:
        later = np.arange(j + 1, c.reach[j])
        later = later[c.label[later] == c.label[j]]
        if later.size and (iou_bounds(c.box[j], c.move[j], c.box[later], c.move[later])[1] > iou_threshold).any():
            return MAYBE, "nms"
    return IN, None


def _cut_status(c: _Candidates, kept, why, end: int, max_detections: int | None, delta: float) -> list:
    """(status, reason) at the ``max_detections`` cut for the first ``end`` candidates (the others are OUT)."""
    out = [(OUT, None)] * end
    possible = kept[:end] >= MAYBE
    certain_scores = np.sort(c.score[:end][kept[:end] == IN])
    n_possible_before = np.cumsum(possible) - possible
    for j in np.nonzero(possible)[0]:
        if max_detections is None:
            out[j] = (int(kept[j]), why[j])
            continue
        if delta > 0:
            certainly_above = len(certain_scores) - np.searchsorted(certain_scores, c.score[j] + 2 * delta, "right")
            after = np.arange(j + 1, c.reach[j])  # below j but may overtake it; those not judged count as possible
            possibly_above = n_possible_before[j] + int((after >= end).sum()) + \
                int((kept[after[after < end]] >= MAYBE).sum())
        else:
            certainly_above = int((kept[:j] == IN).sum())
            possibly_above = n_possible_before[j]
        if certainly_above >= max_detections:
            continue
        if kept[j] == IN and possibly_above < max_detections:
            out[j] = (IN, None)
        else:
            out[j] = (MAYBE, why[j] if kept[j] == MAYBE else "max_detections")
    return out

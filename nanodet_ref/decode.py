"""The one decoder every stage shares (upstream's get_bboxes + multiclass_nms) on plain numpy arrays.

Inputs are the raw head outputs of the toolkit's signature (see ``nanodet_ref.model``):
sigmoid class scores [HW, C] and box-distribution logits [HW, 4(reg_max+1)] per level.

Steps: per level, the ``nms_pre`` points of highest max class score (``level_points``; every point where the
config's nms_pre is None, as for NanoDet-Plus); their boxes around the centres ``center_points`` gives for the
config's ``prior_offset`` (``level_candidates``); every (point, class) scoring above ``score_threshold`` is a
candidate; greedy per-class NMS at ``nms_iou``; the best ``max_detections`` overall (``select_detections``).
Ordering everywhere: higher score first, ties by class, then by candidate row (what upstream's stable sorts
give). ``nanodet_ref.decode_margins`` says how close each of these decisions is to flipping.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import feature_size

FIRST_BLOCK = 64     # candidates judged together in the first NMS block; the block doubles up to LAST_BLOCK
LAST_BLOCK = 2048


@dataclass
class Detection:
    label: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the pixels asked for
    source: tuple[int, int] | None = field(default=None, compare=False)  # (stride, point index on that level)

    def as_dict(self, class_names=None) -> dict:
        d = {"label": int(self.label), "score": float(self.score), "box": [float(v) for v in self.box]}
        if class_names is not None:
            d["class_name"] = class_names[self.label]
        return d


@dataclass
class Candidates:
    """One image's boxes after the per-level top-k: rows of every level, concatenated in stride order."""

    boxes: np.ndarray    # [K, 4] float32, input pixels
    scores: np.ndarray   # [K, C] float32
    strides: np.ndarray  # [K] the level of each row
    points: np.ndarray   # [K] the row's point index on its level's map


def softmax_integral(logits: np.ndarray, reg_max: int) -> np.ndarray:
    """[HW, 4(reg_max+1)] logits -> [HW, 4] expected distances in stride units."""
    z = logits.reshape(-1, 4, reg_max + 1).astype(np.float64)
    z = z - z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    return (p * np.arange(reg_max + 1)).sum(axis=2).astype(np.float32)


def center_points(h: int, w: int, stride: int, offset: float) -> np.ndarray:
    """[h * w, 2] (x, y) centres of a stride-``stride`` map, row-major: ((col + offset) stride, (row + offset)
    stride); ``offset`` is the config's ``prior_offset`` (0.5 legacy, 0 NanoDet-Plus)."""
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([(xs.ravel() + offset) * stride, (ys.ravel() + offset) * stride], axis=1).astype(np.float32)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] -> [N, M] IoU (0 where the union is empty). Every operation is elementwise IEEE, so
    ``pairwise_iou(a, b)[i, j] == pairwise_iou(b, a)[j, i]`` bit for bit (the NMS relies on it)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return pairwise_iou(np.asarray(box)[None], boxes)[0]


def greedy_nms(boxes: np.ndarray, labels: np.ndarray, order: np.ndarray, iou_threshold: float,
               limit: int | None = None) -> np.ndarray:
    """Greedy NMS visiting candidates in ``order``: one is kept unless an earlier kept candidate of its label
    overlaps it with IoU > ``iou_threshold``; stops once ``limit`` are kept. Returns kept indices in visiting order.

    Exactly what per-label greedy NMS followed by a merge in visiting order and a cut at ``limit`` gives (a
    candidate's fate depends only on earlier candidates of its label), but it never looks past the last kept
    one. Candidates are judged in blocks: first against everything kept so far (one IoU matrix), then the
    survivors of a block against each other in order.
    """
    limit = len(order) if limit is None else max(int(limit), 0)
    kept: list[int] = []
    start, size = 0, FIRST_BLOCK
    while start < len(order) and len(kept) < limit:
        block = order[start:start + size]
        start, size = start + size, min(2 * size, LAST_BLOCK)
        if kept:
            prev = np.asarray(kept)
            hit = (pairwise_iou(boxes[block], boxes[prev]) > iou_threshold) & \
                (labels[block][:, None] == labels[prev][None, :])
            block = block[~hit.any(axis=1)]
        if block.size:
            _keep_in_order(boxes, labels, block, iou_threshold, limit, kept)
    return np.asarray(kept, dtype=np.int64)


def _keep_in_order(boxes, labels, block, iou_threshold, limit, kept: list) -> None:
    """Greedy NMS inside one block of candidates none of which the already kept ones suppress."""
    conflict = (pairwise_iou(boxes[block], boxes[block]) > iou_threshold) & \
        (labels[block][:, None] == labels[block][None, :])
    alive = np.ones(len(block), bool)
    for k in range(len(block)):
        if not alive[k]:
            continue
        kept.append(int(block[k]))
        if len(kept) == limit:
            return
        alive[k + 1:] &= ~conflict[k, k + 1:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices kept, highest score first (ties: lower index first, as a stable sort gives)."""
    order = np.argsort(-scores, kind="stable")
    return greedy_nms(boxes, np.zeros(len(boxes), np.int64), order, iou_threshold)


def level_points(scores: np.ndarray, nms_pre: int | None) -> np.ndarray:
    """Points of one level that go on to NMS: the ``nms_pre`` best by max class score (ties: lower index first),
    or all of them."""
    if nms_pre and scores.shape[0] > nms_pre:
        return np.argsort(-scores.max(axis=1), kind="stable")[:nms_pre]
    return np.arange(scores.shape[0])


def level_boxes(dists, stride, input_wh, reg_max, prior_offset) -> np.ndarray:
    """Boxes [HW, 4] (x1, y1, x2, y2 in input pixels, clipped to the input) of every point of one level, around
    the centres ``center_points`` gives for ``prior_offset``."""
    h, w = feature_size(input_wh[1], stride), feature_size(input_wh[0], stride)
    if dists.shape[0] != h * w:
        raise ValueError(f"stride {stride}: {dists.shape[0]} rows, expected {h}x{w}={h * w}")
    pts = center_points(h, w, stride, prior_offset)
    d = softmax_integral(dists, reg_max) * stride
    boxes = np.stack([pts[:, 0] - d[:, 0], pts[:, 1] - d[:, 1], pts[:, 0] + d[:, 2], pts[:, 1] + d[:, 3]], 1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, input_wh[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, input_wh[1])
    return boxes


def level_candidates(scores, dists, stride, input_wh, reg_max, prior_offset, nms_pre,
                     return_points: bool = False):
    """One level: boxes [K, 4] in input pixels and their scores [K, C] (upstream's per-level top-k), and with
    ``return_points`` the point index of each row."""
    h, w = feature_size(input_wh[1], stride), feature_size(input_wh[0], stride)
    if scores.shape[0] != h * w:
        raise ValueError(f"stride {stride}: {scores.shape[0]} rows, expected {h}x{w}={h * w}")
    top = level_points(scores, nms_pre)
    boxes, scores = level_boxes(dists, stride, input_wh, reg_max, prior_offset)[top], scores[top]
    return (boxes, scores, top) if return_points else (boxes, scores)


def candidate_order(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Decoding order of candidates (one score and label each, in row-major (row, label) order): higher score
    first, then lower label, then lower row; the order upstream's per-class stable sorts and final stable sort
    give."""
    return np.lexsort((np.arange(len(scores)), labels, -scores))


def select_detections(boxes, scores, score_threshold, iou_threshold, max_detections):
    """Rows and labels of the detections from [K, 4] boxes and [K, C] scores, best first."""
    rows, labels = np.nonzero(scores > score_threshold)
    if rows.size == 0:
        return rows.astype(np.int64), labels.astype(np.int64)
    order = candidate_order(scores[rows, labels], labels)
    kept = greedy_nms(boxes[rows], labels, order, iou_threshold, max_detections)
    return rows[kept].astype(np.int64), labels[kept].astype(np.int64)


def multiclass_nms(boxes, scores, score_threshold, iou_threshold, max_detections):
    """Per-class NMS over [K, 4] boxes and [K, C] scores; the best ``max_detections`` overall."""
    rows, labels = select_detections(boxes, scores, score_threshold, iou_threshold, max_detections)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return boxes[rows], scores[rows, labels], labels


def image_outputs(outputs: dict, cfg, batch_index: int = 0) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(stride, scores [HW, C], distance logits [HW, 4(reg_max+1)]) of one image, per level."""
    levels = []
    for s in cfg.strides:
        sc = np.asarray(outputs[f"cls_pred_stride_{s}"], np.float32)
        di = np.asarray(outputs[f"dis_pred_stride_{s}"], np.float32)
        if sc.ndim == 3:
            sc, di = sc[batch_index], di[batch_index]
        levels.append((s, sc, di))
    return levels


def candidates(outputs: dict, cfg, batch_index: int = 0) -> Candidates:
    """Every level's top-k points of one image with their boxes and scores."""
    boxes, scores, strides, points = [], [], [], []
    for s, sc, di in image_outputs(outputs, cfg, batch_index):
        b, c, top = level_candidates(sc, di, s, cfg.input_size, cfg.reg_max, cfg.prior_offset,
                                     cfg.decode.get("nms_pre"), True)
        boxes.append(b)
        scores.append(c)
        strides.append(np.full(len(top), s, np.int64))
        points.append(top.astype(np.int64))
    return Candidates(np.concatenate(boxes), np.concatenate(scores), np.concatenate(strides),
                      np.concatenate(points))


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Map boxes through a 3x3 matrix (corners, then min/max) and clip to the image."""
    if len(boxes) == 0:
        return boxes.copy()
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]], boxes[:, [2, 1]], boxes[:, [0, 3]]], 1).reshape(-1, 2)
    xyz = np.concatenate([corners, np.ones((len(corners), 1))], 1) @ matrix.T
    xy = (xyz[:, :2] / xyz[:, 2:3]).reshape(-1, 4, 2)
    out = np.concatenate([xy.min(1), xy.max(1)], 1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def decode(outputs: dict, cfg, warp: np.ndarray | None = None, image_hw: tuple[int, int] | None = None,
           batch_index: int = 0) -> list[Detection]:
    """Detections of one image from raw outputs {name: [N, HW, ...]} (or [HW, ...]).

    Boxes are in input-tensor pixels, or in image pixels when ``warp`` and ``image_hw`` are given. Each detection
    names its ``source`` (stride, point index).
    """
    opts = cfg.decode
    cand = candidates(outputs, cfg, batch_index)
    rows, labels = select_detections(cand.boxes, cand.scores, opts["score_threshold"], opts["nms_iou"],
                                     opts["max_detections"])
    boxes, scores = cand.boxes[rows], cand.scores[rows, labels]
    if warp is not None and image_hw is not None:
        boxes = warp_boxes(boxes, np.linalg.inv(warp), image_hw[1], image_hw[0])
    return [Detection(int(l), float(s), tuple(float(v) for v in b), (int(cand.strides[r]), int(cand.points[r])))
            for b, s, l, r in zip(boxes, scores, labels, rows)]

"""The one decoder every stage shares (nanodet v0.4.2 post-processing) on plain numpy arrays.

Inputs are the raw head outputs of the toolkit's signature (see ``nanodet_ref.model``):
sigmoid class scores [HW, C] and box-distribution logits [HW, 4(reg_max+1)] per level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    label: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the pixels asked for

    def as_dict(self, class_names=None) -> dict:
        d = {"label": int(self.label), "score": float(self.score), "box": [float(v) for v in self.box]}
        if class_names is not None:
            d["class_name"] = class_names[self.label]
        return d


def softmax_integral(logits: np.ndarray, reg_max: int) -> np.ndarray:
    """[HW, 4(reg_max+1)] logits -> [HW, 4] expected distances in stride units."""
    z = logits.reshape(-1, 4, reg_max + 1).astype(np.float64)
    z = z - z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    return (p * np.arange(reg_max + 1)).sum(axis=2).astype(np.float32)


def center_points(h: int, w: int, stride: int) -> np.ndarray:
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1).astype(np.float32)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices kept, highest score first (ties: lower index first, as a stable sort gives)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(order), bool)
    for pos, i in enumerate(order):
        if suppressed[pos]:
            continue
        keep.append(i)
        rest = order[pos + 1:]
        if rest.size:
            suppressed[pos + 1:] |= iou_one_to_many(boxes[i], boxes[rest]) > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def level_candidates(scores, dists, stride, input_wh, reg_max, nms_pre):
    """One level: boxes [K, 4] in input pixels and their scores [K, C] (upstream's per-level top-k)."""
    h = -(-input_wh[1] // stride)
    w = -(-input_wh[0] // stride)
    pts = center_points(h, w, stride)
    if scores.shape[0] != h * w:
        raise ValueError(f"stride {stride}: {scores.shape[0]} rows, expected {h}x{w}={h * w}")
    d = softmax_integral(dists, reg_max) * stride
    if nms_pre and scores.shape[0] > nms_pre:
        top = np.argsort(-scores.max(axis=1), kind="stable")[:nms_pre]
        pts, d, scores = pts[top], d[top], scores[top]
    boxes = np.stack([pts[:, 0] - d[:, 0], pts[:, 1] - d[:, 1], pts[:, 0] + d[:, 2], pts[:, 1] + d[:, 3]], 1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, input_wh[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, input_wh[1])
    return boxes, scores


def multiclass_nms(boxes, scores, score_threshold, iou_threshold, max_detections):
    """Per-class NMS over [K, 4] boxes and [K, C] scores; the best ``max_detections`` overall."""
    rows, labels = np.nonzero(scores > score_threshold)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cand_boxes, cand_scores = boxes[rows], scores[rows, labels]
    kept = []
    for label in np.unique(labels):
        idx = np.nonzero(labels == label)[0]
        kept.append(idx[nms(cand_boxes[idx], cand_scores[idx], iou_threshold)])
    kept = np.concatenate(kept)
    kept = kept[np.argsort(-cand_scores[kept], kind="stable")][:max_detections]
    return cand_boxes[kept], cand_scores[kept], labels[kept]


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

    Boxes are in input-tensor pixels, or in image pixels when ``warp`` and ``image_hw`` are given.
    """
    opts = cfg.decode
    all_boxes, all_scores = [], []
    for s in cfg.strides:
        sc = np.asarray(outputs[f"cls_pred_stride_{s}"], np.float32)
        di = np.asarray(outputs[f"dis_pred_stride_{s}"], np.float32)
        if sc.ndim == 3:
            sc, di = sc[batch_index], di[batch_index]
        b, c = level_candidates(sc, di, s, cfg.input_size, cfg.reg_max, opts.get("nms_pre"))
        all_boxes.append(b)
        all_scores.append(c)
    boxes, scores, labels = multiclass_nms(np.concatenate(all_boxes), np.concatenate(all_scores),
                                           opts["score_threshold"], opts["nms_iou"], opts["max_detections"])
    if warp is not None and image_hw is not None:
        boxes = warp_boxes(boxes, np.linalg.inv(warp), image_hw[1], image_hw[0])
    return [Detection(int(l), float(s), tuple(float(v) for v in b)) for b, s, l in zip(boxes, scores, labels)]

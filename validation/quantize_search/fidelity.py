"""How far a run's raw outputs moved from float32's, weighted by where detections come from: the search's
sensitivity measure.

    error = sum over images, levels and points of  w * ( sum_classes (score - score0)^2
                                                         + sum_sides (distance - distance0)^2 )

``w`` is float32's highest class score at the point (so points that never become detections hardly count),
scores are the sigmoid outputs, distances the expected box sides in stride units (softmax over each side's bins,
as the decoder computes them). Independent rounding noise from several weights adds up in squares, so the error
of a mix is close to the sum of its weights' own errors (measured on m-416: 215 summed, 218 all at once), which
is what lets the search rank weights by error per byte saved.
"""
from __future__ import annotations

import numpy as np

from nanodet_ref.decode import softmax_integral


def output_error(got: dict[str, np.ndarray], base: dict[str, np.ndarray], cfg) -> float:
    total = 0.0
    for s in cfg.strides:
        cls, cls0 = got[f"cls_pred_stride_{s}"], base[f"cls_pred_stride_{s}"]
        w = cls0.max(axis=-1).astype(np.float64)                        # [N, HW]
        total += float((w * ((cls.astype(np.float64) - cls0) ** 2).sum(axis=-1)).sum())
        dis, dis0 = got[f"dis_pred_stride_{s}"], base[f"dis_pred_stride_{s}"]
        sides = softmax_integral(dis.reshape(-1, dis.shape[-1]), cfg.reg_max).astype(np.float64)
        sides0 = softmax_integral(dis0.reshape(-1, dis0.shape[-1]), cfg.reg_max).astype(np.float64)
        total += float((w.reshape(-1) * ((sides - sides0) ** 2).sum(axis=-1)).sum())
    return total

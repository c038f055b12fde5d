"""The whole detector: backbone -> neck (PAN, or NanoDet-Plus's GhostPAN) -> head, with the toolkit's fixed
input/output signature.

Signature (the same for every stage):
  input  ``input``  [1, 3, H, W] float32, BGR, normalised with the config's mean/std (NCHW)
  outputs, per stride s in the config's strides (8, 16, 32; NanoDet-Plus adds 64):
    ``cls_pred_stride_{s}``  [1, h_s * w_s, num_classes]   sigmoid class scores, row-major over the map
    ``dis_pred_stride_{s}``  [1, h_s * w_s, 4 * (reg_max+1)] raw box-distribution logits (l, t, r, b bins)
  where h_s, w_s = ceil(H / s), ceil(W / s) (``Config.feature_sizes``; the config refuses sizes the neck cannot take)
"""
from __future__ import annotations

import torch
from torch import nn

from .backbones import build_backbone
from .arch_registry import build_fpn, build_head
from .config import Config

INPUT_NAME = "input"


def output_names(strides) -> list[str]:
    return [f"cls_pred_stride_{s}" for s in strides] + [f"dis_pred_stride_{s}" for s in strides]


class NanoDet(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.backbone = build_backbone(cfg.backbone)
        self.fpn = build_fpn(cfg.fpn)
        self.head = build_head(cfg.head)
        self.output_names = output_names(cfg.strides)

    def forward(self, x):
        scores, dists = self.head(self.fpn(self.backbone(x)))
        return tuple(scores) + tuple(dists)


def build_model(cfg: Config) -> NanoDet:
    return NanoDet(cfg).eval()


def run_model(model: NanoDet, batch) -> dict:
    """Run on a numpy [N, 3, H, W] batch; returns {output name: numpy array}."""
    with torch.no_grad():
        outs = model(torch.as_tensor(batch))
    return {name: t.numpy() for name, t in zip(model.output_names, outs)}

"""The whole detector: backbone -> neck (PAN, or NanoDet-Plus's GhostPAN) -> head, with the toolkit's fixed
input/output signature (``contracts.signature``: input ``input`` [1, 3, H, W] NCHW; per stride s the outputs
``cls_pred_stride_{s}`` [1, h_s * w_s, num_classes] and ``dis_pred_stride_{s}`` [1, h_s * w_s, 4 * (reg_max+1)],
where h_s, w_s = ceil(H / s), ceil(W / s): ``Config.feature_sizes``; the config refuses sizes the neck cannot take).
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.signature import output_names

from .arch_registry import build_fpn, build_head
from .backbones import build_backbone
from .config import Config


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

"""The whole detector: backbone -> neck (PAN, or NanoDet-Plus's GhostPAN) -> head, with the toolkit's fixed
input/output signature (``contracts.signature``: input ``input`` [1, 3, H, W] NCHW; per stride s the outputs
``cls_pred_stride_{s}`` [1, h_s * w_s, num_classes] and ``dis_pred_stride_{s}`` [1, h_s * w_s, 4 * (reg_max+1)],
where h_s, w_s = ceil(H / s), ceil(W / s): ``Config.feature_sizes``; the config refuses sizes the neck cannot take).
Built with ``layout="upstream"`` it gives upstream's export signature instead: the same numbers packed into one
output [1, N, num_classes + 4 * (reg_max+1)] (:func:`pack_upstream`), what ``--layout upstream`` exports.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.signature import DEFAULT_LAYOUT, UPSTREAM_LAYOUT, check_layout_applies, export_output_names

from .arch_registry import build_fpn, build_head
from .backbones import build_backbone
from .config import Config


def pack_upstream(scores, dists) -> torch.Tensor:
    """Per-level [N, HW, C] scores and [N, HW, 4(reg_max+1)] logits -> upstream's one export output: per level
    scores then logits on the last axis, the levels one after the other (as upstream's ``_forward_onnx``)."""
    return torch.cat([torch.cat([s, d], dim=2) for s, d in zip(scores, dists)], dim=1)


class NanoDet(nn.Module):
    def __init__(self, cfg: Config, layout: str = DEFAULT_LAYOUT):
        super().__init__()
        self.backbone = build_backbone(cfg.backbone)
        self.fpn = build_fpn(cfg.fpn)
        self.head = build_head(cfg.head)
        self.layout = check_layout_applies(cfg, layout)
        self.output_names = export_output_names(cfg, layout)

    def forward(self, x):
        scores, dists = self.head(self.fpn(self.backbone(x)))
        if self.layout == UPSTREAM_LAYOUT:
            return pack_upstream(scores, dists)
        return tuple(scores) + tuple(dists)


def build_model(cfg: Config, layout: str = DEFAULT_LAYOUT) -> NanoDet:
    return NanoDet(cfg, layout).eval()


def run_model(model: NanoDet, batch) -> dict:
    """Run on a numpy [N, 3, H, W] batch; returns {output name: numpy array}."""
    with torch.no_grad():
        outs = model(torch.as_tensor(batch))
    if isinstance(outs, torch.Tensor):   # the upstream layout's one output
        outs = (outs,)
    return {name: t.numpy() for name, t in zip(model.output_names, outs)}

"""NanoDetPlusHead (NanoDet-Plus): per level, not shared, a stack of depthwise kxk modules and one 1x1 conv
giving ``num_classes`` class logits followed by 4 x (reg_max + 1) box-distribution logits (sides l, t, r, b).

Unlike the legacy NanoDetHead there is no ``gfl_reg`` and no Scale. Keys, in upstream's order:
``distribution_project.project``, ``cls_convs.{level}.{i}.*`` (DepthwiseConvModule, or ConvModule with
``conv_type: Conv``), ``gfl_cls.{level}.{weight,bias}``. The training-only parts of upstream's head (losses,
label assigner) hold no tensors and are not built.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.errors import UserError

from .head import Integral
from .layers import ConvModule, DepthwiseConvModule

BN = {"type": "BN"}  # upstream's default norm_cfg for this head (never mutated)
CONV_TYPES = {"DWConv": DepthwiseConvModule, "Conv": ConvModule}


class NanoDetPlusHead(nn.Module):
    def __init__(self, num_classes, input_channel, feat_channels=96, stacked_convs=2, kernel_size=5,
                 strides=(8, 16, 32), conv_type="DWConv", norm_cfg=BN, reg_max=7, activation="LeakyReLU",
                 **_training_only):
        super().__init__()
        if conv_type not in CONV_TYPES:
            raise UserError(f"NanoDetPlusHead conv_type '{conv_type}' is unknown (supported: DWConv, Conv)")
        self.num_classes = int(num_classes)
        self.reg_max = int(reg_max)
        self.strides = list(strides)
        self.distribution_project = Integral(self.reg_max)  # first: upstream registers it before the convs
        block = CONV_TYPES[conv_type]
        self.cls_convs = nn.ModuleList(
            nn.ModuleList(block(input_channel if i == 0 else feat_channels, feat_channels, kernel_size, 1,
                                kernel_size // 2, norm_cfg=norm_cfg, act=activation)
                          for i in range(stacked_convs))
            for _ in self.strides)
        out_ch = self.num_classes + 4 * (self.reg_max + 1)
        self.gfl_cls = nn.ModuleList(nn.Conv2d(feat_channels, out_ch, 1) for _ in self.strides)

    def forward(self, feats):
        """Per level: (sigmoid class scores [N, HW, C], raw distribution logits [N, HW, 4(reg_max+1)]),
        row-major over each map, as the legacy head gives them (the toolkit's per-level signature)."""
        if len(feats) != len(self.strides):
            raise ValueError(f"NanoDetPlusHead got {len(feats)} feature maps for {len(self.strides)} strides")
        scores, dists = [], []
        for x, stack, out_conv in zip(feats, self.cls_convs, self.gfl_cls):
            for conv in stack:
                x = conv(x)
            cls, reg = torch.split(out_conv(x), [self.num_classes, 4 * (self.reg_max + 1)], dim=1)
            scores.append(cls.sigmoid().flatten(start_dim=2).permute(0, 2, 1))
            dists.append(reg.flatten(start_dim=2).permute(0, 2, 1))
        return scores, dists


def build_plus_head(cfg: dict) -> NanoDetPlusHead:
    """A NanoDetPlusHead from upstream's ``model.arch.head`` mapping (``name: NanoDetPlusHead``); the
    training-only entries (``loss``, ``assigner_cfg``) are accepted and not used."""
    args = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return NanoDetPlusHead(**args)
    except TypeError as exc:
        raise UserError(f"head NanoDetPlusHead: bad arguments ({exc})") from None

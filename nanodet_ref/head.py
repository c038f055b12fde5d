"""NanoDetHead (legacy v0.x, share_cls_reg): per level a conv stack and one 1x1 conv giving class logits
followed by 4 x (reg_max + 1) box-distribution logits (sides l, t, r, b)."""
from __future__ import annotations

import math

import torch
from torch import nn

from contracts.errors import UserError

from .layers import ConvModule, DepthwiseConvModule


class Integral(nn.Module):
    """Holds upstream's ``project`` buffer [0..reg_max] (key ``head.distribution_project.project``)."""

    def __init__(self, reg_max: int):
        super().__init__()
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1))


class NanoDetHead(nn.Module):
    def __init__(self, num_classes, input_channel, feat_channels=96, stacked_convs=2, kernel_size=3,
                 share_cls_reg=True, conv_type="DWConv", norm_cfg=None, reg_max=7, strides=(8, 16, 32),
                 activation="LeakyReLU", **_ignored):
        super().__init__()
        if not share_cls_reg:
            raise UserError("NanoDetHead share_cls_reg: False is not supported (every legacy NanoDet shares them)")
        if conv_type not in ("DWConv", "Conv"):
            raise UserError(f"NanoDetHead conv_type '{conv_type}' is unknown (supported: DWConv, Conv)")
        norm_cfg = norm_cfg or {"type": "BN"}
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = list(strides)
        block = DepthwiseConvModule if conv_type == "DWConv" else ConvModule
        pad = (kernel_size - 1) // 2
        self.cls_convs = nn.ModuleList()
        for _ in self.strides:
            stack = nn.ModuleList(
                block(input_channel if i == 0 else feat_channels, feat_channels, kernel_size, 1, pad,
                      norm_cfg=norm_cfg, act=activation)
                for i in range(stacked_convs))
            self.cls_convs.append(stack)
        out_ch = num_classes + 4 * (reg_max + 1)
        self.gfl_cls = nn.ModuleList(nn.Conv2d(feat_channels, out_ch, 1) for _ in self.strides)
        # Built by upstream and present in its checkpoints, never used with share_cls_reg.
        self.gfl_reg = nn.ModuleList(nn.Conv2d(feat_channels, 4 * (reg_max + 1), 1) for _ in self.strides)
        self.distribution_project = Integral(reg_max)

    def init_weights(self, generator: torch.Generator) -> None:
        """Upstream-like init (normal std 0.01, class-prior bias) from a seeded generator."""
        prior_bias = -math.log((1 - 0.01) / 0.01)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                with torch.no_grad():
                    m.weight.normal_(0, 0.01, generator=generator)
                    if m.bias is not None:
                        m.bias.zero_()
        with torch.no_grad():
            for conv in self.gfl_cls:
                conv.bias[: self.num_classes] = prior_bias

    def forward(self, feats):
        """Per level: (sigmoid class scores [N, HW, C], raw distribution logits [N, HW, 4(reg_max+1)])."""
        scores, dists = [], []
        for x, stack, gfl in zip(feats, self.cls_convs, self.gfl_cls):
            for conv in stack:
                x = conv(x)
            out = gfl(x)
            cls, reg = torch.split(out, [self.num_classes, 4 * (self.reg_max + 1)], dim=1)
            scores.append(cls.sigmoid().flatten(start_dim=2).permute(0, 2, 1))
            dists.append(reg.flatten(start_dim=2).permute(0, 2, 1))
        return scores, dists


def build_head(cfg: dict) -> nn.Module:
    if cfg["name"] != "NanoDetHead":
        raise UserError(f"unknown head '{cfg['name']}' (supported: NanoDetHead)")
    args = {k: v for k, v in cfg.items() if k not in ("name", "loss", "octave_base_scale", "scales_per_octave")}
    return NanoDetHead(**args)

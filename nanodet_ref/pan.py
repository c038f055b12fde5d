"""PAN neck of legacy NanoDet: 1x1 laterals, top-down x2 and bottom-up x0.5 bilinear resampling.

The two resampling steps are submodules (``upsample`` / ``downsample``) with no parameters, so they add
no state_dict keys and an export patch can swap them for exact opset-10 equivalents.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from contracts.errors import UserError

from .layers import ConvModule


class BilinearResize(nn.Module):
    """``F.interpolate(x, scale_factor, mode='bilinear')`` with align_corners False, as upstream calls it."""

    def __init__(self, scale_factor: float):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


class PAN(nn.Module):
    def __init__(self, in_channels, out_channels, num_outs=3, start_level=0, end_level=-1,
                 conv_cfg=None, norm_cfg=None, activation=None, **_ignored):
        super().__init__()
        if start_level != 0 or end_level not in (-1, len(in_channels)) or num_outs != len(in_channels):
            raise UserError("PAN: only start_level 0, end_level -1 and num_outs == len(in_channels) are supported")
        self.in_channels = list(in_channels)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act=activation) for c in in_channels)
        self.upsample = BilinearResize(2.0)
        self.downsample = BilinearResize(0.5)

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self.upsample(laterals[i])
        outs = list(laterals)
        for i in range(len(outs) - 1):
            outs[i + 1] = outs[i + 1] + self.downsample(outs[i])
        return outs


def build_fpn(cfg: dict) -> nn.Module:
    if cfg["name"] != "PAN":
        raise UserError(f"unknown fpn '{cfg['name']}' (supported: PAN)")
    return PAN(**{k: v for k, v in cfg.items() if k != "name"})

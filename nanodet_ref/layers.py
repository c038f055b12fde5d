"""Building blocks named as upstream nanodet names them, so that state_dict keys match."""
from __future__ import annotations

import torch
from torch import nn

from contracts.errors import UserError

ACTIVATIONS = {
    "ReLU": lambda: nn.ReLU(inplace=True),
    "LeakyReLU": lambda: nn.LeakyReLU(negative_slope=0.1, inplace=True),
    "ReLU6": lambda: nn.ReLU6(inplace=True),
    "SELU": lambda: nn.SELU(inplace=True),
    "ELU": lambda: nn.ELU(inplace=True),
    "GELU": lambda: nn.GELU(),
    "PReLU": lambda: nn.PReLU(),
    "SiLU": lambda: nn.SiLU(inplace=True),
    "Hardswish": lambda: nn.Hardswish(inplace=True),
}


def activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise UserError(f"unknown activation '{name}' (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def _check_norm(norm_cfg: dict | None) -> None:
    if norm_cfg is not None and norm_cfg.get("type", "BN") != "BN":
        raise UserError(f"unsupported norm_cfg type '{norm_cfg.get('type')}' (supported: BN)")


class ConvModule(nn.Module):
    """conv -> bn -> act. Keys: ``conv.*`` and, with a norm, ``bn.*`` (bias only without a norm)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1,
                 norm_cfg: dict | None = None, act: str | None = "ReLU"):
        super().__init__()
        _check_norm(norm_cfg)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=norm_cfg is None)
        if norm_cfg is not None:
            self.bn = nn.BatchNorm2d(out_ch)
        self.act = activation(act)

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.act(x)


class DepthwiseConvModule(nn.Module):
    """depthwise kxk -> bn -> act -> pointwise 1x1 -> bn -> act (upstream's DepthwiseConvModule)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0,
                 norm_cfg: dict | None = None, act: str | None = "ReLU"):
        super().__init__()
        _check_norm(norm_cfg)
        bias = norm_cfg is None
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size, stride, padding, groups=in_ch, bias=bias)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=bias)
        if norm_cfg is not None:
            self.dwnorm = nn.BatchNorm2d(in_ch)
            self.pwnorm = nn.BatchNorm2d(out_ch)
        self.act = activation(act)

    def forward(self, x):
        x = self.depthwise(x)
        if hasattr(self, "dwnorm"):
            x = self.dwnorm(x)
        x = self.act(x)
        x = self.pointwise(x)
        if hasattr(self, "pwnorm"):
            x = self.pwnorm(x)
        return self.act(x)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)

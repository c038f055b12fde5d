"""How much AP an approximate speed-up would cost: ``python -m commands pruning-probe --model m-416``.

Not a conversion option: a study behind the benchmark's conclusion. The converted models compute exactly the
checkpoint's live multiply-adds (``patches/dead_branch_channels.py`` drops the dead ones). Going faster in the
same runtime means computing fewer, i.e. changing the network. This probe takes the cheapest such change that
keeps the architecture: in every ShuffleNetV2 unit's second branch, middle channels are replaced by their mean
(a constant, which would fold into the next BN like a dead channel), least important first, until a given share
of the network's convolution multiply-adds is gone. Importance of channel k = variance of its depthwise + BN
output x squared norm of its column in the last 1x1 conv (scaled by that conv's BN), per multiply-add it costs;
means and variances come from the photos a registry package ships (``nanodet_ref.samples``), not from the
evaluation images. Then COCO AP on the shared images, per share.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from contracts.errors import UserError


@dataclass
class Channel:
    unit: int
    index: int
    importance: float      # per multiply-add
    macs: int              # multiply-adds its three convolutions cost
    mean: float            # its depthwise + BN output's mean on the calibration photos


def _units(model: nn.Module) -> list:
    from nanodet_ref.backbones import ShuffleV2Block
    return [m for m in model.modules() if type(m) is ShuffleV2Block]


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every Conv2d the model runs on x."""
    total = []
    hooks = [m.register_forward_hook(lambda m, i, o: total.append(o.shape[2] * o.shape[3] * m.weight.numel()))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sum(total)


def rank_channels(model: nn.Module, calibration: list[torch.Tensor]) -> list[Channel]:
    """Every middle channel of every ShuffleNetV2 unit, least important per multiply-add first."""
    from patches.dead_branch_channels import channel_macs
    units = _units(model)
    if not units:
        raise UserError("pruning probe: the model has no ShuffleNetV2 units (only NanoDet-m backbones are probed)")
    sums: dict[int, list] = {}
    in_hw: dict[int, tuple] = {}

    def stats(i):
        def hook(mod, inp, out):
            o = out.detach().double()
            s = sums.setdefault(i, [0.0, 0.0, 0])
            s[0] = s[0] + o.sum((0, 2, 3))
            s[1] = s[1] + (o ** 2).sum((0, 2, 3))
            s[2] += o.shape[0] * o.shape[2] * o.shape[3]
        return hook

    def size(i):
        def hook(mod, args):
            in_hw[i] = tuple(args[0].shape[2:])
        return hook

    hooks = [u.branch2[4].register_forward_hook(stats(i)) for i, u in enumerate(units)]
    hooks += [u.register_forward_pre_hook(size(i)) for i, u in enumerate(units)]
    try:
        with torch.no_grad():
            for x in calibration:
                model(x)
    finally:
        for h in hooks:
            h.remove()
    ranked = []
    for i, u in enumerate(units):
        total, squares, count = sums[i]
        mean = total / count
        var = (squares / count - mean ** 2).clamp(min=0)
        bn = u.branch2[6]
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
        column_norm = ((u.branch2[5].weight.detach().double()[:, :, 0, 0] * scale[:, None]) ** 2).sum(0)
        macs = channel_macs(u, in_hw[i])
        for k in range(mean.numel()):
            ranked.append(Channel(i, k, float(var[k] * column_norm[k]) / macs, macs, float(mean[k])))
    ranked.sort(key=lambda c: c.importance)
    return ranked


def select(ranked: list[Channel], macs_budget: float) -> list[Channel]:
    """The least important channels, in order, until their multiply-adds reach the budget."""
    chosen, spent = [], 0
    for c in ranked:
        if spent >= macs_budget:
            break
        chosen.append(c)
        spent += c.macs
    return chosen


class MeanReplacement:
    """Context manager: the chosen channels' depthwise + BN outputs replaced by their calibration means."""

    def __init__(self, model: nn.Module, channels: list[Channel]):
        self.units = _units(model)
        self.channels = channels
        self.hooks = []

    def __enter__(self):
        per_unit: dict[int, list[Channel]] = {}
        for c in self.channels:
            per_unit.setdefault(c.unit, []).append(c)
        for i, chans in per_unit.items():
            index = torch.tensor([c.index for c in chans])
            means = torch.tensor([c.mean for c in chans], dtype=torch.float32)[None, :, None, None]

            def hook(mod, inp, out, index=index, means=means):
                out = out.clone()
                out[:, index] = means.to(out.dtype).expand(out.shape[0], -1, out.shape[2], out.shape[3])
                return out
            self.hooks.append(self.units[i].branch2[4].register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        return False

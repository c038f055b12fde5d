"""Export patch: ShuffleNetV2's channel shuffle as one channel Gather instead of a 5-D reshape/transpose.

What it fixes. ``channel_shuffle(x, 2)`` (``nanodet_ref/layers.py``) reshapes [N, C, H, W] to the 5-D
[N, 2, C/2, H, W], swaps axes 1 and 2 and reshapes back. Converters that move the graph to TF's NHWC layout
(onnx2tf) cannot keep that 5-D reshape in NHWC: they wrap every shuffle in Transposes back to NCHW and lose
track of the layout afterwards (depthwise convs behind a shuffle came out as grouped Conv2D, which TFJS cannot
run). onnx-tf keeps NCHW and transposes anyway.

Why it is exact. The shuffle is a fixed permutation of channels: output channel ``j`` is input channel
``(j % g) * (C / g) + j // g`` for ``g`` groups. ``index_select`` along the channel axis with that constant index
(ONNX Gather on axis 1, TF GatherV2 on the channel axis) moves the same values to the same places, bit for bit;
nothing is computed. ``apply`` swaps the ``forward`` of every ShuffleNetV2 block of the model given (the
pipeline passes a deep copy) and checks each block against its original on a random input.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from nanodet_ref.backbones import ShuffleV2Block
from nanodet_ref.errors import UserError

GROUPS = 2


def shuffle_index(channels: int, groups: int = GROUPS) -> torch.Tensor:
    """Input channel of each output channel of ``channel_shuffle(x, groups)``."""
    if channels % groups:
        raise UserError(f"patch channel_shuffle_gather: {channels} channels do not split into {groups} groups")
    per = channels // groups
    return torch.tensor([(j % groups) * per + j // groups for j in range(channels)], dtype=torch.long)


class GatherShuffleV2Block(ShuffleV2Block):
    """A ShuffleV2Block whose final channel shuffle is a Gather with a constant index (same parameters)."""

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return out.index_select(1, shuffle_index(int(out.shape[1])))


def apply(model: nn.Module, cfg, opset: int) -> nn.Module:
    """Give every ShuffleV2Block of ``model`` (in place) the Gather-based shuffle; other backbones: no change."""
    blocks = [m for m in model.modules() if type(m) is ShuffleV2Block]
    gen = torch.Generator().manual_seed(0)
    for block in blocks:
        reference = copy.deepcopy(block)
        block.__class__ = GatherShuffleV2Block
        channels = reference.branch2[0].in_channels * (1 if reference.stride > 1 else 2)
        x = torch.randn(1, channels, 6, 6, generator=gen)
        with torch.no_grad():
            if not torch.equal(block(x), reference(x)):
                raise UserError("patch channel_shuffle_gather: a ShuffleNetV2 block is not reproduced exactly")
    return model

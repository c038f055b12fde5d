"""Export patch: ShuffleNetV2's channel shuffle as a 4-D reshape/transpose instead of a 5-D one.

What it fixes. ``channel_shuffle(x, 2)`` (``nanodet_ref/layers.py``) reshapes [N, C, H, W] to the 5-D
[N, 2, C/2, H, W], swaps axes 1 and 2 and reshapes back. 5-D tensors trip converters (onnx2tf wraps them in
extra Transposes back to NCHW; TFJS kernels are tuned for rank <= 4). This patch merges H and W first:
[N, C, H, W] -> [N, 2, C/2, H*W] -> swap axes 1 and 2 -> [N, C, H, W].

Why it is exact. Merging the two trailing axes H, W (contiguous, row-major) into one does not move any element,
so swapping axes 1 and 2 of the 4-D view moves every element exactly where the 5-D swap moves it: output channel
``j`` is input channel ``(j % 2) * (C / 2) + j // 2``, bit for bit; nothing is computed. (A channel Gather with
that index was tried first: exact too, but TFJS wasm's GatherV2 took 284 ms of a 760 ms inference.)
``apply`` swaps the ``shuffle`` submodule of every ShuffleNetV2 block of the model given (the pipeline passes a deep copy)
and checks each block against its original on a random input (``torch.equal``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from contracts.errors import UserError
from nanodet_ref.backbones import ShuffleV2Block

GROUPS = 2


def shuffle_4d(x: torch.Tensor, groups: int = GROUPS) -> torch.Tensor:
    """``channel_shuffle(x, groups)`` through a 4-D view [N, groups, C/groups, H*W]."""
    n, c, h, w = (int(v) for v in x.shape)  # static at export: constants in the Reshape shapes
    if c % groups:
        raise UserError(f"patch channel_shuffle_4d: {c} channels do not split into {groups} groups")
    y = x.reshape(n, groups, c // groups, h * w).transpose(1, 2)
    return y.reshape(n, c, h, w)


class Shuffle4d(nn.Module):
    """Drop-in for ``nanodet_ref.backbones.ChannelShuffle`` using the 4-D view."""

    def __init__(self, groups: int = GROUPS):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return shuffle_4d(x, self.groups)


def apply(model: nn.Module, cfg, opset: int) -> nn.Module:
    """Give every ShuffleV2Block of ``model`` (in place) the 4-D shuffle; other backbones: no change."""
    blocks = [m for m in model.modules() if type(m) is ShuffleV2Block]
    gen = torch.Generator().manual_seed(0)
    for block in blocks:
        reference = copy.deepcopy(block)
        block.shuffle = Shuffle4d(block.shuffle.groups)
        channels = reference.branch2[0].in_channels * (1 if reference.stride > 1 else 2)
        x = torch.randn(1, channels, 6, 6, generator=gen)
        with torch.no_grad():
            if not torch.equal(block(x), reference(x)):
                raise UserError("patch channel_shuffle_4d: a ShuffleNetV2 block is not reproduced exactly")
    return model

"""Export patch: leave out the ShuffleNetV2 branch channels that the checkpoint has switched off.

What it fixes. A ShuffleNetV2 unit's second branch is 1x1 conv -> BN -> act -> depthwise 3x3 -> BN -> 1x1 conv
-> BN -> act (``nanodet_ref/backbones.py``). In the released NanoDet-m checkpoints some of its middle channels
are dead: their depthwise kernel is about 1e-20 (training's weight decay drove it to zero; their batch norms
still hold the initial gamma 1, variance 1). Such a channel leaves the depthwise conv + BN as the same constant
whatever the image, yet the export computes it: the first 1x1 conv's output channel, the depthwise channel and
the last 1x1 conv's input channel. In m-416 that is 139 of 2,088 middle channels, about 24 M of the network's
581 M multiply-adds, spent on constants.

Why it is exact. With the depthwise kernel of channel k at most ``DEAD`` (1e-12) in every tap, the depthwise
output of k is a sum of 9 products each below 1e-12 x |input| (on m-416 the kernels are ~1e-20 and the inputs are
activations of order 1-100: below 1e-17), so after its BN it is the constant
``c_k = beta_k - mean_k * gamma_k / sqrt(var_k + eps)``. The last 1x1 conv (no bias) then adds ``W[:, k] * c_k``
to every pixel, which its BN absorbs exactly: ``mean' = mean - W[:, dead] @ c[dead]``. So the channel's three
convolutions are dropped and the BN's mean shifted; nothing else changes. ``apply`` checks every changed unit
against its original on a random input (max |diff| within ``TOLERANCE``, float32 rounding) and reports, per
unit, how many channels it dropped and the multiply-adds saved at the config's input size.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from contracts.errors import UserError
from nanodet_ref.backbones import ShuffleV2Block

DEAD = 1e-12        # largest |tap| of a depthwise kernel that counts as switched off
TOLERANCE = 1e-5    # float32 rounding of the BN fold (the identity is exact in real arithmetic)


def dead_channels(block: ShuffleV2Block) -> torch.Tensor:
    """Bool mask of the middle channels of ``block.branch2`` whose depthwise kernel is all below ``DEAD``."""
    dw = block.branch2[3]
    return dw.weight.detach().flatten(1).abs().amax(dim=1) <= DEAD


def _bn_constant(bn: nn.BatchNorm2d) -> torch.Tensor:
    """What an eval-mode BN outputs for a zero input, per channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (bn.bias - bn.running_mean * scale).detach()


def _bn_subset(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(int(keep.sum()), eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(getattr(bn, name)[keep])
    return out.eval()


def _conv_like(conv: nn.Conv2d, weight: torch.Tensor, groups: int = 1) -> nn.Conv2d:
    out = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), conv.stride, conv.padding,
                    groups=groups, bias=False)
    with torch.no_grad():
        out.weight.copy_(weight)
    return out


def prune_block(block: ShuffleV2Block) -> int:
    """Drop the dead middle channels of ``block.branch2`` in place; returns how many were dropped."""
    b = block.branch2
    if not (len(b) == 8 and all(isinstance(b[i], nn.Conv2d) for i in (0, 3, 5))
            and all(isinstance(b[i], nn.BatchNorm2d) for i in (1, 4, 6))
            and b[0].bias is None and b[5].bias is None and b[3].groups == b[3].in_channels):
        raise UserError("patch dead_branch_channels: a ShuffleNetV2 branch is not conv/BN/act/dw/BN/conv/BN/act")
    dead = dead_channels(block)
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    if n_dead == dead.numel():
        raise UserError("patch dead_branch_channels: every middle channel of a ShuffleNetV2 unit is switched off")
    keep = ~dead
    const = _bn_constant(b[4])[dead]
    w_last = b[5].weight.detach()
    shift = w_last[:, dead, 0, 0] @ const
    n_keep = int(keep.sum())
    b[0] = _conv_like(b[0], b[0].weight.detach()[keep])
    b[1] = _bn_subset(b[1], keep)
    b[3] = _conv_like(b[3], b[3].weight.detach()[keep], groups=n_keep)
    b[4] = _bn_subset(b[4], keep)
    b[5] = _conv_like(b[5], w_last[:, keep])
    with torch.no_grad():
        b[6].running_mean.sub_(shift)
    return n_dead


def channel_macs(block: ShuffleV2Block, in_hw: tuple[int, int]) -> int:
    """Multiply-adds one middle channel of ``block.branch2`` costs at the block's input size: its output of the
    first 1x1 conv, its depthwise 3x3, its input to the last 1x1 conv."""
    h, w = in_hw
    oh, ow = ((h + 1) // 2, (w + 1) // 2) if block.stride > 1 else (h, w)
    return h * w * block.branch2[0].in_channels + oh * ow * (9 + block.branch2[5].out_channels)


def _block_input_sizes(model: nn.Module, blocks, cfg) -> dict:
    """{block: (H, W)} of each block's input at the config's input size (one forward pass of the backbone)."""
    sizes = {}

    def record(module, args):
        sizes[module] = tuple(args[0].shape[2:])

    hooks = [b.register_forward_pre_hook(record) for b in blocks]
    w, h = cfg.input_size
    try:
        with torch.no_grad():
            model.backbone(torch.zeros(1, 3, h, w))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def apply(model: nn.Module, cfg, opset: int):
    """Prune every ShuffleV2Block of ``model`` in place; returns (model, report). Other backbones: no change."""
    blocks = [m for m in model.modules() if type(m) is ShuffleV2Block]
    report = {"units_changed": 0, "channels_dropped": 0, "middle_channels": 0, "macs_saved": 0, "units": []}
    if not blocks:
        return model, report
    sizes = _block_input_sizes(model, blocks, cfg)
    gen = torch.Generator().manual_seed(0)
    for i, block in enumerate(blocks):
        report["middle_channels"] += block.branch2[3].in_channels
        reference = copy.deepcopy(block).eval()
        n_dead = prune_block(block)
        if not n_dead:
            continue
        block.eval()
        channels = reference.branch2[0].in_channels * (1 if reference.stride > 1 else 2)
        x = torch.randn(1, channels, 8, 8, generator=gen)
        with torch.no_grad():
            want, got = reference(x), block(x)
        err = float((want - got).abs().max())
        if not err <= TOLERANCE * max(1.0, float(want.abs().max())):
            raise UserError(f"patch dead_branch_channels: ShuffleNetV2 unit {i} changes by {err:.2e} without its "
                            f"dead channels; export with PATCHES=none")
        macs = n_dead * channel_macs(reference, sizes[block])
        report["units_changed"] += 1
        report["channels_dropped"] += n_dead
        report["macs_saved"] += macs
        report["units"].append({"unit": i, "dropped": n_dead, "of": reference.branch2[3].in_channels,
                                "macs_saved": macs, "max_abs_diff": err})
    report["summary"] = (f"{report['channels_dropped']} of {report['middle_channels']} branch channels dropped, "
                         f"{report['macs_saved'] / 1e6:.1f} M multiply-adds saved")
    return model, report

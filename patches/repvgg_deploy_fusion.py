"""Export patch: every RepVGG block in training form folded into its deploy form, one 3x3 conv with bias.

What it fixes. A RepVGG block as trained (``nanodet_ref/repvgg.py``, upstream's ``deploy: False`` configs) computes
``act(BN(conv3x3(x)) + BN'(conv1x1(x)) + BN''(x))``: three branches, two convolutions and an add per block. Exported
as is, the graph runs 2 convolutions, 3 batch norms and 2 adds where one 3x3 conv does the same (RepVGG-A0: 44
convs instead of 22 in the backbone), and it is not the network upstream deploys: upstream's ``export_onnx.py``
and demo convert the model first (``repvgg_det_model_convert``), and the published exports (ncnn, the topology
oracle ``reference/topology/nanodet-RepVGG-A0_416.json``) hold one 3x3 conv per block.

Why it is exact. In eval mode a BN is the affine map ``y = s (z - mean) + beta`` per channel, with
``s = gamma / sqrt(var + eps)``, so each branch is a convolution plus a bias:
- 3x3 branch: kernel ``W3 * s3``, bias ``beta3 - mean3 * s3``;
- 1x1 branch: kernel ``W1 * s1`` placed at the centre tap of a 3x3 kernel (padding 0 for the 1x1 and 1 for the
  3x3 with the same stride make output o read input ``stride * o`` at the 3x3's centre in both), bias likewise;
- identity branch (only where in == out channels at stride 1): the 3x3 kernel that copies input channel i to
  output channel i (its centre tap 1 at position i mod in-per-group of its group), times ``s_id``, bias likewise.
Convolution is linear in its kernel, so the sum of the three branches is one 3x3 convolution with the summed
kernel and bias: equal in real arithmetic. The fold is computed in float64 and stored in float32 (one rounding
per weight), so the float32 outputs differ by rounding only. ``apply`` puts the folded conv in each block as
``rbr_reparam`` (upstream's deploy key) and removes the branches, and checks every block against its original on
a random input (max |diff| within ``TOLERANCE`` of the output's scale). A model with no training-form RepVGG
block (every other backbone, or a ``deploy: True`` RepVGG config) is left as it is.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import UserError
from nanodet_ref.repvgg import RepVGGConvModule

TOLERANCE = 1e-5  # float32 rounding of the fold, relative to max(1, max |output|)


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) in float64 with ``bn(z) == s * z + t`` per channel in eval mode."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def identity_kernel(channels: int, groups: int) -> torch.Tensor:
    """The 3x3 grouped kernel [channels, channels / groups, 3, 3] that copies every channel to itself."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, 3, 3, dtype=torch.float64)
    kernel[torch.arange(channels), torch.arange(channels) % per_group, 1, 1] = 1.0
    return kernel


def folded_kernel_bias(block: RepVGGConvModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x3 kernel and bias (float64) of one conv equal to the block's three branches before its activation."""
    conv3, bn3 = block.rbr_dense[0], block.rbr_dense[1]
    conv1, bn1 = block.rbr_1x1[0], block.rbr_1x1[1]
    s3, t3 = bn_scale_shift(bn3)
    s1, t1 = bn_scale_shift(bn1)
    kernel = conv3.weight.double() * s3.view(-1, 1, 1, 1)
    kernel = kernel + F.pad(conv1.weight.double() * s1.view(-1, 1, 1, 1), [1, 1, 1, 1])
    bias = t3 + t1
    if block.rbr_identity is not None:
        sid, tid = bn_scale_shift(block.rbr_identity)
        kernel = kernel + identity_kernel(block.in_channels, block.groups) * sid.view(-1, 1, 1, 1)
        bias = bias + tid
    return kernel, bias


def fuse_block(block: RepVGGConvModule) -> None:
    """Turn ``block`` (training form) into its deploy form in place: ``rbr_reparam`` replaces the branches."""
    kernel, bias = folded_kernel_bias(block)
    dtype = block.rbr_dense[0].weight.dtype
    conv = nn.Conv2d(block.in_channels, block.out_channels, 3, block.stride, 1, groups=block.groups, bias=True,
                     dtype=dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel.to(dtype))
        conv.bias.copy_(bias.to(dtype))
    for name in ("rbr_dense", "rbr_1x1", "rbr_identity"):
        delattr(block, name)
    block.rbr_reparam = conv


def training_form_blocks(model: nn.Module) -> list[tuple[str, RepVGGConvModule]]:
    """(qualified name, block) of every RepVGG block of ``model`` still in training form."""
    return [(name, m) for name, m in model.named_modules() if type(m) is RepVGGConvModule and not m.deployed]


def apply(model: nn.Module, cfg, opset: int):
    """Fold every training-form RepVGG block of ``model`` in place; returns (model, report)."""
    found = training_form_blocks(model)
    report = {"blocks_fused": 0, "convs_before": 0, "convs_after": 0, "max_abs_diff": 0.0,
              "summary": "not applicable: the model has no RepVGG block in training form"}
    if not found:
        return model, report
    gen = torch.Generator().manual_seed(0)
    for name, block in found:
        reference = copy.deepcopy(block).eval()
        fuse_block(block)
        block.eval()
        x = torch.randn(1, block.in_channels, 9, 9, generator=gen).to(block.rbr_reparam.weight.dtype)
        with torch.no_grad():
            want, got = reference(x), block(x)
        err = float((want - got).abs().max())
        if not err <= TOLERANCE * max(1.0, float(want.abs().max())):
            raise UserError(f"patch repvgg_deploy_fusion: RepVGG block {name} changes by {err:.2e} when folded; "
                            f"export with PATCHES=none")
        report["blocks_fused"] += 1
        report["convs_before"] += 2
        report["convs_after"] += 1
        report["max_abs_diff"] = max(report["max_abs_diff"], err)
    report["summary"] = (f"{report['blocks_fused']} RepVGG blocks folded to their deploy form: "
                         f"{report['convs_before']} branch convs -> {report['convs_after']} 3x3 convs "
                         f"(block check max |diff| {report['max_abs_diff']:.1e})")
    return model, report

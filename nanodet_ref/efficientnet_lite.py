"""EfficientNet-Lite backbone (lite0 .. lite4) as upstream nanodet builds it, for inference.

Structure (upstream ``nanodet/model/backbone/efficientnet_lite.py``): a stem (3x3 stride-2 conv to 32 channels,
BN, activation) and 7 stages of MBConv blocks. Each block: optional 1x1 expansion conv + BN + act (expand
ratio != 1), kxk depthwise conv + BN + act, 1x1 projection conv + BN (no activation), plus the input where the
stride is 1 and the channel count is unchanged. No squeeze-excitation ("lite": upstream builds every block with
``has_se=False``, so no ``_se_*`` keys exist). Widths are scaled by the model's width coefficient and rounded to
multiples of 8 (``round_filters``); block counts of stages 1-5 by its depth coefficient, rounded up (stages 0
and 6 keep one block). Every BN has eps 1e-3 (momentum 0.01), as upstream's.

Upstream quirks kept on purpose, because checkpoints trained with upstream depend on them:
- ``activation`` reaches the stem only; every MBConv block uses ReLU6 whatever the config says (upstream builds
  the blocks without passing it on). The shipped configs say ReLU6, so both agree there.
- The stem stays 32 channels and stage 0's input 32 at every width coefficient.

Module names reproduce upstream's state_dict keys (``stem.0``, ``stem.1``, ``blocks.<stage>.<block>._expand_conv``,
``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``), so upstream checkpoints load strictly.
Drop-connect is a training-time regulariser (identity in eval mode) and is not built. ``pretrain: True``
(upstream's default: it downloads ImageNet weights) never downloads here: the weights come from the checkpoint,
or the toolkit's seeded random init, as the manifest's ``weights`` says.
"""
from __future__ import annotations

import math

from torch import nn

from contracts.errors import UserError

from .layers import activation as make_activation

# model_name -> (width coefficient, depth coefficient), upstream's efficientnet_lite_params (the image size and
# dropout rate there are training settings).
LITE_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
    "efficientnet_lite3": (1.2, 1.4),
    "efficientnet_lite4": (1.4, 1.8),
}

# Per stage: repeats, kernel, stride, expand ratio, input channels, output channels (before width scaling).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
BLOCK_ACTIVATION = "ReLU6"


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), bumped up by
    one ``divisor`` where rounding lost more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """``repeats * depth`` rounded up."""
    return int(math.ceil(depth * repeats))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (see the module docstring)."""

    def __init__(self, inp: int, oup: int, kernel_size: int, stride: int, expand_ratio: int,
                 act: str = BLOCK_ACTIVATION):
        super().__init__()
        self.stride = stride
        self.expand_ratio = expand_ratio
        self.residual = stride == 1 and inp == oup
        mid = inp * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel_size, stride, (kernel_size - 1) // 2, groups=mid,
                                         bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, oup, 1, bias=False)
        self._bn2 = _bn(oup)
        self._relu = make_activation(act)

    def forward(self, x):
        y = x
        if self.expand_ratio != 1:
            y = self._relu(self._bn0(self._expand_conv(y)))
        y = self._relu(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def stage_plan(model_name: str) -> list[tuple[int, int, int, int, int, int]]:
    """Per stage, after width/depth scaling: (repeats, kernel, stride, expand, input, output channels)."""
    width, depth = LITE_PARAMS[model_name]
    plan = []
    for i, (repeats, k, s, expand, cin, cout) in enumerate(STAGES):
        cin = cin if i == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        repeats = repeats if i in (0, len(STAGES) - 1) else round_repeats(repeats, depth)
        plan.append((repeats, k, s, expand, cin, cout))
    return plan


class EfficientNetLite(nn.Module):
    """Upstream's ``EfficientNetLite(model_name, out_stages, activation, pretrain)``; returns the maps of
    ``out_stages`` (stage indices 0-6; the configs use [2, 4, 6]: strides 8, 16, 32)."""

    def __init__(self, model_name: str, out_stages=(2, 4, 6), activation: str = "ReLU6", pretrain: bool = True):
        super().__init__()
        if model_name not in LITE_PARAMS:
            raise UserError(f"unknown EfficientNetLite model_name '{model_name}' "
                            f"(supported: {', '.join(LITE_PARAMS)})")
        if not set(out_stages) <= set(range(len(STAGES))):
            raise UserError(f"EfficientNetLite out_stages {list(out_stages)}: each must be a stage index 0-6")
        self.model_name = model_name
        self.out_stages = list(out_stages)
        self.stem = nn.Sequential(nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False), _bn(STEM_CHANNELS),
                                  make_activation(activation))
        self.blocks = nn.ModuleList()
        for repeats, k, s, expand, cin, cout in stage_plan(model_name):
            stage = nn.ModuleList([MBConvBlock(cin, cout, k, s, expand)])
            stage.extend(MBConvBlock(cout, cout, k, 1, expand) for _ in range(repeats - 1))
            self.blocks.append(stage)

    def out_channels(self) -> list[int]:
        """Channels of each returned map (what the neck's ``in_channels`` must say)."""
        plan = stage_plan(self.model_name)
        return [plan[i][5] for i in self.out_stages]

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.blocks):
            for block in stage:
                x = block(x)
            if i in self.out_stages:
                outs.append(x)
        return outs

"""RepVGG backbone (A0-A2, B0-B3 and the g2 / g4 grouped B variants) as upstream nanodet builds it.

Upstream: ``nanodet/model/backbone/repvgg.py`` and ``RepVGGConvModule`` in ``nanodet/model/module/conv.py``.
Five stages of 3x3 blocks: ``stage0`` is one stride-2 block to min(64, 64 w0) channels; stages 1-4 hold
``num_blocks`` blocks each (the first of each stride 2) with 64 w0, 128 w1, 256 w2 and 512 w3 channels (w: the
arch's width multipliers, truncated to integers), stage 4's replaced by ``last_channel`` where the config gives
one. The grouped variants (B1g2 ... B3g4) make every even-numbered block (counting stage0's as 0) a grouped conv
with 2 or 4 groups.

A block has two forms, as upstream's:
- training form (``deploy: False``, the upstream configs): ``act(rbr_dense(x) + rbr_1x1(x) + rbr_identity(x))``,
  ``rbr_dense`` = 3x3 conv (padding 1) + BN, ``rbr_1x1`` = 1x1 conv (padding 0, same stride and groups) + BN,
  ``rbr_identity`` = a BN of the input, only where the block keeps its channel count at stride 1;
- deploy form (``deploy: True``): ``act(rbr_reparam(x))``, one 3x3 conv with bias.
The three branches of a trained block are linear in x, so they fold into the deploy form exactly
(``patches/repvgg_deploy_fusion.py`` does that before export, as upstream's ``repvgg_det_model_convert``).

Module names reproduce upstream's state_dict keys (``stage1.0.rbr_dense.0.weight`` (conv), ``...rbr_dense.1.*``
(BN), ``...rbr_1x1.0.weight``, ``...rbr_1x1.1.*``, ``...rbr_identity.*``; deploy: ``...rbr_reparam.weight`` and
``.bias``), so upstream checkpoints of either form load strictly. RepVGG has no ``pretrain`` option upstream;
nothing is downloaded.
"""
from __future__ import annotations

from torch import nn

from contracts.errors import UserError

from .layers import activation as make_activation

GROUPED_LAYERS = tuple(range(2, 27, 2))  # upstream's optional_groupwise_layers: block indices 2, 4, ..., 26


def _groups(g: int) -> dict[int, int]:
    return {layer: g for layer in GROUPED_LAYERS}


_A = (2, 4, 14, 1)
_B = (4, 6, 16, 1)
# arch -> (blocks per stage 1-4, width multipliers of stages 1-4, {block index: groups})
ARCHS = {
    "A0": (_A, (0.75, 0.75, 0.75, 2.5), {}),
    "A1": (_A, (1, 1, 1, 2.5), {}),
    "A2": (_A, (1.5, 1.5, 1.5, 2.75), {}),
    "B0": (_B, (1, 1, 1, 2.5), {}),
    "B1": (_B, (2, 2, 2, 4), {}),
    "B1g2": (_B, (2, 2, 2, 4), _groups(2)),
    "B1g4": (_B, (2, 2, 2, 4), _groups(4)),
    "B2": (_B, (2.5, 2.5, 2.5, 5), {}),
    "B2g2": (_B, (2.5, 2.5, 2.5, 5), _groups(2)),
    "B2g4": (_B, (2.5, 2.5, 2.5, 5), _groups(4)),
    "B3": (_B, (3, 3, 3, 5), {}),
    "B3g2": (_B, (3, 3, 3, 5), _groups(2)),
    "B3g4": (_B, (3, 3, 3, 5), _groups(4)),
}
BASE_WIDTHS = (64, 128, 256, 512)


def conv_bn(cin: int, cout: int, kernel_size: int, stride: int, padding: int, groups: int) -> nn.Sequential:
    """A bias-free conv and its BN, keys ``0.*`` and ``1.*`` (upstream's ``RepVGGConvModule`` builds a plain
    ``nn.Sequential``; the named ``conv`` / ``bn`` helper of upstream's repvgg.py is not what its RepVGG uses)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class RepVGGConvModule(nn.Module):
    """One RepVGG block, training form (three branches) or deploy form (``rbr_reparam``); see the docstring."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1,
                 activation: str | None = "ReLU", deploy: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.groups = stride, groups
        self.act = make_activation(activation)
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=True)
            return
        self.rbr_identity = nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        self.rbr_dense = conv_bn(in_channels, out_channels, 3, stride, 1, groups)
        self.rbr_1x1 = conv_bn(in_channels, out_channels, 1, stride, 0, groups)

    @property
    def deployed(self) -> bool:
        return hasattr(self, "rbr_reparam")

    def forward(self, x):
        if self.deployed:
            return self.act(self.rbr_reparam(x))
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)


class RepVGG(nn.Module):
    """Upstream's ``RepVGG(arch, out_stages, activation, deploy, last_channel)``; returns the maps of
    ``out_stages`` (stage indices 1-4; the config uses [2, 3, 4]: strides 8, 16, 32)."""

    def __init__(self, arch: str, out_stages=(1, 2, 3, 4), activation: str = "ReLU", deploy: bool = False,
                 last_channel: int | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown RepVGG arch '{arch}' (supported: {', '.join(ARCHS)})")
        if not set(out_stages) <= {1, 2, 3, 4}:
            raise UserError(f"RepVGG out_stages {list(out_stages)}: each must be a stage index 1-4")
        num_blocks, widths, self.groups_map = ARCHS[arch]
        self.out_stages = list(out_stages)
        self.activation, self.deploy = activation, bool(deploy)
        self.in_planes = min(64, int(64 * widths[0]))
        self.stage0 = RepVGGConvModule(3, self.in_planes, 2, 1, activation, self.deploy)
        self.layer_index = 1
        planes = [int(base * w) for base, w in zip(BASE_WIDTHS, widths)]
        if last_channel:
            planes[3] = int(last_channel)
        for i, (p, n) in enumerate(zip(planes, num_blocks), start=1):
            setattr(self, f"stage{i}", self._make_stage(p, n))

    def _make_stage(self, planes: int, num_blocks: int) -> nn.Sequential:
        blocks = []
        for stride in [2] + [1] * (num_blocks - 1):
            groups = self.groups_map.get(self.layer_index, 1)
            blocks.append(RepVGGConvModule(self.in_planes, planes, stride, groups, self.activation, self.deploy))
            self.in_planes = planes
            self.layer_index += 1
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.stage0(x)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"stage{i}")(x)
            if i in self.out_stages:
                outs.append(x)
        return outs

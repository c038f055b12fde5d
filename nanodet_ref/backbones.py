"""Backbones of the legacy NanoDet family: ShuffleNetV2 (m) and CustomCspNet (g), and ``build_backbone`` for
every backbone of ``backbone_table`` (EfficientNet-Lite and RepVGG have their own modules)."""
from __future__ import annotations

import torch
from torch import nn

from contracts.errors import UserError

from .backbone_table import BACKBONE_BUILDERS, backbone_class
from .layers import ConvModule, activation, channel_shuffle

SHUFFLENET_CHANNELS = {
    "0.5x": [24, 48, 96, 192, 1024],
    "1.0x": [24, 116, 232, 464, 1024],
    "1.5x": [24, 176, 352, 704, 1024],
    "2.0x": [24, 244, 488, 976, 2048],
}


class ChannelShuffle(nn.Module):
    """ShuffleNetV2's channel shuffle (no parameters, so no state_dict keys: an export patch may swap it)."""

    def __init__(self, groups: int = 2):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(x, self.groups)


def _dw(ch, stride):
    return nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False)


class ShuffleV2Block(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, act: str):
        super().__init__()
        self.stride = stride
        mid = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _dw(inp, stride), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), activation(act),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else mid, mid, 1, bias=False), nn.BatchNorm2d(mid), activation(act),
            _dw(mid, stride), nn.BatchNorm2d(mid),
            nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), activation(act),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, model_size="1.0x", out_stages=(2, 3, 4), with_last_conv=False,
                 activation="ReLU", kernal_size=3, pretrain=False, **_ignored):
        super().__init__()
        if model_size not in SHUFFLENET_CHANNELS:
            raise UserError(f"unknown ShuffleNetV2 model_size '{model_size}' "
                            f"(supported: {', '.join(SHUFFLENET_CHANNELS)})")
        if with_last_conv:
            raise UserError("ShuffleNetV2 with_last_conv: True is not supported (no NanoDet config uses it)")
        self.out_stages = list(out_stages)
        chans = SHUFFLENET_CHANNELS[model_size]
        act = activation
        self.conv1 = nn.Sequential(nn.Conv2d(3, chans[0], 3, 2, 1, bias=False), nn.BatchNorm2d(chans[0]),
                                   _act(act))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inp = chans[0]
        for i, (repeats, oup) in enumerate(zip([4, 8, 4], chans[1:4]), start=2):
            blocks = [ShuffleV2Block(inp, oup, 2, act)] + [ShuffleV2Block(oup, oup, 1, act) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*blocks))
            inp = oup

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        outs = []
        for i in range(2, 5):
            x = getattr(self, f"stage{i}")(x)
            if i in self.out_stages:
                outs.append(x)
        return outs


def _act(name):
    return activation(name)


class TinyResBlock(nn.Module):
    def __init__(self, ch, kernel_size, norm_cfg, act, res_type="concat"):
        super().__init__()
        if ch % 2:
            raise UserError(f"CustomCspNet TinyResBlock needs an even channel count, got {ch}")
        if res_type != "concat":
            raise UserError(f"CustomCspNet res_type '{res_type}' is not supported (supported: concat)")
        pad = (kernel_size - 1) // 2
        self.in_conv = ConvModule(ch, ch // 2, kernel_size, padding=pad, norm_cfg=norm_cfg, act=act)
        self.mid_conv = ConvModule(ch // 2, ch // 2, kernel_size, padding=pad, norm_cfg=norm_cfg, act=act)

    def forward(self, x):
        x = self.in_conv(x)
        return torch.cat((self.mid_conv(x), x), dim=1)


class CspBlock(nn.Module):
    def __init__(self, ch, num_res, kernel_size, stride, norm_cfg, act):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.in_conv = ConvModule(ch, ch, kernel_size, stride, pad, norm_cfg=norm_cfg, act=act)
        self.res_blocks = nn.Sequential(*[TinyResBlock(ch, kernel_size, norm_cfg, act) for _ in range(num_res)])
        self.res_out_conv = ConvModule(ch, ch, kernel_size, padding=pad, norm_cfg=norm_cfg, act=act)

    def forward(self, x):
        x = self.in_conv(x)
        return torch.cat((self.res_out_conv(self.res_blocks(x)), x), dim=1)


class CustomCspNet(nn.Module):
    def __init__(self, net_cfg, out_stages, norm_cfg=None, activation="LeakyReLU", **_ignored):
        super().__init__()
        norm_cfg = norm_cfg or {"type": "BN"}
        self.out_stages = list(out_stages)
        self.stages = nn.ModuleList()
        for entry in net_cfg:
            kind, args = entry[0], entry[1:]
            if kind == "Conv":
                cin, cout, k, s = args
                self.stages.append(ConvModule(cin, cout, k, s, (k - 1) // 2, norm_cfg=norm_cfg, act=activation))
            elif kind == "CspBlock":
                cin, num_res, k, s = args
                self.stages.append(CspBlock(cin, num_res, k, s, norm_cfg, activation))
            elif kind == "MaxPool":
                k, s = args
                self.stages.append(nn.MaxPool2d(k, s, (k - 1) // 2))
            else:
                raise UserError(f"unknown CustomCspNet stage type '{kind}' (supported: Conv, CspBlock, MaxPool)")

    def forward(self, x):
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_stages:
                outs.append(x)
        return outs


def build_backbone(cfg: dict) -> nn.Module:
    """The backbone ``model.arch.backbone`` names (``backbone_table.BACKBONE_BUILDERS``), built from its keys."""
    name = cfg.get("name")
    if name not in BACKBONE_BUILDERS:
        raise UserError(f"unknown backbone '{name}' (supported: {', '.join(BACKBONE_BUILDERS)})")
    args = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return backbone_class(name)(**args)
    except TypeError as exc:
        raise UserError(f"backbone {name}: bad arguments ({exc})") from None

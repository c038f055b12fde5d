"""GhostPAN neck of NanoDet-Plus: concat fusion through Ghost bottlenecks, plus an optional extra coarser level.

Data flow (``L`` input levels, finest first, each first reduced to ``out_channels`` by a 1x1 ConvModule):
  top-down   T[L-1] = R[L-1];  T[i] = top_down_blocks[L-2-i](cat(up(T[i+1]), R[i]))   (upsampled map first)
  bottom-up  P[0] = T[0];      P[i] = bottom_up_blocks[i-1](cat(downsamples[i-1](P[i-1]), T[i]))
  extra      P[L] = extra_lvl_in_conv[0](R[L-1]) + extra_lvl_out_conv[0](P[L-1])   (no activation after the sum)
``up`` is bilinear x2 with align_corners False (upstream's ``nn.Upsample(scale_factor=2, mode='bilinear')``);
downsamples and extra convs are kxk stride-2 (depthwise with ``use_depthwise``) modules padded by k // 2, so
every coarser map is ceil(side / 2) of the finer one, as the backbone's. The extra level reads the *reduced*
coarsest input R[L-1], as upstream does (upstream's loop would feed R[L-1] to a second extra level too, adding maps
of different sizes: only 0 or 1 extra level can run, and only those are built).

Module names follow upstream (``reduce_layers``, ``top_down_blocks.i.blocks.j.ghost1.primary_conv.0`` ...), so
a checkpoint's ``fpn.*`` keys load strictly. ``upsample`` is the same parameter-free ``BilinearResize`` the
legacy PAN uses, so the opset-10 export patch that swaps a PAN's ``upsample`` finds it here too.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from contracts.errors import UserError

from .layers import ConvModule, DepthwiseConvModule, activation
from .pan import BilinearResize


class GhostModule(nn.Module):
    """Ghost module: a 1x1 ``primary_conv`` makes ceil(out / ratio) maps, a depthwise ``cheap_operation``
    derives the rest from them; the two are concatenated. Keys: ``primary_conv.{0,1}``, ``cheap_operation.{0,1}``
    (conv, BN; index 2 is the activation, or an empty placeholder without one)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 act: str | None = "ReLU"):
        super().__init__()
        init_ch = math.ceil(out_ch / ratio)
        new_ch = init_ch * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_ch, init_ch, kernel_size, 1, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_ch), activation(act))
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_ch, new_ch, dw_size, 1, dw_size // 2, groups=init_ch, bias=False),
            nn.BatchNorm2d(new_ch), activation(act))

    def forward(self, x):
        primary = self.primary_conv(x)
        return torch.cat((primary, self.cheap_operation(primary)), dim=1)


class GhostBottleneck(nn.Module):
    """ghost2(ghost1(x)) + shortcut(x), stride 1, no squeeze-excite (GhostPAN never uses either).

    ``ghost1`` has the activation, ``ghost2`` none; the shortcut is the identity where the channel count is
    unchanged, else depthwise kxk + BN then 1x1 + BN (keys ``shortcut.{0,1,2,3}``). No activation after the add.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dw_kernel_size: int = 3, act: str | None = "ReLU"):
        super().__init__()
        self.ghost1 = GhostModule(in_ch, mid_ch, act=act)
        self.ghost2 = GhostModule(mid_ch, out_ch, act=None)
        if in_ch == out_ch:
            self.shortcut = nn.Sequential()
        else:
            pad = (dw_kernel_size - 1) // 2
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, dw_kernel_size, 1, pad, groups=in_ch, bias=False), nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        return self.ghost2(self.ghost1(x)) + self.shortcut(x)


class GhostBlocks(nn.Module):
    """``num_blocks`` GhostBottlenecks in a row (``blocks.{j}``); with ``use_res`` plus a 1x1 ``reduce_conv``
    of the input (upstream builds it without a norm, so that conv has a bias)."""

    def __init__(self, in_ch: int, out_ch: int, expand: float = 1, kernel_size: int = 5, num_blocks: int = 1,
                 use_res: bool = False, act: str | None = "LeakyReLU"):
        super().__init__()
        self.use_res = use_res
        if use_res:
            self.reduce_conv = ConvModule(in_ch, out_ch, 1, norm_cfg=None, act=act)
        mid = int(out_ch * expand)
        self.blocks = nn.Sequential(*(GhostBottleneck(in_ch, mid, out_ch, dw_kernel_size=kernel_size, act=act)
                                      for _ in range(num_blocks)))

    def forward(self, x):
        out = self.blocks(x)
        return out + self.reduce_conv(x) if self.use_res else out


BN = {"type": "BN"}  # upstream's default norm_cfg for the neck (never mutated)
UPSAMPLE_KEYS = {"scale_factor", "mode", "align_corners"}


def _check_upsample(upsample_cfg: dict | None) -> None:
    """Only upstream's default upsampling (bilinear x2, align_corners False) is built; anything else is refused."""
    if upsample_cfg is None:
        return
    cfg = dict(upsample_cfg)
    if not (set(cfg) <= UPSAMPLE_KEYS and cfg.get("mode") == "bilinear" and cfg.get("scale_factor") == 2
            and not cfg.get("align_corners")):
        raise UserError(f"GhostPAN upsample_cfg {upsample_cfg!r} is not supported (supported: upstream's default, "
                        f"scale_factor 2, mode bilinear, align_corners False)")


class GhostPAN(nn.Module):
    """Upstream's GhostPAN (arguments as in its YAML); returns len(in_channels) + num_extra_level maps of
    ``out_channels``, finest first (data flow in the module docstring)."""

    def __init__(self, in_channels, out_channels, use_depthwise=False, kernel_size=5, expand=1, num_blocks=1,
                 use_res=False, num_extra_level=0, upsample_cfg=None, norm_cfg=BN, activation="LeakyReLU"):
        super().__init__()
        if num_extra_level not in (0, 1):  # upstream's 2nd extra level adds maps of different sizes: it cannot run
            raise UserError(f"GhostPAN num_extra_level {num_extra_level} is not supported (supported: 0 or 1)")
        if num_blocks != 1:  # upstream feeds every block 2 x out_channels: a second block cannot run there either
            raise UserError(f"GhostPAN num_blocks {num_blocks} is not supported (supported: 1, as upstream can run)")
        _check_upsample(upsample_cfg)
        self.in_channels = list(in_channels)
        self.num_extra_level = int(num_extra_level)
        down = DepthwiseConvModule if use_depthwise else ConvModule
        levels = len(self.in_channels)
        self.upsample = BilinearResize(2.0)
        self.reduce_layers = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act=activation) for c in self.in_channels)
        self.top_down_blocks = nn.ModuleList(
            self._ghost_blocks(out_channels, expand, kernel_size, num_blocks, use_res, activation)
            for _ in range(levels - 1))
        self.downsamples = nn.ModuleList(
            down(out_channels, out_channels, kernel_size, 2, kernel_size // 2, norm_cfg=norm_cfg, act=activation)
            for _ in range(levels - 1))
        self.bottom_up_blocks = nn.ModuleList(
            self._ghost_blocks(out_channels, expand, kernel_size, num_blocks, use_res, activation)
            for _ in range(levels - 1))
        self.extra_lvl_in_conv = nn.ModuleList(
            down(out_channels, out_channels, kernel_size, 2, kernel_size // 2, norm_cfg=norm_cfg, act=activation)
            for _ in range(self.num_extra_level))
        self.extra_lvl_out_conv = nn.ModuleList(
            down(out_channels, out_channels, kernel_size, 2, kernel_size // 2, norm_cfg=norm_cfg, act=activation)
            for _ in range(self.num_extra_level))

    @staticmethod
    def _ghost_blocks(ch, expand, kernel_size, num_blocks, use_res, act) -> GhostBlocks:
        return GhostBlocks(2 * ch, ch, expand, kernel_size=kernel_size, num_blocks=num_blocks, use_res=use_res,
                           act=act)

    def forward(self, inputs):
        reduced = [conv(x) for conv, x in zip(self.reduce_layers, inputs)]
        levels = len(reduced)
        top_down = [reduced[-1]]  # coarsest first while building, finest first at the end
        for i in range(levels - 2, -1, -1):
            block = self.top_down_blocks[levels - 2 - i]
            top_down.insert(0, block(torch.cat((self.upsample(top_down[0]), reduced[i]), dim=1)))
        outs = [top_down[0]]
        for i in range(1, levels):
            block = self.bottom_up_blocks[i - 1]
            outs.append(block(torch.cat((self.downsamples[i - 1](outs[-1]), top_down[i]), dim=1)))
        for conv_in, conv_out in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            outs.append(conv_in(reduced[-1]) + conv_out(outs[-1]))
        return outs


def build_ghost_pan(cfg: dict) -> GhostPAN:
    """A GhostPAN from upstream's ``model.arch.fpn`` mapping (``name: GhostPAN``)."""
    args = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return GhostPAN(**args)
    except TypeError as exc:
        raise UserError(f"fpn GhostPAN: bad arguments ({exc})") from None

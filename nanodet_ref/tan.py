"""TAN (transformer attention network), the neck of nanodet-t: three laterals fused by a transformer encoder.

Data flow as upstream's ``nanodet/model/fpn/tan.py`` (three input levels, finest first):
  R[i] = lateral_convs[i](x[i])                  1x1 conv + BN + activation to ``out_channels``
  M    = cat(down(R[0]), R[1], up(R[2]))         all at the middle level's size, 3 * out_channels channels
  T    = transformer(M, pos_embed)               1x1 conv to out_channels, + position embedding, encoders
  out  = (R[0] + up(T), R[1] + T, R[2] + down(T))
Upstream resamples with ``F.interpolate(size=<the other level's size>, mode='bilinear')`` (half-pixel,
align_corners False). Where each level is exactly twice the next coarser one (the sizes the config accepts:
``config.check_input_size``), resampling to that size is resampling by 2 or 0.5: PyTorch then uses
in / out = 2 (or 0.5) as the scale, the same numbers as ``scale_factor``. So the resamplings are the
parameter-free ``BilinearResize`` modules of the PAN (``upsample``, ``downsample``; no state_dict keys), which the
opset-10 export patch ``pan_resample_opset10`` swaps for exact equivalents.

Position embeddings: ``pos_embed`` [feature_hw[0] * feature_hw[1], 1, out_channels], added to the middle level's
flattened map. Upstream adds it as it is (no interpolation), so the middle level must hold exactly
feature_hw[0] * feature_hw[1] positions (any h, w with that product broadcasts, as upstream); the config refuses
other input sizes (``config.check_tan_positions``). Keys: ``lateral_convs.{i}.conv/bn``, ``transformer.*``
(``nanodet_ref.transformer``), ``pos_embed``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from contracts.errors import UserError

from .layers import ConvModule
from .pan import BilinearResize
from .transformer import LayerNorm, SelfAttention, TransformerBlock


class TAN(nn.Module):
    def __init__(self, in_channels, out_channels, feature_hw, num_heads, num_encoders, mlp_ratio,
                 dropout_ratio=0.0, activation="LeakyReLU"):
        super().__init__()
        del dropout_ratio  # dropout is off at inference
        if len(in_channels) != 3:
            raise UserError(f"TAN: model.arch.fpn.in_channels must name 3 levels, got {list(in_channels)}")
        self.in_channels = list(in_channels)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg={"type": "BN"}, act=activation) for c in in_channels)
        self.transformer = TransformerBlock(out_channels * 3, out_channels, num_heads, num_encoders, mlp_ratio,
                                            act=activation)
        self.pos_embed = nn.Parameter(torch.zeros(feature_hw[0] * feature_hw[1], 1, out_channels))
        self.upsample = BilinearResize(2.0)
        self.downsample = BilinearResize(0.5)

    def seeded_init(self, gen: torch.Generator) -> None:
        """Seeded random values for what ``checkpoint.random_init`` does not fill itself (it does convs and
        BNs): linear layers N(0, 1/fan_in) with bias N(0, 0.1), so attention logits are O(1) and the softmax is
        far from uniform; layer norms weight U(0.5, 1.5), bias N(0, 0.1); position embeddings N(0, 1)."""
        with torch.no_grad():
            self.pos_embed.normal_(0, 1, generator=gen)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0, math.sqrt(1.0 / m.in_features), generator=gen)
                    m.bias.normal_(0, 0.1, generator=gen)
                elif isinstance(m, SelfAttention):
                    m.in_proj_weight.normal_(0, math.sqrt(1.0 / m.in_proj_weight.shape[1]), generator=gen)
                    m.in_proj_bias.normal_(0, 0.1, generator=gen)
                elif isinstance(m, LayerNorm):
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.normal_(0, 0.1, generator=gen)

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        mid = torch.cat((self.downsample(laterals[0]), laterals[1], self.upsample(laterals[2])), dim=1)
        mid = self.transformer(mid, self.pos_embed)
        return (laterals[0] + self.upsample(mid), laterals[1] + mid, laterals[2] + self.downsample(mid))


def build_tan(cfg: dict) -> nn.Module:
    args = {k: v for k, v in cfg.items() if k != "name"}
    try:
        return TAN(**args)
    except TypeError as exc:
        raise UserError(f"fpn TAN: bad arguments in model.arch.fpn ({exc})") from None

"""The transformer encoder of nanodet-t's TAN neck, at inference, named as upstream names it.

Upstream (``nanodet/model/module/transformer.py``) builds ``TransformerBlock`` from ``nn.LayerNorm``,
``nn.MultiheadAttention`` (self-attention, sequence-first, no key/value bias) and a two-layer MLP. Here each is
written out from the ops its inference forward consists of, so that the ONNX export at opset 10 is a plain chain
of MatMul / Add / Softmax / Reshape / Transpose / ReduceMean / Sqrt / Div that every converter knows, with the
same parameters under the same names (state_dict keys ``norm1.weight``, ``attn.in_proj_weight``,
``attn.in_proj_bias``, ``attn.out_proj.weight`` ...), so upstream checkpoints load strictly:

- ``LayerNorm``: (x - mean) / sqrt(var + eps) * weight + bias over the last axis, the biased variance as
  ``nn.LayerNorm`` uses; the square is a ``Mul`` (no ``Pow`` node to convert).
- ``SelfAttention``: ``nn.MultiheadAttention(x, x, x)`` as ``F.multi_head_attention_forward`` computes it
  with ``need_weights=True`` (upstream's call): packed q/k/v projection, q scaled by 1/sqrt(head_dim) before
  ``q @ k^T``, softmax over keys, ``@ v``, heads merged, ``out_proj``. Only the attended values are returned
  (upstream reads ``[0]``, never the averaged weights).
- Dropout is off at inference, so no dropout module is built (dropout has no parameters, hence no keys).

``tests/test_tan.py`` checks both against ``nn.LayerNorm`` / ``nn.MultiheadAttention`` loaded with the same
parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import UserError

from .layers import ConvModule, activation


class LayerNorm(nn.Module):
    """``nn.LayerNorm(dim)`` over the last axis (keys ``weight``, ``bias``), from elementary ops."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        variance = (centred * centred).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(variance + self.eps) * self.weight + self.bias


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention(dim, num_heads)`` applied as ``attn(x, x, x)[0]`` on ``x`` [L, N, dim].

    Keys as torch's: ``in_proj_weight`` [3 dim, dim] (rows: q, k, v), ``in_proj_bias`` [3 dim], ``out_proj``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise UserError(f"TAN: out_channels {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = math.sqrt(1.0 / float(self.head_dim))  # torch's q scaling
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, t):
        """[L, N, dim] -> [N * heads, L, head_dim], as torch's ``view(L, N * heads, hd).transpose(0, 1)``."""
        return t.reshape(t.shape[0], -1, self.head_dim).transpose(0, 1)

    def forward(self, x):
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = self._heads(q) * self.scale, self._heads(k), self._heads(v)
        weights = torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1)  # [N * heads, L, L]
        return self.out_proj(torch.matmul(weights, v).transpose(0, 1).reshape(x.shape))


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (upstream's dropouts after each are off at inference)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerEncoder(nn.Module):
    """Pre-norm encoder layer: x + attn(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, act: str):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), act)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerBlock(nn.Module):
    """[N, C_in, H, W] -> ``conv`` (1x1 ConvModule with bias and ReLU, or identity when C_in == C_out) ->
    sequence [HW, N, C] + position embedding -> ``encoders`` -> back to [N, C, H, W].

    ``linear`` is built (upstream builds it, its checkpoints hold ``linear.weight`` / ``linear.bias``) and,
    as upstream, never used in ``forward``."""

    def __init__(self, in_channels: int, out_channels: int, num_heads: int, num_encoders: int = 1,
                 mlp_ratio: float = 1, act: str = "GELU"):
        super().__init__()
        self.conv = (nn.Identity() if in_channels == out_channels
                     else ConvModule(in_channels, out_channels, 1, norm_cfg=None, act="ReLU"))
        self.linear = nn.Linear(out_channels, out_channels)
        self.encoders = nn.Sequential(*(TransformerEncoder(out_channels, num_heads, mlp_ratio, act)
                                        for _ in range(num_encoders)))

    def forward(self, x, pos_embed):
        x = self.conv(x)
        seq = self.encoders(x.flatten(2).permute(2, 0, 1) + pos_embed)
        return seq.permute(1, 2, 0).reshape(x.shape)

"""Export patch: every half-pixel bilinear x2 / x0.5 resampling module rebuilt from ops that mean the same
everywhere (the legacy PAN's ``upsample`` and ``downsample``, NanoDet-Plus's GhostPAN ``upsample``).

What it fixes. The necks resample with ``F.interpolate(mode="bilinear", align_corners=False)``
(``nanodet_ref.pan.BilinearResize``; ``nn.Upsample(mode="bilinear")`` means the same), i.e. half-pixel
bilinear. ONNX Resize at opset <= 10 has no coordinate_transformation_mode: onnxruntime runs it ``asymmetric``
while onnx-tf converts it to TF's half-pixel resize, so the ONNX stage disagrees with PyTorch (and with the
TF/TFJS stages). At opset >= 11 the export says ``pytorch_half_pixel``, which onnx-tf rejects. This patch finds
every such module anywhere in the model (``resample_modules``) and swaps it for an equivalent whose meaning
does not depend on any coordinate convention:

- x0.5: half-pixel bilinear with scale factor 0.5 samples output pixel o at input coordinate 2o + 0.5, i.e. the
  mean of inputs 2o and 2o+1 along each axis: exactly a 2x2 average pool with stride 2 (PyTorch uses the given
  scale, not in/out, so this holds for odd sizes too: the last row is dropped by both).
- x2: half-pixel bilinear samples output 2i at input i - 1/4 (weights 1/4, 3/4 on inputs i-1, i) and output 2i+1
  at i + 1/4 (3/4, 1/4 on i, i+1), clamping at the border. With u = nearest x2 of x (u[2i] = u[2i+1] = x[i]; the
  same under every coordinate convention) and u edge-padded by 1, the 3-tap filter [1, 2, 1]/4 gives at 2i
  (u[2i-1] + 2u[2i] + u[2i+1])/4 = (x[i-1] + 3x[i])/4 and at 2i+1 (3x[i] + x[i+1])/4; at the border the edge
  copy gives x[0], as PyTorch's clamp does. Separable in 2-D: a depthwise 3x3 conv with the fixed kernel
  outer([1,2,1], [1,2,1]) / 16 on the edge-padded u. No Pad op is exported for the edge copy (onnx-tf turns
  an ONNX Pad into a tf.cond, or a while loop for ``edge``, which TFJS then runs as control flow): because
  u's first two rows are equal copies, the edge-padded filter at the border, (u0 + 2u0 + u1)/4, equals the
  zero-padded filter (2u0 + u1)/4 times 4/3. So the conv uses its own zero padding and the result is
  multiplied by a constant map that is 4/3 on border rows, times 4/3 on border columns, 1 inside.

Every op used (Resize nearest, depthwise Conv, Mul by a constant, AveragePool) exists at opset 10 and converts to a
plain TF/TFJS kernel. ``apply`` checks each replacement against the original module at the config's feature
sizes and refuses (UserError) where they would differ, or where a bilinear module has another factor or
align_corners True (no exact form here); a model without bilinear resampling is reported as not applicable.
It is applied at every opset: it is exact, and every converter agrees on its ops (in TFJS it is not a speed
gain; see docs/patches.md).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import UserError
from nanodet_ref.pan import BilinearResize

TOLERANCE = 1e-5  # float32 rounding only: the identities are exact in real arithmetic


class AvgPoolDownsample(nn.Module):
    """Half-pixel bilinear x0.5 as a 2x2 / stride 2 average pool."""

    def forward(self, x):
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ConvUpsample(nn.Module):
    """Half-pixel bilinear x2 as nearest x2, depthwise [1,2,1]x[1,2,1]/16 with zero padding, edge rescale."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(taps, taps) / 16.0)[None, None], persistent=False)

    @staticmethod
    def edge_scale(h: int, w: int) -> torch.Tensor:
        """[1, 1, h, w]: 4/3 on the border rows, times 4/3 on the border columns, 1 inside."""
        def axis(n):  # a plain constant (no in-place writes: the exporter traces this)
            return torch.tensor([4.0 / 3.0] + [1.0] * (n - 2) + [4.0 / 3.0])
        return torch.outer(axis(h), axis(w))[None, None]

    def forward(self, x):
        channels, h, w = (int(v) for v in x.shape[1:])  # static at export: constants, no Shape ops
        u = F.interpolate(x, scale_factor=2.0, mode="nearest")
        y = F.conv2d(u, self.kernel.expand(channels, 1, 3, 3).contiguous(), padding=1, groups=channels)
        return y * self.edge_scale(2 * h, 2 * w).to(y.dtype)


def _check_equal(original: nn.Module, replacement: nn.Module, sizes, what: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = torch.randn(1, 2, h, w, generator=gen)
        with torch.no_grad():
            want, got = original(x), replacement(x)
        if want.shape != got.shape or float((want - got).abs().max()) > TOLERANCE:
            raise UserError(f"patch pan_resample_opset10: {what} of a {h}x{w} feature map is not reproduced "
                            f"exactly by its opset-10 equivalent; export with PATCHES=none")


def bilinear_factor(module: nn.Module) -> float | None:
    """The scale factor of a bilinear resampling module (``BilinearResize``, or ``nn.Upsample`` in bilinear
    mode), 0.0 for one that is not half-pixel or not one plain factor on both axes, None for any other module."""
    if isinstance(module, BilinearResize):
        factor = module.scale_factor
    elif isinstance(module, nn.Upsample) and module.mode == "bilinear":
        if module.align_corners or module.size is not None:
            return 0.0
        factor = module.scale_factor
    else:
        return None
    if isinstance(factor, (tuple, list)):
        factor = factor[0] if len(set(factor)) == 1 else 0.0
    return float(factor) if factor is not None else 0.0


def resample_modules(model: nn.Module) -> list[tuple[str, nn.Module, float]]:
    """(qualified name, module, scale factor) of every bilinear resampling module in ``model``."""
    found = []
    for name, module in model.named_modules():
        factor = bilinear_factor(module)
        if factor is not None:
            found.append((name, module, factor))
    return found


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def apply(model: nn.Module, cfg, opset: int):
    """Swap every half-pixel bilinear x2 / x0.5 module of the model given for its exact equivalent, each checked
    at every feature size of the config; returns (model, report)."""
    found = resample_modules(model)
    report = {"replaced": {}, "summary": "not applicable: the model has no bilinear resampling"}
    if not found:
        return model, report
    sizes = cfg.feature_sizes()
    for name, module, factor in found:
        if factor == 2.0:
            new, what, checked = ConvUpsample(), "bilinear x2", sizes
        elif factor == 0.5:  # a map of side 1 has no x0.5 (PyTorch refuses the empty output)
            new, what, checked = AvgPoolDownsample(), "bilinear x0.5", [hw for hw in sizes if min(hw) >= 2]
        else:
            raise UserError(f"patch pan_resample_opset10: {name} is a bilinear resize ({type(module).__name__}, "
                            f"factor {factor:g}, align_corners False only) with no exact opset-10 form here "
                            f"(only half-pixel x2 and x0.5); export with PATCHES=none")
        _check_equal(copy.deepcopy(module), new, checked, f"{name} ({what})")
        _replace(model, name, new)
        report["replaced"][name] = what
    report["summary"] = "; ".join(f"{name}: {what} as " + ("nearest x2 + fixed depthwise 3x3"
                                                            if what.endswith("x2") else "2x2 average pool")
                                  for name, what in report["replaced"].items())
    return model, report

"""Graph rewrites, one small module each, applied by the converters.

Two kinds:
- torch-level export patches: ``apply(model, cfg, opset) -> model`` (or ``(model, report dict)``, whose optional
  ``summary`` line the converter prints) swap submodules for exact equivalents that export cleanly, or more
  cheaply, at the chosen opset (the reference model itself is never changed);
- ONNX rewrites: ``rewrite(model_proto, cfg) -> (model_proto, report dict)`` on the exported graph (a module with
  ``wanted(options)`` runs only where that says so: ``equalize_channel_ranges`` for ``--quantize uint8`` without
  ``--keep``, and ``auto``).

Every patch is listed below by name, in the order the pipeline applies it (a missing module is an import error,
never a silently skipped patch); the manifest records which ran. ``PATCHES=none`` switches them all off (to show
what they fix).
"""
from __future__ import annotations

from . import (channel_shuffle_4d, dead_branch_channels, equalize_channel_ranges, int64_clamp, pan_resample_opset10,
               repvgg_deploy_fusion, resize_half_pixel)

TORCH_PATCHES = {   # name -> module with apply(model, cfg, opset)
    "repvgg_deploy_fusion": repvgg_deploy_fusion,
    "pan_resample_opset10": pan_resample_opset10,
    "channel_shuffle_4d": channel_shuffle_4d,
    "dead_branch_channels": dead_branch_channels,
}
ONNX_PATCHES = {    # name -> module with rewrite(model_proto, cfg)
    "resize_half_pixel": resize_half_pixel,
    "int64_clamp": int64_clamp,
    "equalize_channel_ranges": equalize_channel_ranges,   # --quantize uint8 (not with --keep) and auto
}

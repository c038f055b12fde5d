"""Graph rewrites, one small module each, applied by the converters.

Two kinds:
- torch-level export patches: ``apply(model, cfg, opset) -> model`` (or ``(model, report dict)``, whose optional
  ``summary`` line the converter prints) swap submodules for exact equivalents that export cleanly, or more
  cheaply, at the chosen opset (the reference model itself is never changed);
- ONNX rewrites: ``rewrite(model_proto, cfg) -> (model_proto, report dict)`` on the exported graph.

Each module registers itself below; the pipeline applies the registered ones in order, and the manifest records
which ran. ``PATCHES=none`` switches them all off (to show what they fix).
"""
from __future__ import annotations

TORCH_PATCHES: dict = {}   # name -> module with apply(model, cfg, opset)
ONNX_PATCHES: dict = {}    # name -> module with rewrite(model_proto, cfg)


def _register() -> None:
    import importlib
    for name in ("pan_resample_opset10", "channel_shuffle_4d", "dead_branch_channels", "resize_half_pixel",
                 "int64_clamp"):
        try:
            mod = importlib.import_module(f"patches.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"patches.{name}":
                continue
            raise
        (TORCH_PATCHES if hasattr(mod, "apply") else ONNX_PATCHES)[name] = mod


_register()

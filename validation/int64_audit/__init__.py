"""Int64 -> int32 audit: where TFJS's lack of int64 changes what a converted NanoDet computes.

tensorflowjs_converter narrows every int64 constant to int32 with a plain numpy cast (INT64_MAX -> -1). This
package finds every int64 value on every stage (ONNX, simplified ONNX, SavedModel, TFJS model.json), says what
narrowing makes of each value outside the int32 range, which consumers change meaning and which outputs,
classes and box sides they reach (``audit_onnx``, ``audit_saved_model``, ``audit_tfjs``), and checks TFJS
against PyTorch per class channel in Node (``dynamic``). ``audit_artifact_dir`` does it all for an artifact
folder and writes ``audit.json``; ``python -m commands audit`` is the command line. The fix is the ONNX
rewrite ``patches/int64_clamp.py``.
"""
from __future__ import annotations

from .audit import audit_artifact_dir, static_audit
from .onnx_static import audit_onnx
from .tf_static import audit_saved_model, audit_tfjs

__all__ = ["audit_artifact_dir", "static_audit", "audit_onnx", "audit_saved_model", "audit_tfjs"]

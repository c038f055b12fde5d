"""Checkpoint keys of modules upstream builds only for training, recognised and dropped before a strict load.

NanoDet-Plus trains with an auxiliary neck and head (``aux_fpn.*``: a copy of the GhostPAN, ``aux_head.*``: a
SimpleConvHead) that its forward() never uses; upstream's training checkpoints carry them (242 keys for
nanodet-plus-m). The inference model has no such modules, so their keys are dropped, with one line saying how
many, instead of failing the strict load. Any other unexpected key stays an error (``checkpoint.check_and_load``).
"""
from __future__ import annotations

import sys

TRAINING_ONLY_PREFIXES = ("aux_fpn.", "aux_head.")

# Checkpoints already announced in this process: one conversion reads its checkpoint several times (the
# pre-check, the ONNX export, the audit, the validation's PyTorch reference), the user needs the line once.
_announced: set[tuple[str, int]] = set()


def drop_training_only(sd: dict, model_keys, path, stream=None) -> tuple[dict, int]:
    """``sd`` without the training-only keys the model does not have, and how many were dropped; says so on
    one line of ``stream`` (default: stderr) when any were, once per checkpoint path in a process."""
    model_keys = set(model_keys)
    dropped = [k for k in sd if k.startswith(TRAINING_ONLY_PREFIXES) and k not in model_keys]
    if not dropped:
        return sd, 0
    kept = {k: v for k, v in sd.items() if k not in set(dropped)}
    if (str(path), len(dropped)) in _announced:
        return kept, len(dropped)
    _announced.add((str(path), len(dropped)))
    groups = ", ".join(f"{p}*" for p in TRAINING_ONLY_PREFIXES if any(k.startswith(p) for k in dropped))
    print(f"note: {path}: dropped {len(dropped)} training-only keys ({groups}: upstream's auxiliary training "
          f"modules, unused at inference)", file=stream or sys.stderr)
    return kept, len(dropped)

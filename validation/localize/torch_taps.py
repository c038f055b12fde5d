"""What PyTorch computes inside the reference model: every module call's output, with the scope name the ONNX
exporter gives that call.

``record_calls(model, image)`` runs the model once on one image with forward hooks on every module and returns
one :class:`ModuleCall` per call, in the order the calls finished. The scope path of a call is the one
``torch.onnx.export`` (TorchScript) writes into node names (``/backbone/stage2/stage2.0/branch1/Conv``): per
nesting level the module's attribute name, counted back from the end past numeric atoms (``stage2.0``,
``cls_convs.0.0``, as the exporter's ``_unqualified_variable_name`` does), and ``_k`` appended to the k-th
(k >= 1) call of the same module inside the same parent call (``upsample``, ``upsample_1``; ``act``, ``act_1``).

Each call also records which earlier call produced the tensor object it received (``source``): the mapping uses
it where a module has no node of its own in the graph because the exporter folded it into the node before
(a BatchNorm into its Conv). Values are copied when the hook runs, because in-place activations later overwrite
the tensor object a BatchNorm returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ModuleCall:
    qualname: str                     # the module's name in model.named_modules() ("" for the model)
    scope: tuple[str, ...]            # the exporter's scope path of this call
    values: list[np.ndarray]          # the call's output tensors (flattened tuple/list), copies
    source: int | None = None         # index of the call that produced its first input tensor, if any
    kind: str = ""                    # the module's class name
    index: int = 0                    # position in the list of calls


def unqualified(qualname: str) -> str:
    """The exporter's scope atom of a module: its last name, extended back over numeric atoms
    (``backbone.stage2.0`` -> ``stage2.0``)."""
    atoms = qualname.split(".")
    i = len(atoms) - 1
    while i > 0 and atoms[i].isdigit():
        i -= 1
    return ".".join(atoms[i:])


def _tensors(value) -> list:
    """The tensors of a module output, flattened in order (tuples and lists, nested)."""
    import torch
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _copy(t) -> np.ndarray:
    """A numpy copy of a tensor (float32 for floating point, its own type otherwise)."""
    t = t.detach().cpu()
    return (t.float() if t.is_floating_point() else t).numpy().copy()


@dataclass
class _Recorder:
    """The hooks' shared state during one forward pass."""
    names: dict                                     # id(module) -> qualified name
    calls: list = field(default_factory=list)
    stack: list = field(default_factory=list)      # (scope path, id of its first input tensor) per open call
    counts: dict = field(default_factory=dict)     # (parent scope, atom) -> calls so far
    producer: dict = field(default_factory=dict)   # id(tensor) -> index of the latest call that returned it
    keep: list = field(default_factory=list)       # tensors kept alive so that their ids stay unique

    def pre(self, module, args):
        name = self.names[id(module)]
        parent = self.stack[-1][0] if self.stack else ()
        if name == "":
            scope = ()
        else:
            atom = unqualified(name)
            k = self.counts.get((parent, atom), 0)
            self.counts[(parent, atom)] = k + 1
            scope = parent + (atom if k == 0 else f"{atom}_{k}",)
        first = next(iter(_tensors(args)), None)
        if first is not None:
            self.keep.append(first)
        self.stack.append((scope, None if first is None else id(first)))

    def post(self, module, args, output):
        scope, first_id = self.stack.pop()
        outs = _tensors(output)
        call = ModuleCall(self.names[id(module)], scope,
                          [_copy(t) for t in outs],
                          self.producer.get(first_id) if first_id is not None else None,
                          type(module).__name__, len(self.calls))
        self.calls.append(call)
        for t in outs:
            self.keep.append(t)
            self.producer[id(t)] = call.index


def record_calls(model, image: np.ndarray) -> list[ModuleCall]:
    """Every module call of ``model`` on ``image`` ([1, 3, H, W] float32), in the order the calls finished."""
    import torch

    recorder = _Recorder({id(m): n for n, m in model.named_modules()})
    handles = []
    for _, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(recorder.pre))
        handles.append(module.register_forward_hook(recorder.post))
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.ascontiguousarray(image, np.float32)))
    finally:
        for h in handles:
            h.remove()
    return recorder.calls

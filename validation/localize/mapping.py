"""Which ONNX tensor holds which PyTorch module output: the exporter's module scopes, read back.

``torch.onnx.export`` names every node after the module call it came from (``/fpn/upsample/Resize``; see
``torch_taps`` for the scope path of a call). The tensors a call's scope *hands out* (produced by a node inside
the scope, read by a node outside it or a graph output) are that call's outputs; they are matched to the call's
output tensors by shape (one output: the one tensor handed out; several: each the one of its shape). A match
is refused, and the tensor left without a PyTorch counterpart, wherever this is not unambiguous.

Modules without a node of their own: the exporter folds a BatchNorm into the Conv before it (onnxsim the same,
and a bias ``Add`` into its Conv), and identities (Dropout, Identity) export nothing. Such a module's output
is what the tensor of the module that produced its input now holds (a Conv node's output *is* conv + BN), so that
tensor takes the absent module's value: ``absorb``. A module folded the other way, into the node that reads its
output (a Pad into the next Conv), changes the shape and is therefore never mapped. Export patches that replace a
module by an exact equivalent under the same name (``patches/``) keep its mapping; ones that change a tensor's
channels (``dead_branch_channels``) change its shape, so that tensor stays unmapped.

Last, a tensor mapped from several calls (a container and its last child) must get the same value from each on
the first image (bit for bit: they are one PyTorch tensor), else it is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .onnx_taps import GraphInfo
from .torch_taps import ModuleCall


@dataclass
class TorchMapping:
    """ONNX tensor -> (call index, output position) in the list of module calls of one forward pass."""
    tensors: dict = field(default_factory=dict)      # tensor -> (call index, position)
    labels: dict = field(default_factory=dict)       # tensor -> module name(s) for the report
    dropped: list = field(default_factory=list)      # tensors whose candidate values disagreed

    def values(self, calls: list[ModuleCall]) -> dict[str, np.ndarray]:
        """The PyTorch value of every mapped tensor in one forward pass (``calls`` of the same model)."""
        return {t: calls[i].values[k] for t, (i, k) in self.tensors.items()}


def handed_out(info: GraphInfo) -> dict[tuple, list[str]]:
    """Scope path -> the non-constant tensors its nodes hand out (in graph order)."""
    scope = {}
    for name, node in info.producer.items():
        scope[name] = info.scope_of(node)
    outputs = set(info.outputs)
    out: dict[tuple, list[str]] = {}
    for name in info.order:
        s = scope[name]
        if not s:
            continue
        if name in outputs:
            depth = 0
        else:
            depth = len(s)
            for reader in info.consumers.get(name, []):
                r = info.scope_of(reader)
                common = 0
                while common < min(len(s), len(r)) and s[common] == r[common]:
                    common += 1
                depth = min(depth, common)
        for k in range(depth + 1, len(s) + 1):
            out.setdefault(s[:k], []).append(name)
    return out


def _match(call: ModuleCall, candidates: list[str], shapes: dict) -> list[tuple[str, int]]:
    """(tensor, output position) pairs of ``call``; only where each output finds exactly one tensor of its shape."""
    pairs = []
    for k, value in enumerate(call.values):
        same = [t for t in candidates if tuple(shapes.get(t, ())) == tuple(value.shape)]
        if len(same) == 1 and value.dtype.kind == "f":
            pairs.append((same[0], k))
    if len(call.values) == 1 and len(candidates) != 1:
        return []
    return pairs


def map_calls(info: GraphInfo, calls: list[ModuleCall], shapes: dict[str, tuple]) -> TorchMapping:
    """Map the module calls of one forward pass onto the graph's tensors (module docstring). ``shapes``: each
    tensor's shape on the same image (from running the graph)."""
    scopes = handed_out(info)
    present = {info.scope_of(n)[:k] for n in info.producer.values() for k in range(1, len(info.scope_of(n)) + 1)}
    found: dict[str, list[tuple[int, int]]] = {}
    by_call: dict[int, str] = {}
    for call in calls:
        if not call.scope:
            continue
        if call.scope in present:
            for tensor, k in _match(call, scopes.get(call.scope, []), shapes):
                found.setdefault(tensor, []).append((call.index, k))
                if k == 0 and len(call.values) == 1:
                    by_call[call.index] = tensor
        else:
            absorb(call, found, by_call, shapes)
    mapping = TorchMapping()
    for tensor, sources in found.items():
        first = calls[sources[0][0]].values[sources[0][1]]
        if all(np.array_equal(calls[i].values[k], first) for i, k in sources[1:]):
            # one value: named after the innermost module that returned it
            best = max(sources, key=lambda s: len(calls[s[0]].scope))
            mapping.tensors[tensor] = best
            mapping.labels[tensor] = calls[best[0]].qualname or "(model)"
        else:
            mapping.dropped.append(tensor)
    return mapping


def absorb(call: ModuleCall, found: dict, by_call: dict, shapes: dict) -> None:
    """``call`` has no node: where it read the output of a mapped call of the same shape, that tensor now holds
    ``call``'s value (module docstring)."""
    if len(call.values) != 1 or call.source is None or call.source not in by_call:
        return
    tensor = by_call[call.source]
    if tuple(shapes.get(tensor, ())) != tuple(call.values[0].shape):
        return
    found[tensor] = [(call.index, 0)]      # the absorbed module's value replaces the producer's
    by_call[call.index] = tensor

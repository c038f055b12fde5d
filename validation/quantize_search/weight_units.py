"""Which ONNX initializer each TFJS weight is, so that storing it as uint8 / float16 can be simulated on the ONNX
model, and which layer it belongs to, so that reports name it.

tensorflowjs names weights after the constant nodes of its optimised graph (``PartitionedCall/split_42``); the
same numbers sit in ``model.sim.onnx`` under another name and often another layout (HWIO against OIHW). Per-tensor
quantization does not care about layout, so a TFJS weight is matched to the ONNX initializer holding the same
multiset of values (sorted values, hashed). Weights with equal multisets form one ``Unit`` (they always get the
same type, so that the simulation is exact for each). A TFJS weight without an ONNX twin (a constant the SavedModel
backend made, e.g. an upsampling table) cannot be simulated: ``Unit.onnx_names`` is empty.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Unit:
    """TFJS weights with one multiset of values, the ONNX initializers that hold it, and the layers using them."""
    key: str
    values: np.ndarray                      # one of them (TFJS layout), float32
    tfjs_names: list[str] = field(default_factory=list)
    onnx_names: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)   # ONNX nodes consuming the initializers

    @property
    def count(self) -> int:
        """Weights (numbers) stored for this unit in the TFJS model."""
        return int(self.values.size) * len(self.tfjs_names)

    @property
    def label(self) -> str:
        return ", ".join(self.layers) if self.layers else "(no ONNX twin)"


def fingerprint(values: np.ndarray) -> str:
    """The multiset of values, hashed; -0.0 counts as 0.0 (converters flip the sign of zeros freely)."""
    a = np.sort(np.asarray(values, np.float32).ravel()) + np.float32(0.0)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:20]


def onnx_float_initializers(model) -> dict[str, np.ndarray]:
    """{name: float32 array} of an ONNX ModelProto's float initializers."""
    from onnx import numpy_helper
    out = {}
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32:
            out[init.name] = a
    return out


def consumers(model) -> dict[str, list[str]]:
    """{tensor name: names of the ONNX nodes that read it} (node name, else its op type)."""
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node.name or node.op_type)
    return out


def build_units(tfjs_weights: dict[str, np.ndarray], model) -> list[Unit]:
    """One unit per distinct multiset of TFJS float weight values, in TFJS manifest order, with its ONNX twins."""
    units: dict[str, Unit] = {}
    for name, values in tfjs_weights.items():
        key = fingerprint(values)
        units.setdefault(key, Unit(key, np.asarray(values, np.float32))).tfjs_names.append(name)
    readers = consumers(model)
    for name, values in onnx_float_initializers(model).items():
        unit = units.get(fingerprint(values))
        if unit is not None:
            unit.onnx_names.append(name)
            unit.layers.extend(r for r in readers.get(name, []) if r not in unit.layers)
    return list(units.values())


def layers_by_name(weights: dict[str, np.ndarray], stored: dict[str, str], model) -> dict[str, str]:
    """{TFJS weight name: the ONNX layers reading its twin} for a model whose weights may be stored quantized:
    ``weights`` as TFJS loads them, ``stored`` their stored types; a twin is the initializer that storing in that
    type turns into the same values (``affine.as_stored``). Names without a twin are left out."""
    from .affine import as_stored

    readers = consumers(model)
    inits = onnx_float_initializers(model)
    by_print: dict[tuple[str, str], list[str]] = {}
    for dtype in set(stored.values()):
        for name, values in inits.items():
            by_print.setdefault((dtype, fingerprint(as_stored(values, dtype))), []).append(name)
    out = {}
    for name, values in weights.items():
        twins = by_print.get((stored[name], fingerprint(values)), [])
        layers = list(dict.fromkeys(r for t in twins for r in readers.get(t, [])))
        if layers:
            out[name] = ", ".join(layers)
    return out

"""Which ONNX initializer each TFJS weight is, so that storing it as uint8 / float16 can be simulated on the ONNX
model, and which layer it belongs to, so that reports name it.

tensorflowjs names weights after the constant nodes of its optimised graph (``PartitionedCall/split_42``); the
same numbers sit in ``model.sim.onnx`` under another name and often another layout (HWIO against OIHW). Per-tensor
quantization does not care about layout, so a TFJS weight is matched to the ONNX initializer holding the same
multiset of values (sorted values, hashed). Weights with equal multisets form one ``Unit`` (they always get the
same type, so that the simulation is exact for each).

A backend may split one ONNX weight into several TFJS weights (tf_nhwc gives the head's shared 1x1 conv one kernel
and bias per branch: classes and box sides): a TFJS weight that has no whole twin is matched to a block of rows
(a slice along the first axis, the output channels of an OIHW kernel or a bias) of an ONNX initializer that no
whole twin claims (``Unit.onnx_slices``); storing it is simulated by storing that block on its own, which is what
per-tensor quantization of the TFJS weight does. A TFJS weight with neither (a constant the SavedModel backend
made, e.g. an upsampling table) cannot be simulated: ``Unit.simulated`` is False.
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
    onnx_slices: list[tuple[str, int, int]] = field(default_factory=list)   # (initializer, first row, end row)

    @property
    def simulated(self) -> bool:
        """Whether storing this unit can be run on the ONNX model (a whole twin or a block of rows of one)."""
        return bool(self.onnx_names or self.onnx_slices)

    @property
    def count(self) -> int:
        """Weights (numbers) stored for this unit in the TFJS model."""
        return int(self.values.size) * len(self.tfjs_names)

    @property
    def label(self) -> str:
        return ", ".join(self.layers) if self.layers else "(no ONNX twin)"


def find_blocks(wanted: dict[str, int], inits: dict[str, np.ndarray], skip=frozenset(),
                stored=lambda block: block) -> dict[str, tuple[str, int, int]]:
    """{fingerprint: (initializer, first row, end row)} for each wanted fingerprint (of a weight holding the given
    number of values) that a block of rows of an initializer outside ``skip`` has once ``stored`` (the block on its
    own: per-tensor storage of the TFJS weight) turns it into; the first block found wins."""
    found: dict[str, tuple[str, int, int]] = {}
    for name, values in inits.items():
        if name in skip or values.ndim == 0 or values.shape[0] < 2 or not values[0].size:
            continue
        row = values[0].size
        for rows in sorted({n // row for n in wanted.values() if n % row == 0 and 0 < n // row < values.shape[0]}):
            for start in range(values.shape[0] - rows + 1):
                key = fingerprint(stored(values[start:start + rows]))
                if key in wanted and key not in found:
                    found[key] = (name, start, start + rows)
    return found


def _block_twins(units: list[Unit], inits: dict[str, np.ndarray], readers: dict[str, list[str]]) -> None:
    """Give each unit without a whole twin the block of rows of an unclaimed initializer holding its values."""
    from .affine import exact_in

    open_units = {fingerprint(u.values): u for u in units if not u.onnx_names and not exact_in(u.values, "uint8")}
    if not open_units:
        return
    claimed = {n for u in units for n in u.onnx_names}
    blocks = find_blocks({k: u.values.size for k, u in open_units.items()}, inits, claimed)
    for key, (name, start, end) in blocks.items():
        unit = open_units[key]
        unit.onnx_slices.append((name, start, end))
        unit.layers.extend(r for r in readers.get(name, []) if r not in unit.layers)


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
    """One unit per distinct multiset of TFJS float weight values, in TFJS manifest order, with its ONNX twins
    (whole initializers, else a block of rows of one)."""
    units: dict[str, Unit] = {}
    for name, values in tfjs_weights.items():
        key = fingerprint(values)
        units.setdefault(key, Unit(key, np.asarray(values, np.float32))).tfjs_names.append(name)
    readers = consumers(model)
    inits = onnx_float_initializers(model)
    for name, values in inits.items():
        unit = units.get(fingerprint(values))
        if unit is not None:
            unit.onnx_names.append(name)
            unit.layers.extend(r for r in readers.get(name, []) if r not in unit.layers)
    _block_twins(list(units.values()), inits, readers)
    return list(units.values())


def layers_by_name(weights: dict[str, np.ndarray], stored: dict[str, str], model) -> dict[str, str]:
    """{TFJS weight name: the ONNX layers reading its twin} for a model whose weights may be stored quantized:
    ``weights`` as TFJS loads them, ``stored`` their stored types; a twin is the initializer that storing in that
    type turns into the same values (``affine.as_stored``), or a block of rows of one that does (``find_blocks``).
    Names without a twin are left out."""
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
    for dtype in set(stored.values()):     # the rest: a block of rows of one (a weight the backend split)
        missing = {fingerprint(v): n for n, v in weights.items() if n not in out and stored[n] == dtype}
        found = find_blocks({k: weights[n].size for k, n in missing.items()}, inits,
                            stored=lambda block, t=dtype: as_stored(block, t)) if missing else {}
        for key, (init, _start, _end) in found.items():
            out[missing[key]] = ", ".join(readers.get(init, [])) or init
    return out

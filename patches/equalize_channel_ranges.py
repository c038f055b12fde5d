"""ONNX rewrite for uint8 weight storage: cross-layer equalization of per-channel weight ranges with power-of-two
scales (the idea of Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction").

What it fixes. tensorflowjs stores a uint8 weight affine over the whole tensor's [min, max]. With BatchNorm folded
into the convolutions, the output channels of one kernel (depthwise kernels and biases above all) span ranges
10-100x apart, so the narrow channels get a handful of the 256 levels. For a chain
``Conv1 -> [Relu | LeakyRelu | nothing] -> Conv2`` in which Conv1's output (and the activation's) has exactly one
reader, Conv1's output channel c (kernel and bias) is divided by ``s_c`` and Conv2's input channel c (its kernel
slice; full, grouped or depthwise) multiplied by ``s_c``: Relu and LeakyRelu are positively homogeneous
(f(x / s) = f(x) / s for s > 0), so the function is unchanged while both ranges meet near their geometric mean.
``s_c = 2**round(log2(sqrt(r1_c / r2_c)))`` with r1_c the largest |w| of Conv1's output channel c (kernel only:
the bias is stored as a tensor of its own) and r2_c the largest |w| of Conv2's input channel c. Pairs are
revisited for a few rounds (a kernel's ranges move when its neighbour pair rescales it) until no scale changes.

Why it is exact. Every scale is a power of two, so in float32 every scaled weight, every product ``(w s)(x / s)``,
every partial sum, the bias add and LeakyRelu's ``alpha * y`` come out as the original value times a power of two
(or exactly the original), whatever the summation order, as long as nothing leaves the normal float32 range: a
channel whose scaling would make a non-zero weight subnormal (or infinite) is left as it is. The float32 outputs
are bit-identical (``tests/test_equalize_channel_ranges.py`` checks it with onnxruntime on m-416's weights).

Anything else between the two convolutions (Concat, Split, Reshape/Transpose, Add, Mul, Resize, pooling, Sigmoid,
Clip ...), a second reader of the intermediate tensor, a graph output there, or a weight shared with another node
leaves the pair alone.

Where it runs (``wanted``): conversions that store weights as uint8 and choose the types themselves: plain
``--quantize uint8`` and ``--quantize auto``. float32 and float16 artifacts keep their graphs byte for byte, and so
does ``--keep`` (whose documented weight names and their measured sensitivities are those of the unequalized
weights). Under ``auto`` it is what makes a small mix of plus-m-416 possible: unequalized, every mix up to 1.2x
all-uint8 loses 0.02-0.04 AP on the held-back half (docs/quantization.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

HOMOGENEOUS = ("Relu", "LeakyRelu")     # f(a x) = a f(x) for a > 0
MAX_ROUNDS = 8
MAX_EXPONENT = 24                       # |log2| of any channel's total scale (far inside float32's exponent range)
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)
LARGEST = float(np.finfo(np.float32).max) / 2


def wanted(options) -> bool:
    """Whether a conversion with these options (``converters.options.ConvertOptions``) gets this rewrite: plain
    uint8 storage and the auto search (module docstring)."""
    return options.quantize in ("uint8", "auto") and not options.keep


@dataclass
class Pair:
    """Conv1 -> (homogeneous activations) -> Conv2 (node names), with the initializer names it rescales."""
    first: str          # node names (or their first output where unnamed)
    second: str
    between: list[str]  # op types between the two
    w1: str
    b1: str | None
    w2: str
    group2: int


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _readers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def _label(node) -> str:
    return node.name or node.output[0]


def _float_weight(name: str, inits: dict, readers: dict) -> bool:
    """A float32 initializer read by exactly one node (so rescaling it changes nothing else)."""
    return name in inits and inits[name].dtype == np.float32 and len(readers.get(name, [])) == 1


def find_pairs(graph) -> tuple[list[Pair], dict[str, int]]:
    """The equalizable Conv pairs, and why the other Convs start none ({reason: count})."""
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}
    pairs, skipped = [], {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        tensor, between, why = node.output[0], [], None
        while why is None:
            users = readers.get(tensor, [])
            if tensor in outputs or len(users) != 1:
                why = f"{len(users)} readers" if tensor not in outputs else "graph output"
            elif users[0].op_type in HOMOGENEOUS:
                between.append(users[0].op_type)
                tensor = users[0].output[0]
            elif users[0].op_type == "Conv" and users[0].input[0] == tensor:
                break
            else:
                why = f"then {users[0].op_type}"
        if why is None:
            why = _weights_problem(node, users[0], inits, readers)
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        second = users[0]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        pairs.append(Pair(_label(node), _label(second), between, node.input[1], bias, second.input[1],
                          int(_attr(second, "group", 1))))
    return pairs, skipped


def _weights_problem(first, second, inits: dict, readers: dict) -> str | None:
    names = [first.input[1], second.input[1]]
    if len(first.input) > 2 and first.input[2]:
        names.append(first.input[2])
    if not all(_float_weight(n, inits, readers) for n in names):
        return "weights not float32 initializers of their own"
    if inits[first.input[1]].shape[0] != inits[second.input[1]].shape[1] * int(_attr(second, "group", 1)):
        return "channel counts differ"
    return None


def output_ranges(kernel: np.ndarray) -> np.ndarray:
    """Largest |w| per output channel of a Conv kernel [O, I/g, kh, kw]."""
    return np.abs(kernel).reshape(kernel.shape[0], -1).max(axis=1)


def _by_input(kernel: np.ndarray, group: int) -> np.ndarray:
    """The kernel as [g, O/g, I/g, rest]: input channel c = (c // (I/g), c % (I/g))."""
    o, i_g = kernel.shape[:2]
    return kernel.reshape(group, o // group, i_g, -1)


def input_ranges(kernel: np.ndarray, group: int) -> np.ndarray:
    """Largest |w| per input channel of a (grouped) Conv kernel [O, I/g, kh, kw]: I values."""
    return np.abs(_by_input(kernel, group)).max(axis=(1, 3)).reshape(-1)


def scale_inputs(kernel: np.ndarray, group: int, scale: np.ndarray) -> np.ndarray:
    """The kernel with input channel c multiplied by scale[c]."""
    s = scale.reshape(group, 1, kernel.shape[1], 1).astype(np.float32)
    return (_by_input(kernel, group) * s).reshape(kernel.shape)


def _spread(ranges: np.ndarray) -> float:
    """Largest over smallest non-zero channel range (1 where fewer than two channels are non-zero)."""
    r = ranges[ranges > 0]
    return float(r.max() / r.min()) if r.size > 1 else 1.0


def _smallest_nonzero(a: np.ndarray, axis) -> np.ndarray:
    return np.where(a != 0, np.abs(a), np.inf).min(axis=axis)


def _exponents(w1: np.ndarray, b1, w2: np.ndarray, group: int, total: np.ndarray) -> np.ndarray:
    """Per channel, the power of two that balances this pair now; 0 where a range is zero, the channel's total
    exponent would pass MAX_EXPONENT, or a non-zero weight would become subnormal or infinite."""
    r1, r2 = output_ranges(w1).astype(np.float64), input_ranges(w2, group).astype(np.float64)
    live = (r1 > 0) & (r2 > 0)
    k = np.zeros(r1.shape, np.int64)
    k[live] = np.round(0.5 * np.log2(r1[live] / r2[live])).astype(np.int64)
    s = np.exp2(k.astype(np.float64))
    small1 = _smallest_nonzero(w1.reshape(len(k), -1), 1)
    if b1 is not None:
        small1 = np.minimum(small1, np.where(b1 != 0, np.abs(b1), np.inf))
    small2 = _smallest_nonzero(np.moveaxis(_by_input(w2, group), 2, 1).reshape(len(k), -1), 1)
    unsafe = (np.abs(total + k) > MAX_EXPONENT) | (small1 / s < SMALLEST_NORMAL) | (small2 * s < SMALLEST_NORMAL) \
        | (r2 * s > LARGEST) | (r1 / s > LARGEST)
    k[unsafe] = 0
    return k


def _class(kernel: np.ndarray, group: int) -> str:
    return "depthwise kernels" if group > 1 and kernel.shape[1] == 1 else "conv kernels"


def rewrite(model_proto: onnx.ModelProto, cfg=None) -> tuple[onnx.ModelProto, dict]:
    """Return (model, report): every equalizable Conv pair's channel ranges balanced by powers of two."""
    pairs, skipped = find_pairs(model_proto.graph)
    report = {"pairs": len(pairs), "not_paired": skipped}
    if not pairs:
        report["summary"] = "no Conv -> (Relu|LeakyRelu) -> Conv pair to equalize"
        return model_proto, report
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    conv_groups = {n.input[1]: int(_attr(n, "group", 1)) for n in model.graph.node if n.op_type == "Conv"}
    w = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    touched = {p.w1 for p in pairs} | {p.w2 for p in pairs} | {p.b1 for p in pairs if p.b1}
    before = _class_spreads(w, touched, conv_groups)
    totals = {p.w1: np.zeros(w[p.w1].shape[0], np.int64) for p in pairs}
    rounds = 0
    for rounds in range(1, MAX_ROUNDS + 1):
        moved = 0
        for p in pairs:
            k = _exponents(w[p.w1], w[p.b1] if p.b1 else None, w[p.w2], p.group2, totals[p.w1])
            if not k.any():
                continue
            s = np.exp2(k.astype(np.float64)).astype(np.float32)
            w[p.w1] = w[p.w1] / s.reshape(-1, *[1] * (w[p.w1].ndim - 1))
            if p.b1:
                w[p.b1] = w[p.b1] / s
            w[p.w2] = scale_inputs(w[p.w2], p.group2, s)
            totals[p.w1] += k
            moved += int(np.count_nonzero(k))
        if not moved:
            break
    for init in model.graph.initializer:
        if init.name in touched:
            init.CopyFrom(numpy_helper.from_array(w[init.name].astype(np.float32), init.name))
    after = _class_spreads(w, touched, conv_groups)
    rescaled = sum(int(np.count_nonzero(t)) for t in totals.values())
    channels = sum(len(t) for t in totals.values())
    report.update({
        "channels_rescaled": rescaled, "channels": channels, "rounds": rounds,
        "largest_exponent": int(max(int(np.abs(t).max()) for t in totals.values())),
        "largest_range_ratio": {c: {"before": round(before[c], 3), "after": round(after[c], 3)} for c in before},
        "pairs_equalized": [f"{p.first} -> {'/'.join(p.between) or '-'} -> {p.second}" for p in pairs],
    })
    ratios = ", ".join(f"{c} {before[c]:.0f}x -> {after[c]:.0f}x" for c in ("conv kernels", "depthwise kernels"))
    report["summary"] = (f"{len(pairs)} Conv pairs, {rescaled} of {channels} channels rescaled by powers of two "
                         f"({rounds} rounds); largest channel-range ratio in a tensor: {ratios}; largest |bias| "
                         f"{before['bias |max|']:.3g} -> {after['bias |max|']:.3g}")
    return model, report


def _class_spreads(w: dict, touched: set, conv_groups: dict) -> dict[str, float]:
    """{tensor class: the largest channel-range spread (largest over smallest non-zero max |w| of a channel) over
    the rescaled kernels of that class}, and for biases the largest |bias| (a bias is one number per channel)."""
    out = {"conv kernels": 1.0, "depthwise kernels": 1.0, "bias |max|": 0.0}
    for name in touched:
        a = w[name]
        if a.ndim == 1:
            out["bias |max|"] = max(out["bias |max|"], float(np.abs(a).max()))
            continue
        cls = _class(a, conv_groups.get(name, 1))
        out[cls] = max(out[cls], _spread(output_ranges(a)))
    return out

"""The structural oracle check of the zoo: the convolution kernels of the deployed graph (``model.sim.onnx``,
BatchNorm folded, patches applied) against a public ncnn export's (``<shared>/reference/topology/*.json``).

Each convolution is compared as (out channels, in channels per group, kh, kw, groups, stride, fused activation),
as a multiset. The activation is the op that alone consumes the conv's output (LeakyRelu, Relu or Clip: ncnn
fuses exactly those into its Convolution layer), else none. The depthwise [1, 2, 1] x [1, 2, 1] / 16 filters that
the export patch ``pan_resample_opset10`` adds after each nearest x2 Resize are its exact form of ncnn's bilinear
Interp layer, not convolutions of the model: they are left out, and counted in the result.

This is the zoo's own small comparator (the oracle tests compare the PyTorch model; this one looks at what is
shipped). Oracles exist for a few upstream configs only (``ORACLES``): others have no oracle check.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from contracts.paths import shared_path

# upstream config file stem -> topology oracle file stem in <shared>/reference/topology/
ORACLES = {
    "nanodet-g": "nanodet-g",
    "nanodet-EfficientNet-Lite0_320": "nanodet-ELite0_320",
    "nanodet-EfficientNet-Lite1_416": "nanodet-ELite1_416",
    "nanodet-EfficientNet-Lite2_512": "nanodet-ELite2_512",
    "nanodet-RepVGG-A0_416": "nanodet-RepVGG-A0_416",
    "nanodet-plus-m-1.5x_416": "nanodet-plus-m-1.5x_416",
}
FUSED = {"LeakyRelu": "LeakyReLU", "Relu": "ReLU", "Clip": "Clip"}   # ONNX op -> the oracle's activation name
RESAMPLE_FILTER = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16


def oracle_path(config_stem: str) -> Path | None:
    """The oracle of an upstream config (by its file stem), where one exists and the shared folder is there."""
    name = ORACLES.get(config_stem)
    return shared_path("reference", "topology", f"{name}.json") if name else None


def oracle_kernels(path: Path) -> Counter:
    """The oracle's convolutions as a multiset of (out, in_per_group, kh, kw, groups, stride, activation)."""
    data = json.loads(Path(path).read_text())
    return Counter((c["out"], c["in_per_group"], c["kh"], c["kw"], c["groups"], c["stride"][0], c["activation"])
                   for c in data["convs"])


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else a.i
    return default


def _is_resample_filter(weight: np.ndarray | None, groups: int) -> bool:
    return (weight is not None and weight.shape[1:] == (1, 3, 3) and groups == weight.shape[0]
            and bool(np.allclose(weight[:, 0], RESAMPLE_FILTER, atol=1e-7)))


def graph_kernels(onnx_path: Path) -> tuple[Counter, int]:
    """(the graph's convolutions as the oracle counts them, how many resample filters were left out)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights.update({n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kernels, filters = Counter(), 0
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        weight = weights.get(node.input[1])
        groups = int(_attr(node, "group", 1))
        if _is_resample_filter(weight, groups):
            filters += 1
            continue
        if weight is None:
            raise ValueError(f"{onnx_path}: conv {node.name} has no constant weight")
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "BatchNormalization":   # not folded: look past it
            users = consumers.get(users[0].output[0], [])
        act = FUSED.get(users[0].op_type) if len(users) == 1 else None
        out, in_per_group, kh, kw = (int(v) for v in weight.shape)
        stride = int((_attr(node, "strides", [1, 1]) or [1])[0])
        kernels[(out, in_per_group, kh, kw, groups, stride, act)] += 1
    return kernels, filters


def check_oracle(onnx_path: Path, oracle: Path) -> dict:
    """Compare; returns {"pass", "convs", "oracle_convs", "resample_filters_left_out", "missing", "extra"}: missing
    = in the oracle, not in the graph; extra = the other way (each up to 5, as "out/in_per_group kh x kw g s act")."""
    ours, filters = graph_kernels(onnx_path)
    theirs = oracle_kernels(oracle)
    missing, extra = theirs - ours, ours - theirs

    def shown(c: Counter) -> list[str]:
        return [f"{n}x {o}/{i} {kh}x{kw} g{g} s{s} {a or '-'}" for (o, i, kh, kw, g, s, a), n in
                sorted(c.items(), key=lambda kv: str(kv[0]))[:5]]
    return {"pass": not missing and not extra, "oracle": Path(oracle).name, "convs": sum(ours.values()),
            "oracle_convs": sum(theirs.values()), "resample_filters_left_out": filters,
            "missing": shown(missing), "extra": shown(extra)}


def summary(result: dict | None) -> str:
    """One table cell: ``PASS (34 convs)``, ``FAIL: ...`` or ``-`` (no oracle)."""
    if result is None:
        return "-"
    if result.get("error"):
        return f"FAIL: {result['error']}"
    if result["pass"]:
        return f"PASS ({result['convs']} convs)"
    diff = "; ".join([f"missing {m}" for m in result["missing"][:2]] + [f"extra {e}" for e in result["extra"][:2]])
    return f"FAIL ({result['convs']} vs {result['oracle_convs']} convs: {diff})"

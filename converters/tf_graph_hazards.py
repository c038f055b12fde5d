"""Graph patterns that crash TensorFlow itself on some hosts: a SavedModel the toolkit writes must hold none.

One rule today, ``depthwise-explicit-bias``: ``DepthwiseConv2dNative`` with ``padding=EXPLICIT`` whose output
feeds a ``BiasAdd`` (or an ``Add`` / ``AddV2``, which grappler's remapper treats as a bias add under oneDNN),
directly or through ``Identity`` nodes (grappler removes those first). On x86 hosts where TensorFlow enables
oneDNN by default (AVX-512 ones), the remapper fuses the pair into oneDNN's fused depthwise kernel, which aborts
the process (``Check failed: index >= 0 && index < num_total_dims ... 1, 0, H``, tensor_format.h:428, TF 2.19);
SAME / VALID depthwise and Conv2D with explicit padding are not affected. The abort happens in whoever runs the
graph (our validation, a user's own TF), so the check is on the graph, not the host: the same graph is refused on
every CPU, before anything runs it.

The check reads the SavedModel's protobuf (graph and function library) without running anything.
"""
from __future__ import annotations

from pathlib import Path

from contracts.errors import ReportedError

BIAS_OPS = ("BiasAdd", "Add", "AddV2")
PASS_THROUGH = ("Identity",)
RULE = ("DepthwiseConv2dNative with padding EXPLICIT feeding a bias add (grappler fuses the pair into oneDNN's "
        "fused depthwise kernel, which aborts TensorFlow on AVX-512 hosts)")


class GraphHazard(ReportedError):
    """A SavedModel we wrote holds a pattern that aborts TensorFlow: a defect of the toolkit (exit 1)."""


def _producer(ref: str) -> str:
    """Node name of an input reference: ``node``, ``node:1``, ``node:output:0`` (functions), ``^node``."""
    return ref.lstrip("^").split(":")[0]


def _source(by_name: dict, ref: str):
    """The node that computes ``ref``, looking through Identity nodes; None for a function argument."""
    seen = set()
    node = by_name.get(_producer(ref))
    while node is not None and node.op in PASS_THROUGH and node.input and node.name not in seen:
        seen.add(node.name)
        node = by_name.get(_producer(node.input[0]))
    return node


def _scan(nodes, where: str) -> list[str]:
    by_name = {n.name: n for n in nodes}
    found = []
    for node in nodes:
        if node.op not in BIAS_OPS:
            continue
        for ref in node.input:
            if ref.startswith("^"):
                continue
            src = _source(by_name, ref)
            if src is None or src.op != "DepthwiseConv2dNative":
                continue
            padding = src.attr["padding"].s.decode() if "padding" in src.attr else ""
            if padding == "EXPLICIT":
                found.append(f"{where}: {src.name} (DepthwiseConv2dNative, padding EXPLICIT) -> {node.name} "
                             f"({node.op})")
    return found


def graph_def_hazards(graph_def, where: str = "graph") -> list[str]:
    """One line per hazardous pair in a GraphDef, its function library included."""
    found = _scan(list(graph_def.node), where)
    for fn in graph_def.library.function:
        found += _scan(list(fn.node_def), f"{where} function {fn.signature.name}")
    return found


def saved_model_hazards(saved_model_dir: Path) -> list[str]:
    """One line per hazardous pair in ``saved_model_dir/saved_model.pb`` (every meta graph)."""
    from contracts.tf_environment import import_tensorflow
    import_tensorflow()   # its import-time noise filtered (contracts.tf_environment), then the protobuf module
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    found = []
    for i, meta in enumerate(sm.meta_graphs):
        found += graph_def_hazards(meta.graph_def, f"meta graph {i}")
    return found


def refuse_hazards(saved_model_dir: Path, producer: str) -> None:
    """Raise :class:`GraphHazard` (one line: the rule, the first pair, how many) if the SavedModel holds one."""
    found = saved_model_hazards(saved_model_dir)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise GraphHazard(f"{producer} wrote a SavedModel with {RULE}: {found[0]}{more}; refused before "
                          f"anything runs it")

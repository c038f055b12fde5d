"""Every intermediate tensor of an ONNX graph, made reachable: the graph's structure, and an instrumented copy.

``GraphInfo`` reads a graph once: its nodes in their (topological) order, who produces and who reads each
tensor, which tensors are constants (initializers, ``Constant`` outputs and whatever only they feed), and the
element type of each tensor (ONNX shape inference).

``instrument`` makes the copy that every engine is asked to run (polygraphy's "mark all" idea): one
``Identity`` per tapped tensor, named ``TAP_PREFIX + index``, and these taps are the graph's outputs. A tap is a
new tensor with a plain name, rather than the tensor itself made an output, because converters put output names
into their own op names (tf_nhwc refuses names such as ``/backbone/...``) and onnx2tf renames its outputs
``output_<k>`` in output order (``tap_00000``, ``tap_00001``, ... sort in graph order). An extra ``Identity``
reader changes nothing a converter computes for the tensor, though, like any extra reader, it can stop a fusion of
the tensor's producer with its one consumer (``stages.faithfulness`` reports where that happened).

``run_onnxruntime`` runs a graph with every tap on onnxruntime's CPU provider, one image at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TAP_PREFIX = "tap_"
FLOAT_TYPES = {1, 10, 11, 16}   # float, float16, double, bfloat16 (onnx.TensorProto)


def tap_name(index: int) -> str:
    return f"{TAP_PREFIX}{index:05d}"


@dataclass
class GraphInfo:
    """What localisation needs to know about one ONNX graph."""
    model: object                                   # onnx.ModelProto
    order: list[str] = field(default_factory=list)  # non-constant tensors, in the order their nodes run
    producer: dict = field(default_factory=dict)    # tensor -> node (onnx.NodeProto)
    consumers: dict = field(default_factory=dict)   # tensor -> [node]
    constant: set = field(default_factory=set)      # tensors whose value does not depend on the input
    elem_type: dict = field(default_factory=dict)   # tensor -> onnx.TensorProto data type (where known)
    input_name: str = ""
    outputs: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, model) -> "GraphInfo":
        import onnx
        g = model.graph
        info = cls(model)
        inits = {t.name for t in g.initializer}
        inputs = [i.name for i in g.input if i.name not in inits]
        info.input_name = inputs[0] if inputs else ""
        info.outputs = [o.name for o in g.output]
        info.constant = set(inits)
        for node in g.node:
            for name in node.input:
                if name:
                    info.consumers.setdefault(name, []).append(node)
            feeds = [i for i in node.input if i]
            const = node.op_type == "Constant" or (bool(feeds) and all(i in info.constant for i in feeds))
            for name in node.output:
                if not name:
                    continue
                info.producer[name] = node
                if const:
                    info.constant.add(name)
                else:
                    info.order.append(name)
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:   # inference failing only costs the types: taps then fall back to "float, maybe"
            inferred = g
        for vi in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
            if vi.type.HasField("tensor_type"):
                info.elem_type[vi.name] = vi.type.tensor_type.elem_type
        return info

    def is_float(self, name: str) -> bool:
        """Floating point, or of unknown type (the values then tell: ``values`` keeps only floats)."""
        return self.elem_type.get(name, 1) in FLOAT_TYPES

    def tapped(self) -> list[str]:
        """The tensors worth tapping: computed from the input, floating point."""
        return [t for t in self.order if self.is_float(t)]

    def scope_of(self, node) -> tuple[str, ...]:
        """The exporter's module scope of a node: ``/backbone/stage2/stage2.0/Concat`` -> (backbone, stage2,
        stage2.0); () for a node without one (made by a rewrite, or of the top module)."""
        parts = (node.name or "").split("/")
        return tuple(p for p in parts[1:-1] if p) if len(parts) > 2 and parts[0] == "" else ()


def instrument(model, tensors: list[str], elem_type: dict | None = None):
    """A copy of ``model`` whose outputs are the taps of ``tensors``: an ``Identity`` per tensor named
    ``tap_name(i)``, in order (so sorting the outputs by name keeps the graph's order; the original outputs are
    tapped like any tensor). ``elem_type``: the tensors' types (``GraphInfo.elem_type``). Returns
    (model, {tap name: tensor})."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    types = elem_type if elem_type is not None else GraphInfo.read(model).elem_type
    del g.output[:]
    taps = {}
    for i, name in enumerate(tensors):
        tap = tap_name(i)
        g.node.append(helper.make_node("Identity", [name], [tap], name=f"localize/{tap}"))
        g.output.append(helper.make_tensor_value_info(tap, types.get(name, onnx.TensorProto.FLOAT), None))
        taps[tap] = name
    return out, taps


def with_shapes(model, shapes: dict[str, tuple]):
    """``model`` (instrumented) with the static shape of each tap output set from ``shapes`` (tap -> shape, as
    onnxruntime produced it): converters (onnx-tf, onnx2tf) need output shapes, which shape inference cannot
    always give."""
    from onnx import helper
    for out in model.graph.output:
        if out.name in shapes:
            t = out.type.tensor_type
            out.CopyFrom(helper.make_tensor_value_info(out.name, t.elem_type, list(shapes[out.name])))
    return model


def save(model, path: Path) -> Path:
    import onnx
    onnx.save(model, str(path))
    return Path(path)


def run_onnxruntime(model_path: Path, images: np.ndarray, taps: dict[str, str]) -> list[dict[str, np.ndarray]]:
    """One dict per image: tensor name -> value (float32), for every tap of the instrumented graph."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    wanted = list(taps)
    results = []
    for i in range(len(images)):
        got = session.run(wanted, {feed: np.ascontiguousarray(images[i:i + 1], np.float32)})
        results.append(floats({taps[t]: v for t, v in zip(wanted, got)}))
    return results


def floats(values: dict) -> dict[str, np.ndarray]:
    """Only the floating-point arrays, as float32."""
    return {k: np.asarray(v, np.float32) for k, v in values.items()
            if np.issubdtype(np.asarray(v).dtype, np.floating)}

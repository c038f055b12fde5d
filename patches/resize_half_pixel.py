"""ONNX rewrite (opset >= 11): Resize ``coordinate_transformation_mode`` ``pytorch_half_pixel`` -> ``half_pixel``.

Why: onnx-tf 1.10 rejects ``pytorch_half_pixel``, which PyTorch's exporter (older versions, and other tools)
writes for ``align_corners=False``. The two modes differ only on an axis whose output length is 1
(pytorch_half_pixel then samples input coordinate 0, half_pixel samples (0.5 / scale) - 0.5). So the rewrite is
exact on every axis whose output length is > 1, and on an axis whose length does not change (scale 1, where both
give 0). A Resize with an output length 1 on a resized axis, or whose shapes are not known statically, is left as
it is and listed in the report (onnx-tf will then say what it cannot convert).
"""
from __future__ import annotations

import onnx
from onnx import helper, shape_inference

OLD, NEW = b"pytorch_half_pixel", b"half_pixel"


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int] | None]:
    """Tensor name -> static shape (None where any dim is unknown), via ONNX shape inference."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # shape inference failing only means we cannot prove the rewrite exact
        inferred = model
    shapes: dict[str, list[int] | None] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            shapes[vi.name] = None
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        shapes[vi.name] = None if any(d is None for d in dims) else dims
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _mode_attr(node: onnx.NodeProto):
    for attr in node.attribute:
        if attr.name == "coordinate_transformation_mode":
            return attr
    return None


def rewrite(model_proto: onnx.ModelProto, cfg=None) -> tuple[onnx.ModelProto, dict]:
    """Return (model, report) with every provably-equal pytorch_half_pixel Resize switched to half_pixel."""
    report = {"changed": [], "kept": []}
    targets = [n for n in model_proto.graph.node
               if n.op_type == "Resize" and (a := _mode_attr(n)) is not None and a.s == OLD]
    if not targets:
        return model_proto, report
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    shapes = _static_shapes(model)
    for node in model.graph.node:
        attr = _mode_attr(node) if node.op_type == "Resize" else None
        if attr is None or attr.s != OLD:
            continue
        name = node.name or node.output[0]
        src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
        if src is None or dst is None or len(src) != len(dst):
            report["kept"].append({"node": name, "why": "input/output shape not known statically"})
            continue
        bad = [axis for axis, (i, o) in enumerate(zip(src, dst)) if o == 1 and i != 1]
        if bad:
            report["kept"].append({"node": name, "why": f"output length 1 on resized axis {bad}: "
                                                        f"pytorch_half_pixel and half_pixel differ there"})
            continue
        attr.CopyFrom(helper.make_attribute("coordinate_transformation_mode", NEW.decode()))
        report["changed"].append(name)
    return model, report

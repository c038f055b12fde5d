"""ONNX rewrite: bring every out-of-int32-range Slice start/end/step into range without changing what it means.

Why. TFJS has no int64: tensorflowjs_converter stores int64 constants as int32 with a plain numpy cast, so the
INT64_MAX that PyTorch exports for an open slice end (``x[:, k:]``) becomes -1, and INT64_MIN (reverse slices)
becomes 0. onnx-tf turns an ONNX Slice into ``strided_slice`` with ``min(end, shape)`` computed in the graph;
when TF cannot fold that because the axis is not static, TFJS evaluates ``min(-1, n) = -1``, i.e. ``n - 1``, and
silently drops the last element (see ``validation/int64_audit``, which finds and traces these).

What. For every Slice (opset 1 attributes or opset >= 10 inputs) whose starts/ends/steps are constants holding a
value outside [-2**31, 2**31 - 1], each such value is replaced, per element, by one that ONNX (and onnx-tf, and
TFJS after narrowing) slices identically:

- ``v > INT32_MAX``: the static length ``n`` of the sliced axis when shape inference knows it (ONNX clamps any
  value >= n to n, so n is exact), else INT32_MAX (exact for every axis shorter than 2**31, i.e. every tensor TFJS
  can hold).
- ``v < INT32_MIN``: 0 where the step is positive or the value is a start (ONNX clamps any value <= -n to 0 then),
  else (an end with a negative step, meaning "through index 0") INT32_MIN, exact for axes shorter than 2**30.
  A static -n-1 would be exact in ONNX but not through onnx-tf, which adds n once and hands -1 to strided_slice.

The new values go into fresh initializers owned by that Slice (a constant shared with another consumer is not
changed under it). Where an out-of-range int64 constant reaches anything else (a Reshape shape, Gather indices, a
Concat that builds slice bounds at run time, an attribute of another op ...) no exact in-range replacement can be
proven here, so the rewrite refuses with a UserError naming the node. After rewriting, the model is run with
onnxruntime on a random input before and after, and must give identical outputs.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from contracts.errors import UserError

INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)
SLICE_ROLES = {1: "starts", 2: "ends", 3: "axes", 4: "steps"}


def out_of_range(values) -> bool:
    a = np.asarray(values, dtype=np.int64)
    return bool(a.size and ((a > INT32_MAX) | (a < INT32_MIN)).any())


def int_constants(graph) -> dict[str, np.ndarray]:
    """Integer constant tensors of the graph by name (initializers and Constant nodes); also what the int64 audit
    matches TFJS constants against."""
    out = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant" or not node.output:
            continue
        for attr in node.attribute:
            if attr.name == "value":
                out[node.output[0]] = numpy_helper.to_array(attr.t)
            elif attr.name == "value_int":
                out[node.output[0]] = np.asarray(attr.i, np.int64)
            elif attr.name == "value_ints":
                out[node.output[0]] = np.asarray(list(attr.ints), np.int64)
    return {k: v for k, v in out.items() if v.dtype.kind in "iu"}


def static_shapes(model) -> dict[str, list]:
    """Tensor name -> dims (int or None) from ONNX shape inference (empty where inference fails); the int64 audit
    reads axis lengths with it too."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot handle: no static dims, INT32 clamps only
        inferred = model
    shapes = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                               for d in t.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def clamp_value(v: int, role: str, step: int | None, dim: int | None) -> tuple[int, str]:
    """An in-range value that slices like ``v``; (value, how)."""
    if v > INT32_MAX:
        return (int(dim), "static axis length") if dim else (INT32_MAX, "int32 max")
    if v < INT32_MIN:
        if role == "starts" or (step is not None and step > 0):
            return 0, "zero (values <= -length clamp to 0)"
        if role == "steps":
            return ((-int(dim), "minus static axis length") if dim else (INT32_MIN, "int32 min"))
        return INT32_MIN, "int32 min"
    return int(v), "unchanged"


def _slice_parts(node, consts) -> tuple[dict, str | None]:
    """{role: int64 array} of a Slice's constant parts; plus the name of a non-constant bound (or None)."""
    parts, dynamic = {}, None
    if any(a.name in ("starts", "ends") for a in node.attribute):  # opset 1: attributes
        for a in node.attribute:
            if a.name in ("starts", "ends", "axes"):
                parts[a.name] = np.asarray(list(a.ints), np.int64)
        return parts, None
    for idx, role in SLICE_ROLES.items():
        if idx < len(node.input) and node.input[idx]:
            name = node.input[idx]
            if name in consts:
                parts[role] = np.asarray(consts[name], np.int64).reshape(-1)
            elif role in ("starts", "ends", "steps"):
                dynamic = dynamic or name
    return parts, dynamic


def _consumers(graph) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                out.setdefault(name, []).append((node, i))
    return out


def _refuse_other_uses(graph, consts, consumers) -> None:
    """UserError where an out-of-range int64 value reaches anything but a Slice start/end/step."""
    graph_outputs = {o.name for o in graph.output}
    for name, value in consts.items():
        if not out_of_range(value):
            continue
        if name in graph_outputs:
            raise UserError(f"int64_clamp: constant '{name}' holds {_first_bad(value)} (outside int32) and is a "
                            f"graph output; no exact int32 replacement exists")
        for node, idx in consumers.get(name, []):
            if node.op_type == "Slice" and idx in (1, 2, 4):
                continue
            raise UserError(f"int64_clamp: node '{node.name or node.op_type}' ({node.op_type}) input {idx} gets "
                            f"'{name}' = {_first_bad(value)}, outside int32; TFJS would narrow it and no exact "
                            f"in-range rewrite is known for this use (only Slice starts/ends/steps are clamped)")
    for node in graph.node:
        if node.op_type in ("Constant", "Slice"):
            continue
        for attr in node.attribute:
            vals = [attr.i] if attr.type == onnx.AttributeProto.INT else list(attr.ints) \
                if attr.type == onnx.AttributeProto.INTS else []
            if vals and out_of_range(vals):
                raise UserError(f"int64_clamp: node '{node.name or node.op_type}' ({node.op_type}) attribute "
                                f"'{attr.name}' = {_first_bad(vals)} is outside int32; no exact rewrite is known")


def _first_bad(values) -> int:
    a = np.asarray(values, np.int64).reshape(-1)
    return int(a[(a > INT32_MAX) | (a < INT32_MIN)][0])


def _unique_name(base: str, taken: set) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def rewrite(model_proto, cfg=None, verify: bool = True):
    """Clamp the out-of-int32-range Slice bounds of ``model_proto``; returns (model, report)."""
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    consts = int_constants(graph)
    consumers = _consumers(graph)
    _refuse_other_uses(graph, consts, consumers)
    shapes = static_shapes(model)
    taken = {t for n in graph.node for t in list(n.input) + list(n.output)} | set(consts)
    changes = []
    for node in graph.node:
        if node.op_type != "Slice":
            continue
        parts, dynamic = _slice_parts(node, consts)
        bad_roles = [r for r in ("starts", "ends", "steps") if r in parts and out_of_range(parts[r])]
        if not bad_roles:
            continue
        data_shape = shapes.get(node.input[0])
        n = len(parts.get("starts", parts.get("ends", [])))
        axes = parts.get("axes")
        if axes is None and len(node.input) > 3 and node.input[3]:
            axes_known = False
            axes = np.arange(n)
        else:
            axes_known = True
            axes = np.arange(n) if axes is None else axes
        steps = parts.get("steps", np.ones(n, np.int64))
        rank = len(data_shape) if data_shape is not None else None
        for role in bad_roles:
            old = parts[role]
            new = old.copy()
            for k, v in enumerate(old):
                ax = int(axes[k]) if axes_known else None
                if ax is not None and ax < 0 and rank is not None:
                    ax += rank
                dim = data_shape[ax] if (data_shape is not None and ax is not None and 0 <= ax < rank) else None
                if int(v) > INT32_MAX or int(v) < INT32_MIN:
                    new[k], how = clamp_value(int(v), role, int(steps[k]) if k < len(steps) else None, dim)
                    changes.append({"node": node.name or node.output[0], "role": role, "index": k, "axis": ax,
                                    "axis_length": dim, "original": int(v), "new": int(new[k]), "how": how})
            _set_part(graph, node, role, new, taken)
    _drop_unused_constants(graph)
    report = {"clamped": changes, "count": len(changes)}
    if changes and verify:
        report["verified"] = _verify_same_outputs(model_proto, model)
    return model, report


def _set_part(graph, node, role, values, taken) -> None:
    if any(a.name == role for a in node.attribute):  # opset 1 attribute
        for a in node.attribute:
            if a.name == role:
                del a.ints[:]
                a.ints.extend(int(v) for v in values)
        return
    idx = {v: k for k, v in SLICE_ROLES.items()}[role]
    old_name = node.input[idx]
    new_name = _unique_name(f"{old_name}_int64_clamp_{node.name or node.output[0]}".replace("/", "_"), taken)
    graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), new_name))
    node.input[idx] = new_name


def _drop_unused_constants(graph) -> None:
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output and n.output[0] not in used)]
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in used]
    if len(inits) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(inits)
    names = {i.name for i in graph.initializer}
    ins = [i for i in graph.input if i.name not in names or i.name in used]
    if len(ins) != len(graph.input):
        del graph.input[:]
        graph.input.extend(ins)


def _random_feeds(model, seed: int = 0, free_dim: int = 24) -> dict:
    names = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in names:
            continue
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (1 if i == 0 else free_dim)
                for i, d in enumerate(t.shape.dim)]
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        feeds[vi.name] = (rng.standard_normal(dims).astype(dtype) if dtype.kind == "f"
                          else rng.integers(0, 4, dims).astype(dtype))
    return feeds


def _verify_same_outputs(before, after) -> str:
    """Run both models with onnxruntime on one random input; RuntimeError if any output differs."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "skipped (onnxruntime not installed)"
    feeds = _random_feeds(before)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        a = ort.InferenceSession(before.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        out_a = a.run(None, feeds)
    except Exception as exc:  # the original itself does not run on this random input: nothing to compare
        return f"skipped (original does not run under onnxruntime: {exc.__class__.__name__})"
    b = ort.InferenceSession(after.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_b = b.run(None, feeds)
    for o, x, y in zip(before.graph.output, out_a, out_b):
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            raise RuntimeError(f"int64_clamp changed output '{o.name}' ({x.shape} -> {y.shape}): a bug in the rewrite")
    return "identical outputs under onnxruntime on a random input"

"""Static int64 audit of an ONNX graph (``model.onnx`` / ``model.sim.onnx``).

Inventory: every int64 initializer, Constant and integer attribute, and every op that produces int64.
Finding: a value outside the int32 range. For each one: what TFJS's narrowing makes of it (numpy cast), which
consumers change meaning (followed through pass-through ops such as Cast/Concat/Unsqueeze to the Slice, Reshape,
Gather ... that uses it, with the slice it keeps before and after on the axis when shape inference knows the axis
length), and where it lands: the graph outputs it reaches, and, by running the graph twice with onnxruntime
(original value, then the narrowed value substituted: ONNX reads negative bounds as TF/TFJS do), exactly which
output channels change, mapped to class indices (``cls_pred_stride_*``) or box sides (``dis_pred_stride_*``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from contracts.errors import UserError

from .common import (ONNX_INT64_PRODUCERS, ONNX_PASSTHROUGH, ONNX_ROLES, channel_meaning,
                     describe_int, narrow, out_of_range_mask, slice_effect)


def load_onnx(path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"{path}: not a readable ONNX model ({exc.__class__.__name__})") from None


def _int_sources(graph):
    """(kind, tensor name, producing node name, values) for every integer constant and attribute."""
    for init in graph.initializer:
        if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            yield "initializer", init.name, None, numpy_helper.to_array(init)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant":
                if attr.name == "value" and attr.t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                    yield "Constant", node.output[0], node.name, numpy_helper.to_array(attr.t)
                elif attr.name == "value_int":
                    yield "Constant", node.output[0], node.name, np.asarray(attr.i, np.int64)
                elif attr.name == "value_ints":
                    yield "Constant", node.output[0], node.name, np.asarray(list(attr.ints), np.int64)
            elif attr.type == onnx.AttributeProto.INT:
                yield "attribute", f"{node.name or node.op_type}.{attr.name}", node.name, np.asarray(attr.i, np.int64)
            elif attr.type == onnx.AttributeProto.INTS:
                yield "attribute", f"{node.name or node.op_type}.{attr.name}", node.name, \
                    np.asarray(list(attr.ints), np.int64)


def _consumer_map(graph):
    out = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                out.setdefault(name, []).append((node, i))
    return out


def _terminal_consumers(name, consumers, depth=0, via=()):
    """Follow pass-through ops to the nodes that use the integer value; (node, input index, via chain)."""
    for node, idx in consumers.get(name, []):
        if node.op_type in ONNX_PASSTHROUGH and not (node.op_type == "Reshape" and idx == 1) \
                and not (node.op_type in ("Squeeze", "Unsqueeze") and idx == 1) and depth < 8:
            yield from _terminal_consumers(node.output[0], consumers, depth + 1, via + (node.name or node.op_type,))
        else:
            yield node, idx, list(via)


def _const_values(graph) -> dict:
    return {name: vals for kind, name, _, vals in _int_sources(graph) if kind != "attribute"}


def _slice_detail(node, consts, shapes, replaced: dict) -> list[dict]:
    """Per sliced axis: bounds before/after narrowing and the indices kept when the axis length is known."""
    attrs = {a.name: list(a.ints) for a in node.attribute if a.name in ("starts", "ends", "axes", "steps")}
    if "starts" in attrs:
        parts = {k: np.asarray(v, np.int64) for k, v in attrs.items()}
    else:
        parts = {}
        for idx, role in ONNX_ROLES["Slice"].items():
            if idx < len(node.input) and node.input[idx] in consts:
                parts[role] = np.asarray(consts[node.input[idx]], np.int64).reshape(-1)
    if "starts" not in parts or "ends" not in parts:
        return []
    n = len(parts["starts"])
    axes = parts.get("axes", np.arange(n))
    steps = parts.get("steps", np.ones(n, np.int64))
    dims = shapes.get(node.input[0])
    details = []
    for k in range(n):
        ax = int(axes[k])
        if dims is not None and ax < 0:
            ax += len(dims)
        dim = dims[ax] if dims is not None and 0 <= ax < len(dims) else None
        orig = {r: int(parts[r][k]) for r in ("starts", "ends") } | {"steps": int(steps[k])}
        nar = {r: int(narrow(v)) for r, v in orig.items()}
        if not any(out_of_range_mask(v) for v in orig.values()):
            continue
        d = {"axis": ax, "axis_length": dim,
             "original": {r: describe_int(v) for r, v in orig.items()},
             "narrowed": nar}
        kept_o = slice_effect(orig["starts"], orig["ends"], orig["steps"], dim)
        kept_n = slice_effect(nar["starts"], nar["ends"], nar["steps"], dim)
        if kept_o is not None:
            lost = sorted(set(kept_o) - set(kept_n or []))
            d.update(kept_original=_span(kept_o), kept_narrowed=_span(kept_n), dropped=lost)
            d["effect"] = (f"axis {ax} (length {dim}): keeps {_span(kept_n)} instead of {_span(kept_o)}"
                           if kept_o != kept_n else f"axis {ax} (length {dim}): same indices")
        else:
            d["effect"] = (f"axis {ax} (length not static): end {describe_int(orig['ends'])} -> {nar['ends']}, "
                           f"start {describe_int(orig['starts'])} -> {nar['starts']}; where TF cannot fold the "
                           f"clamp, TFJS reads a narrowed -1 end as length-1 (drops the last element) and a "
                           f"narrowed 0 end as empty/first-only")
        details.append(d)
    return details


def _span(idx):
    if idx is None:
        return None
    if not idx:
        return "[] (empty)"
    step = idx[1] - idx[0] if len(idx) > 1 else 1
    if idx == list(range(idx[0], idx[-1] + (1 if step > 0 else -1), step)):
        return f"[{idx[0]}..{idx[-1]}]" + (f" step {step}" if step != 1 else "")
    return str(idx)


def _reachable_outputs(graph, start_names) -> list[str]:
    consumers = _consumer_map(graph)
    seen, todo = set(), list(start_names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node, _ in consumers.get(name, []):
            todo.extend(o for o in node.output if o)
    outs = [o.name for o in graph.output]
    return [o for o in outs if o in seen]


def _with_value(model, kind, name, node_name, new_values):
    """A copy of the model with one integer source replaced (narrowed values emulate what TFJS reads)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if kind == "initializer":
        for init in g.initializer:
            if init.name == name:
                init.CopyFrom(numpy_helper.from_array(np.asarray(new_values).astype(
                    numpy_helper.to_array(init).dtype), name))
    elif kind == "Constant":
        for node in g.node:
            if node.op_type == "Constant" and node.output[0] == name:
                old = [a for a in node.attribute]
                del node.attribute[:]
                arr = np.asarray(new_values, np.int64)
                ref = next((a for a in old if a.name == "value"), None)
                if ref is not None:
                    arr = arr.astype(numpy_helper.to_array(ref.t).dtype)
                node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(arr)))
    else:
        attr_name = name.rsplit(".", 1)[1]
        for node in g.node:
            if (node.name or node.op_type) == name.rsplit(".", 1)[0]:
                for a in node.attribute:
                    if a.name == attr_name:
                        if a.type == onnx.AttributeProto.INT:
                            a.i = int(np.asarray(new_values).reshape(-1)[0])
                        else:
                            del a.ints[:]
                            a.ints.extend(int(v) for v in np.asarray(new_values).reshape(-1))
    return m


def emulate_narrowing(model, kind, name, node_name, values, reg_max=None) -> dict:
    """Run the graph with the original and with the narrowed value; which output channels change."""
    try:
        import onnxruntime as ort
        from patches.int64_clamp import _random_feeds
    except ImportError:
        return {"status": "skipped (onnxruntime not installed)"}
    feeds = _random_feeds(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        base = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        ref = base.run(None, feeds)
    except Exception as exc:
        return {"status": f"skipped (graph does not run under onnxruntime: {exc.__class__.__name__})"}
    narrowed = narrow(values).astype(np.int64)
    try:
        alt = ort.InferenceSession(_with_value(model, kind, name, node_name, narrowed).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
        got = alt.run(None, feeds)
    except Exception as exc:
        return {"status": f"the narrowed graph fails under onnxruntime ({str(exc).splitlines()[0][:160]})"}
    outputs = {}
    for o, a, b in zip(model.graph.output, ref, got):
        a, b = np.asarray(a), np.asarray(b)
        entry = {}
        if a.shape != b.shape:
            entry["shape"] = f"{list(a.shape)} -> {list(b.shape)}"
        changed = _changed_channels(a, b)
        if changed or a.shape != b.shape:
            entry.update(channel_meaning(o.name, changed, reg_max, a.shape[-1] if a.ndim else None))
            entry["changed_channels"] = changed
            outputs[o.name] = entry
    return {"status": "emulated with onnxruntime (narrowed value substituted)", "outputs": outputs}


def _changed_channels(a: np.ndarray, b: np.ndarray) -> list[int]:
    """Last-axis channels that differ (compared on the common region; channels absent in b count as changed)."""
    if a.ndim == 0 or a.size == 0:
        return [] if np.array_equal(a, b) else [0]
    if b.ndim != a.ndim:
        return list(range(a.shape[-1]))
    common = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, b.shape))
    diff = ~np.isclose(a[common], b[common], rtol=0, atol=0, equal_nan=True)
    changed = set(np.nonzero(diff.reshape(-1, diff.shape[-1]).any(axis=0))[0].tolist()) if diff.size else set()
    changed |= set(range(b.shape[-1], a.shape[-1]))
    if any(x != y for x, y in zip(a.shape[:-1], b.shape[:-1])):  # rows lost on another axis: every channel
        changed = set(range(a.shape[-1]))
    return sorted(int(c) for c in changed)


def audit_onnx(model_or_path, label: str | None = None, reg_max: int | None = None, emulate: bool = True) -> dict:
    """Inventory and findings of one ONNX graph."""
    from patches.int64_clamp import static_shapes   # lazily: importing patches imports torch

    model = load_onnx(model_or_path) if not isinstance(model_or_path, onnx.ModelProto) else model_or_path
    label = label or (Path(model_or_path).name if not isinstance(model_or_path, onnx.ModelProto) else "onnx")
    g = model.graph
    consumers = _consumer_map(g)
    consts = _const_values(g)
    shapes = static_shapes(model)
    inv = {"int64_initializers": 0, "int64_constants": 0, "int_attributes": 0, "int64_producing_ops": {},
           "slices": sum(n.op_type == "Slice" for n in g.node)}
    for init in g.initializer:
        inv["int64_initializers"] += init.data_type == onnx.TensorProto.INT64
    findings = []
    for kind, name, node_name, values in _int_sources(g):
        if kind == "initializer":
            pass
        elif kind == "Constant":
            inv["int64_constants"] += 1
        else:
            inv["int_attributes"] += 1
        mask = out_of_range_mask(values)
        if not mask.any():
            continue
        flat = np.asarray(values, np.int64).reshape(-1)
        idx = np.nonzero(mask.reshape(-1))[0]
        f = {"artifact": label, "source": kind, "name": name, "node": node_name,
             "original": [describe_int(v) for v in flat[idx]], "narrowed": narrow(flat[idx]).tolist(),
             "element_indices": idx.tolist(), "consumers": []}
        if kind == "attribute":
            node = next(n for n in g.node if (n.name or n.op_type) == name.rsplit(".", 1)[0])
            uses = [(node, name.rsplit(".", 1)[1], [])]
        else:
            uses = [(n, ONNX_ROLES.get(n.op_type, {}).get(i, f"input {i}"), via)
                    for n, i, via in _terminal_consumers(name, consumers)]
        for node, role, via in uses:
            c = {"node": node.name or node.op_type, "op": node.op_type, "role": role, "via": via}
            if node.op_type == "Slice" and role in ("starts", "ends", "steps"):
                c["axes"] = _slice_detail(node, consts, shapes, {})
                c["changes_meaning"] = ("where TF cannot fold the bound (axis not static)"
                                        if any(d.get("dropped") or d.get("axis_length") is None for d in c["axes"])
                                        else "no (same indices)")
            else:
                c["changes_meaning"] = f"yes: {node.op_type} {role} reads {f['narrowed'][0]} instead of " \
                                       f"{f['original'][0]}"
            f["consumers"].append(c)
        starts = [name] if kind != "attribute" else [o for o in uses[0][0].output]
        f["reaches_outputs"] = _reachable_outputs(g, starts)
        if emulate:
            f["emulation"] = emulate_narrowing(model, kind, name, node_name, values, reg_max)
        findings.append(f)
    for node in g.node:
        if node.op_type in ONNX_INT64_PRODUCERS or (node.op_type == "Cast" and any(
                a.name == "to" and a.i == onnx.TensorProto.INT64 for a in node.attribute)):
            inv["int64_producing_ops"][node.op_type] = inv["int64_producing_ops"].get(node.op_type, 0) + 1
    return {"artifact": label, "kind": "onnx", "inventory": inv, "findings": findings}

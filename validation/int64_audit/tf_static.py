"""Static int64 audit of the TF side: the SavedModel (graph of the serving signature and every function in its
library) and the TFJS graph model (model.json + weight shards).

SavedModel: every int64 Const, every int attribute; a finding is a value outside int32. TFJS: every tensor that
was int64 in the graph (node dtype DT_INT64) but is stored as int32 in the weights manifest, or inline in a node
attribute. A TFJS value is *confirmed* narrowed when the same constant (matched by name: the converter keeps the
SavedModel's node names, and onnx-tf keeps the ONNX names after ``onnx_tf_prefix_``) held an out-of-range value in
the SavedModel or the ONNX. Without a reference (a foreign artifact) a TFJS int64 constant is a *suspect* when it
holds a value that narrowing produces from the usual culprits (INT64_MAX -> -1, INT64_MIN -> 0, 2**31 -> INT32_MIN)
and it feeds a slice bound (StridedSlice/Slice begin/end/size, directly or through onnx-tf's clamp ops).
For each finding: its consumers with their role, and the model outputs it can reach.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contracts.errors import UserError

from .common import INT32_MIN, SLICE_BOUND_ROLES, TF_ROLES, describe_int, narrow, out_of_range_mask

SUSPECT_VALUES = {-1: "INT64_MAX", 0: "INT64_MIN", INT32_MIN: "2**31"}
# which narrowed values are tells for which slice bound: an end of -1 (INT64_MAX, or a true -1 as in x[:-1]),
# an end of 0 (INT64_MIN, reverse slices), INT32_MIN anywhere. A begin of 0 is too common to be a tell.
TELLS = {"end": {-1, 0, INT32_MIN}, "begin": {INT32_MIN}, "size": {INT32_MIN}}
# first ops through which a slice bound value flows unchanged or clamped (onnx-tf: minimum(bound, dim))
BOUND_PATH_OPS = {"Minimum", "Maximum", "Pack", "ConcatV2", "Identity", "Cast", "ExpandDims"}
CALL_PREFIXES = ("StatefulPartitionedCall/", "PartitionedCall/")


def _node_ref(inp: str) -> str | None:
    """The node name in a graph input reference ('^ctrl' -> None; 'n:output:0' / 'n:1' -> 'n')."""
    if inp.startswith("^"):
        return None
    return inp.split(":", 1)[0]


def _bfs_consumers(nodes_by_name: dict, consumers: dict, start: str, max_depth: int = 8) -> list[dict]:
    """Sensitive uses reachable from ``start``: (op, role, node, hops) for ops in TF_ROLES with a role."""
    found, seen, frontier = [], {start}, [(start, 0, [])]
    while frontier:
        name, depth, via = frontier.pop(0)
        for node, idx in consumers.get(name, []):
            role = TF_ROLES.get(node["op"], {}).get(idx)
            if role:
                found.append({"node": node["name"], "op": node["op"], "role": role, "via": via})
            if node["name"] not in seen and depth < max_depth and not role:
                seen.add(node["name"])
                frontier.append((node["name"], depth + 1, via + [f"{node['op']}:{node['name']}"]))
    return found


def _consumer_index(nodes: list[dict]) -> dict:
    out = {}
    for node in nodes:
        for i, inp in enumerate(node.get("input", [])):
            ref = _node_ref(inp)
            if ref is not None:
                out.setdefault(ref, []).append((node, i))
    return out


def _reach(consumers: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(n["name"] for n, _ in consumers.get(name, []))
    return seen


# ---------------------------------------------------------------- SavedModel

def _load_saved_model(path: Path):
    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise UserError(f"{path}: no saved_model.pb (not a TF SavedModel folder)")
    from contracts.tf_environment import import_tensorflow
    import_tensorflow()  # first, so that TF's import-time C++ noise is filtered
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(pb.read_bytes())
    except Exception as exc:
        raise UserError(f"{pb}: not a readable SavedModel ({exc.__class__.__name__})") from None
    return sm


def audit_saved_model(path, signature: str = "serving_default") -> dict:
    """Findings: int64 Consts (graph and functions) outside int32, their consumers and reachable outputs."""
    path = Path(path)
    sm = _load_saved_model(path)
    from tensorflow.python.framework import tensor_util
    mg = sm.meta_graphs[0]
    # signature output names by the index of the call output they read (onnx-tf wrappers pass outputs through)
    sig_outputs = {}
    if signature in mg.signature_def:
        for name, info in mg.signature_def[signature].outputs.items():
            idx = int(info.name.rsplit(":", 1)[1]) if ":" in info.name else 0
            sig_outputs[idx] = name
    graphs = [("graph", list(mg.graph_def.node), None)]
    graphs += [(f.signature.name, list(f.node_def), f) for f in mg.graph_def.library.function]
    inv = {"int64_consts": 0, "functions": len(graphs) - 1, "int_attrs_out_of_range": 0}
    findings, small_values = [], {}
    for scope, node_defs, fn in graphs:
        nodes = [{"name": n.name, "op": n.op, "input": list(n.input)} for n in node_defs]
        consumers = _consumer_index(nodes)
        ret_nodes = {}
        if fn is not None:
            for k, arg in enumerate(fn.signature.output_arg):
                ref = _node_ref(fn.ret.get(arg.name, ""))
                if ref:
                    ret_nodes.setdefault(ref, []).append(k)
        for n in node_defs:
            for aname, a in n.attr.items():
                if a.WhichOneof("value") == "i" and out_of_range_mask(a.i):
                    inv["int_attrs_out_of_range"] += 1
                    findings.append({"artifact": "saved_model", "scope": scope, "source": "attribute",
                                     "name": f"{n.name}.{aname}", "original": [describe_int(a.i)],
                                     "narrowed": narrow([a.i]).tolist(), "consumers": [
                                         {"node": n.name, "op": n.op, "role": aname}]})
            if n.op != "Const" or n.attr["dtype"].type != 9:  # DT_INT64
                continue
            inv["int64_consts"] += 1
            values = tensor_util.MakeNdarray(n.attr["value"].tensor)
            if values.size <= 64:
                small_values.setdefault(n.name, values.reshape(-1).tolist())
            mask = out_of_range_mask(values)
            if not mask.any():
                continue
            flat = values.reshape(-1)
            idx = np.nonzero(mask.reshape(-1))[0]
            reached = _reach(consumers, n.name)
            outs = sorted({k for r in reached for k in ret_nodes.get(r, [])})
            findings.append({
                "artifact": "saved_model", "scope": scope, "source": "Const", "name": n.name,
                "original": [describe_int(v) for v in flat[idx]], "narrowed": narrow(flat[idx]).tolist(),
                "element_indices": idx.tolist(),
                "consumers": _bfs_consumers({}, consumers, n.name),
                "reaches_outputs": [sig_outputs.get(k, f"{scope} output {k}") for k in outs]
                if fn is not None else [],
            })
    unique = {}
    for f in findings:  # the same function is often traced twice (__call___N): one finding per name
        key = (f["name"], tuple(f["original"]))
        if key in unique:
            unique[key].setdefault("also_in", []).append(f.get("scope"))
        else:
            unique[key] = f
    return {"artifact": "saved_model", "kind": "saved_model", "inventory": inv, "findings": list(unique.values()),
            "int64_values": small_values}


# ---------------------------------------------------------------- TFJS

ITEMSIZE = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "float16": 2, "uint16": 2, "int8": 1, "int16": 2,
            "complex64": 8, "string": None}


def load_tfjs(model_json) -> tuple[dict, dict]:
    """(model.json dict, {weight name: (stored array or None, manifest entry)}); only integer weights decoded."""
    path = Path(model_json)
    if path.is_dir():
        path = path / "model.json"
    if not path.is_file():
        raise UserError(f"{path}: TFJS model.json not found")
    try:
        model = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable TFJS model.json ({exc.__class__.__name__})") from None
    if "modelTopology" not in model or "weightsManifest" not in model:
        raise UserError(f"{path}: not a TFJS graph model (no modelTopology/weightsManifest)")
    weights = {}
    for group in model["weightsManifest"]:
        blobs = []
        for shard in group.get("paths", []):
            sp = path.parent / shard
            if not sp.is_file():
                raise UserError(f"{sp}: weight shard named in {path} not found")
            blobs.append(sp.read_bytes())
        data, off = b"".join(blobs), 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            q = w.get("quantization")
            if q:
                size = ITEMSIZE[q["dtype"]]
            else:
                size = ITEMSIZE.get(w["dtype"])
            if size is None:  # strings: length-prefixed; not integers, stop decoding this group
                break
            arr = None
            if w["dtype"] == "int32" and not q:
                arr = np.frombuffer(data, np.int32, count, off).reshape(w["shape"])
            weights[w["name"]] = (arr, w)
            off += count * size
    return model, weights


def _inline_ints(attr_value: dict):
    t = attr_value.get("tensor") if isinstance(attr_value, dict) else None
    if not t:
        return None
    for key in ("int64Val", "intVal"):
        if t.get(key):
            return np.asarray([int(v) for v in t[key]], np.int64)
    return None


def audit_tfjs(model_json, reference_names: dict | None = None, io_names: dict | None = None) -> dict:
    """Inventory and findings of a TFJS graph model.

    ``reference_names``: {name: original int64 array} of out-of-range constants seen upstream (SavedModel node
    names and ONNX tensor/node names), used to confirm narrowing by name. ``io_names``: {TFJS output tensor name:
    signature output name}.
    """
    model, weights = load_tfjs(model_json)
    nodes = model["modelTopology"].get("node", [])
    for fn in (model["modelTopology"].get("library") or {}).get("function", []) or []:
        nodes = nodes + fn.get("nodeDef", [])
    consumers = _consumer_index(nodes)
    sig = (model.get("signature") or {}).get("outputs") or {}
    out_nodes = {}
    for key, info in sig.items():
        tname = info.get("name", key)
        out_nodes.setdefault(_node_ref(tname), []).append((io_names or {}).get(tname, tname))
    reference_names = reference_names or {}
    inv = {"nodes": len(nodes), "int64_origin_tensors": 0, "stored_as_int32": 0, "inline": 0,
           "int64_ops": {}, "int64_uses": {}, "stored_value_range": None,
           "slice_ops": sum(n["op"] in ("StridedSlice", "Slice") for n in nodes)}
    findings, int64_consts = [], []
    for n in nodes:
        attrs = n.get("attr", {})
        for key in ("T", "Tindices", "Tidx", "Tshape", "out_type", "index_type", "Tmultiples", "Tpaddings"):
            if attrs.get(key, {}).get("type") == "DT_INT64":
                inv["int64_ops"][n["op"]] = inv["int64_ops"].get(n["op"], 0) + 1
                break
        if n["op"] != "Const" or attrs.get("dtype", {}).get("type") != "DT_INT64":
            continue
        inv["int64_origin_tensors"] += 1
        stored = weights.get(n["name"], (None, None))[0]
        if stored is not None:
            inv["stored_as_int32"] += 1
        else:
            stored = _inline_ints(attrs.get("value", {}))
            if stored is not None:
                inv["inline"] += 1
        int64_consts.append(n["name"])
        if stored is None:
            continue
        uses = _bfs_consumers({}, consumers, n["name"])
        for u in uses:
            key = f"{u['op']}.{u['role']}"
            inv["int64_uses"][key] = inv["int64_uses"].get(key, 0) + 1
        if np.asarray(stored).size:
            lo, hi = int(np.min(stored)), int(np.max(stored))
            inv["stored_value_range"] = [min(lo, inv["stored_value_range"][0]), max(hi, inv["stored_value_range"][1])] \
                if inv["stored_value_range"] else [lo, hi]
        reached = _reach(consumers, n["name"])
        outs = sorted({o for r in reached for o in out_nodes.get(r, [])})
        ref = _match_reference(n["name"], reference_names)
        flat = np.asarray(stored).reshape(-1)
        if ref is not None:
            ref_name, orig = ref
            orig = np.asarray(orig, np.int64).reshape(-1)
            if orig.shape == flat.shape and (narrow(orig) == flat).all() and out_of_range_mask(orig).any():
                idx = np.nonzero(out_of_range_mask(orig))[0]
                findings.append({"artifact": "tfjs", "status": "confirmed", "name": n["name"],
                                 "matches": ref_name, "original": [describe_int(v) for v in orig[idx]],
                                 "narrowed": flat[idx].tolist(), "element_indices": idx.tolist(),
                                 "consumers": uses, "reaches_outputs": outs})
            continue
        bound_uses = [u for u in uses if (u["op"], u["role"]) in SLICE_BOUND_ROLES
                      and (not u["via"] or u["via"][0].split(":", 1)[0] in BOUND_PATH_OPS)]
        tells = sorted({int(v) for v in flat for u in bound_uses if int(v) in TELLS.get(u["role"], ())})
        if bound_uses and tells:
            findings.append({"artifact": "tfjs", "status": "suspect", "name": n["name"], "values": flat.tolist(),
                             "could_be": {str(v): SUSPECT_VALUES[v] for v in tells},
                             "consumers": bound_uses, "reaches_outputs": outs})
    return {"artifact": "tfjs", "kind": "tfjs", "inventory": inv, "findings": findings,
            "int64_origin_names": int64_consts}


def _match_reference(name: str, reference: dict):
    """The upstream constant a TFJS node name comes from, if any: (reference name, original values)."""
    bare = name
    for p in CALL_PREFIXES:
        if bare.startswith(p):
            bare = bare[len(p):]
    candidates = [name, bare]
    if "onnx_tf_prefix_" in bare:
        onnx_name = bare.split("onnx_tf_prefix_", 1)[1]
        candidates += [onnx_name, onnx_name + "_output_0"]
    for c in candidates:
        if c in reference:
            return c, reference[c]
    return None

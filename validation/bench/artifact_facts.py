"""What a TFJS model.json says about the model without running it: its files' size on disk and its graph ops."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

# graph nodes that compute nothing: left out of the op count of the table
BOOKKEEPING_OPS = {"Const", "Placeholder", "Identity", "NoOp"}


def tfjs_files(model_json: Path) -> list[Path]:
    """model.json and the weight shards its ``weightsManifest`` names."""
    data = json.loads(model_json.read_text())
    shards = [model_json.parent / p for g in data.get("weightsManifest", []) for p in g["paths"]]
    return [model_json, *shards]


def tfjs_size(model_json: Path) -> int:
    """Bytes on disk of model.json and its weight shards."""
    return sum(p.stat().st_size for p in tfjs_files(model_json))


def op_counts(model_json: Path) -> Counter:
    """Graph nodes per op type, the graph's functions (control flow bodies) included."""
    data = json.loads(model_json.read_text())
    nodes = list(data["modelTopology"].get("node", []))
    for fn in (data["modelTopology"].get("library") or {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    return Counter(n["op"] for n in nodes)


def graph_facts(model_json: Path) -> dict:
    """The table's static columns of one TFJS model: size, ops (without bookkeeping), Transposes, ops by type."""
    ops = op_counts(model_json)
    return {"size": tfjs_size(model_json),
            "ops": sum(v for k, v in ops.items() if k not in BOOKKEEPING_OPS),
            "transposes": ops.get("Transpose", 0), "op_types": dict(ops.most_common())}

"""Per-weight storage types of a TFJS graph model: reading them back, and telling tensorflowjs' converter which.

tensorflowjs quantizes per weight entry of model.json's ``weightsManifest``, and only float32 entries. Its
``quantization_dtype_map`` maps a dtype (``uint8``, ``float16``) to fnmatch patterns over the entry names, or to
True for "every weight no pattern names". Those names are the constant nodes of the graph it optimised from the
SavedModel (for m-416 from onnx-tf: ``PartitionedCall/split_42`` for a 1x1 kernel, ``PartitionedCall/Reshape_23``
for a depthwise one, ``unknown_134`` for a bias). There is no "keep float32" entry in that map, so a mixed
assignment is handed over as exact names per dtype (``dtype_map``), each escaped so that fnmatch matches it
literally; a name not listed stays float32.

``read_entries`` / ``read_float_weights`` read the entries (and their data) back from a written model.json;
``resolve_keep`` turns the user's ``--keep`` patterns into that exact assignment; ``storage_record`` is what the
manifest says about the result (which names got which type, the bytes, the bytes saved against float32).
"""
from __future__ import annotations

import fnmatch
import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.errors import UserError

STORED_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint16": 2, "uint8": 1, "bool": 1}
WEIGHT_TYPES = ("float32", "float16", "uint8")   # what an assignment may give a float32 weight


@dataclass(frozen=True)
class WeightEntry:
    """One entry of model.json's weightsManifest: ``dtype`` is the weight's own type (float32 for a quantized
    float weight), ``stored`` the type its bytes are in, ``quantization`` tensorflowjs' metadata (or None)."""
    name: str
    shape: tuple[int, ...]
    dtype: str
    stored: str
    quantization: dict | None

    @property
    def count(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        if self.stored not in STORED_BYTES:
            raise RuntimeError(f"weight {self.name}: stored type {self.stored} not known to the toolkit")
        return self.count * STORED_BYTES[self.stored]


def _manifest(model_json: Path) -> list[dict]:
    try:
        data = json.loads(Path(model_json).read_text())
        groups = data["weightsManifest"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{model_json}: not a TFJS graph model with a weightsManifest ({exc.__class__.__name__})") \
            from None
    return groups


def _entry(w: dict) -> WeightEntry:
    q = w.get("quantization") if isinstance(w.get("quantization"), dict) else None
    stored = q["dtype"] if q else w["dtype"]
    return WeightEntry(w["name"], tuple(int(d) for d in w.get("shape", [])), w["dtype"], stored, q)


def read_entries(model_json: Path) -> list[WeightEntry]:
    """Every weight entry of the model, in manifest order."""
    return [_entry(w) for g in _manifest(model_json) for w in g.get("weights", [])]


def float_entries(model_json: Path) -> list[WeightEntry]:
    """The entries whose weights are float32 (the only ones tensorflowjs quantizes)."""
    return [e for e in read_entries(model_json) if e.dtype == "float32"]


def _decode(raw: bytes, e: WeightEntry) -> np.ndarray:
    stored = np.frombuffer(raw, np.dtype(e.stored)).reshape(e.shape)
    if e.quantization is None:
        return stored.astype(np.float32) if e.dtype == "float32" else stored
    if e.stored == "float16":
        return stored.astype(np.float32)
    # what TFJS computes at load time (io_utils' dequantization): value * scale + min, stored as float32
    return (stored.astype(np.float64) * float(e.quantization["scale"]) + float(e.quantization["min"])
            ).astype(np.float32)


def read_float_weights(model_json: Path) -> dict[str, np.ndarray]:
    """{name: float32 array} of every float32 weight, as TFJS loads it (quantized entries dequantized)."""
    model_json = Path(model_json)
    out = {}
    for group in _manifest(model_json):
        data = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group.get("weights", []):
            e = _entry(w)
            size = e.nbytes
            if e.dtype == "float32":
                out[e.name] = _decode(data[offset:offset + size], e)
            offset += size
    return out


def exact_pattern(name: str) -> str:
    """A pattern fnmatch matches with ``name`` only (``*``, ``?``, ``[`` escaped as one-character classes)."""
    return glob.escape(name)


def dtype_map(assignment: dict[str, str]) -> dict[str, list[str]] | None:
    """tensorflowjs' ``quantization_dtype_map`` for an exact assignment {weight name: float32|float16|uint8}:
    each quantized type with the exact names given it; float32 ones are left out (stored as they are)."""
    bad = {t for t in assignment.values() if t not in WEIGHT_TYPES}
    if bad:
        raise ValueError(f"unknown weight type(s) {sorted(bad)} (choose {', '.join(WEIGHT_TYPES)})")
    out = {t: sorted(exact_pattern(n) for n, tt in assignment.items() if tt == t) for t in ("float16", "uint8")}
    out = {t: names for t, names in out.items() if names}
    return out or None


def resolve_keep(entries: list[WeightEntry], patterns: tuple[str, ...], quantize: str) -> dict[str, str]:
    """{name: type} for the float32 weights: float32 where a ``--keep`` pattern (fnmatch, as tensorflowjs
    matches) names it, else ``quantize``. A pattern that names no float32 weight is a UserError (a typo would
    otherwise quantize everything silently)."""
    names = [e.name for e in entries if e.dtype == "float32"]
    kept = set()
    for pattern in patterns:
        hit = fnmatch.filter(names, pattern)
        if not hit:
            examples = ", ".join(names[:3])
            raise UserError(f"--keep '{pattern}': names none of the {len(names)} float32 weights of the TFJS model "
                            f"(their names look like {examples}; docs/quantization.md lists them)")
        kept.update(hit)
    return {n: ("float32" if n in kept else quantize) for n in names}


def storage_record(model_json: Path) -> dict:
    """What the manifest says about the weights as written: the names per stored type (float weights), the bytes
    per type, the weight bytes in all, what float32 would take and the bytes saved."""
    entries = read_entries(model_json)
    floats = [e for e in entries if e.dtype == "float32"]
    names = {t: sorted(e.name for e in floats if e.stored == t) for t in WEIGHT_TYPES}
    by_type = {t: sum(e.nbytes for e in floats if e.stored == t) for t in WEIGHT_TYPES}
    total = sum(e.nbytes for e in entries)
    as_float32 = total - sum(by_type.values()) + sum(4 * e.count for e in floats)
    return {"names": {t: n for t, n in names.items() if n}, "counts": {t: len(n) for t, n in names.items()},
            "bytes": by_type, "weights_bytes": total, "float32_weights_bytes": as_float32,
            "saved_bytes": as_float32 - total}

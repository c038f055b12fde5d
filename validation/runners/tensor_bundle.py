"""Binary tensor bundles (.ndtb) exchanged with the Node TFJS runner: no JSON text for numbers.

Layout (little endian): 8 bytes magic ``NDTB0001``, uint32 header length L, 4 zero bytes, L bytes of UTF-8 JSON
header (padded so data starts 8-byte aligned), then raw tensor bytes. The header is
``{"items": [{"tensors": [{"name", "dtype", "shape", "offset", "nbytes"}]}], "meta": {...}}``; offsets count
from the start of the data section. ``js/run_graph_model.mjs`` reads and writes the same layout.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

MAGIC = b"NDTB0001"
DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8}


def _as_supported(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise ValueError(f"tensor {name}: int64 values do not fit int32 (TFJS has no int64)")
        arr = arr.astype(np.int32)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.name not in DTYPES:
        raise ValueError(f"tensor {name}: dtype {arr.dtype} not supported (float32, int32, uint8)")
    return np.ascontiguousarray(arr)


def write_bundle(path: Path, items: list[dict[str, np.ndarray]], meta: dict | None = None) -> None:
    chunks, entries, offset = [], [], 0
    for item in items:
        tensors = []
        for name, value in item.items():
            arr = _as_supported(name, value)
            data = arr.tobytes()
            tensors.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape),
                            "offset": offset, "nbytes": len(data)})
            pad = (-len(data)) % 8
            chunks.append(data + b"\0" * pad)
            offset += len(data) + pad
        entries.append({"tensors": tensors})
    header = json.dumps({"items": entries, "meta": meta or {}}).encode()
    header += b" " * ((-(16 + len(header))) % 8)
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + b"\0" * 4)
        f.write(header)
        for c in chunks:
            f.write(c)


def read_bundle(path: Path) -> tuple[list[dict[str, np.ndarray]], dict]:
    raw = Path(path).read_bytes()
    if len(raw) < 16 or raw[:8] != MAGIC:
        raise ValueError(f"{path}: not a tensor bundle (bad magic)")
    (length,) = struct.unpack("<I", raw[8:12])
    header = json.loads(raw[16:16 + length].decode())
    start = 16 + length
    items = []
    for item in header["items"]:
        out = {}
        for t in item["tensors"]:
            dtype = DTYPES[t["dtype"]]
            a = np.frombuffer(raw, dtype=dtype, count=t["nbytes"] // np.dtype(dtype).itemsize,
                              offset=start + t["offset"])
            out[t["name"]] = a.reshape(t["shape"]).copy()
        items.append(out)
    return items, header.get("meta", {})

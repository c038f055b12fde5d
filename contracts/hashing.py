"""Content hashes for artifacts and cache keys (sha256; no heavy imports).

The manifest records the sha256 of every stage file (``check`` verifies them) and a digest per stage.

A stage's cache key is the sha256 of a canonical JSON document holding its input hashes, its options, the versions
of the packages it uses and a hash of the toolkit source files that shape its output: change any of them and the
stage runs again; change nothing and its finished output is reused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(path: Path) -> dict[str, str]:
    """{relative path: sha256} of a file (its own name) or of every file under a folder (posix paths, sorted)."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    if not path.is_dir():
        raise FileNotFoundError(path)
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[p.relative_to(path).as_posix()] = sha256_file(p)
    return out


def digest_of(hashes: dict[str, str]) -> str:
    """One sha256 standing for a set of file hashes."""
    return hash_json(sorted(hashes.items()))


def hash_json(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_hash(files: list[Path], root: Path) -> str:
    """sha256 over the given source files (path relative to root + content); missing files count as absent."""
    parts = []
    for f in sorted(set(Path(p) for p in files)):
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name
        parts.append((rel, sha256_file(f) if f.is_file() else None))
    return hash_json(parts)


def stage_key(*, stage: str, inputs: dict, options: dict, versions: dict, code: str) -> str:
    return hash_json({"stage": stage, "inputs": inputs, "options": options, "versions": versions, "code": code})

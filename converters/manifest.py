"""``manifest.json`` of an artifact folder: what was made, from what, with which tools, and which stages finished.

Layout (top level): ``name`` (the artifact name: model + option suffixes), ``complete`` (all stages finished),
``stages_completed`` (in order), ``stages`` (per stage: output path, cache key and what went into it, sha256 of
every output file, io spec, extras such as the patches that ran), ``weights`` (``checkpoint <file>`` or
``random (seed N)``) and ``weights_provenance``, ``inputs`` (config and checkpoint paths with their sha256),
``options``, ``versions`` (tools and packages), ``signature`` (the model's input/output contract), ``io_specs``
(per stage), ``files`` (sha256 of every output file), ``patches`` (which ran), and last ``run``: the facts of
the run that wrote it (folder, start and end time, seconds, per stage cached or built, copied from which sibling,
seconds, when it was built). Everything outside ``run`` depends only on the inputs, so two builds of the same
inputs have the same manifest but for ``run``. The manifest is written atomically.
"""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from .atomic import write_json

FILENAME = "manifest.json"
RUN_KEYS = ("seconds", "built", "reused_from")   # per-stage run facts: they live in ``run.stages``, not the entry
PACKAGES = ("nanodet-tfjs", "torch", "onnx", "onnxsim", "onnxruntime", "onnx-tf", "onnx2tf", "tensorflow",
            "tf_keras", "tensorflowjs", "tensorflow-hub", "numpy", "protobuf")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(names=PACKAGES) -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    out.update({n: package_version(n) for n in names})
    return out


def stage_record(entry: dict) -> dict:
    """A stage entry without run facts (older manifests kept them inside the entry)."""
    return {k: v for k, v in entry.items() if k not in RUN_KEYS}


def load(artifact_dir: Path) -> dict:
    """The folder's manifest, or an empty one where it is absent or unreadable (then nothing counts as cached)."""
    path = Path(artifact_dir) / FILENAME
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class Manifest:
    """The manifest being written during a run; ``save`` after every change that must survive an interrupt."""

    def __init__(self, artifact_dir: Path, stage_order: list[str]):
        self.dir = Path(artifact_dir)
        self.order = list(stage_order)
        self.data = load(self.dir)
        self.data.setdefault("stages", {})
        for name in list(self.data["stages"]):
            if name not in self.order:
                del self.data["stages"][name]

    # -- stages -------------------------------------------------------------------------------------------
    def stage(self, name: str) -> dict | None:
        entry = self.data["stages"].get(name)
        return entry if isinstance(entry, dict) and entry.get("completed") else None

    def forget_from(self, name: str) -> None:
        """Drop ``name`` and every later stage: their outputs are about to be rebuilt."""
        for later in self.order[self.order.index(name):]:
            self.data["stages"].pop(later, None)
        self._refresh()

    def complete_stage(self, name: str, entry: dict) -> None:
        self.data["stages"][name] = {**stage_record(entry), "completed": True}
        self._refresh()

    def _refresh(self) -> None:
        done = []
        for name in self.order:  # a stage only counts when every stage before it is complete too
            if self.stage(name) is None:
                break
            done.append(name)
        self.data["stages_completed"] = done
        self.data["complete"] = done == self.order
        self.data["io_specs"] = {n: self.data["stages"][n].get("io_spec") for n in done
                                 if self.data["stages"][n].get("io_spec")}

    # -- the rest -----------------------------------------------------------------------------------------
    def update(self, **fields) -> None:
        self.data.update(fields)

    def save(self) -> None:
        """Write it (``run`` last: everything above it is the same for the same inputs)."""
        ordered = {k: self.data[k] for k in ("name", "complete", "stages_completed") if k in self.data}
        ordered.update({k: v for k, v in self.data.items() if k not in ordered and k != "run"})
        if "run" in self.data:
            ordered["run"] = self.data["run"]
        write_json(self.dir / FILENAME, ordered)

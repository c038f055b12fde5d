"""``manifest.json`` of an artifact folder: what was made, from what, with which tools, and which stages finished.

Layout (top level): ``name`` (the artifact name: model + option suffixes), ``complete`` (all stages finished),
``stages_completed`` (in order), ``stages`` (per stage: output path, cache key and what went into it, sha256 of
every output file, io spec, extras such as the patches that ran), ``weights`` (``checkpoint <file>`` or
``random (seed N)``) and ``weights_provenance``, ``inputs`` (config and checkpoint paths with their sha256),
``options`` (``layout`` among them), ``versions`` (tools and packages), ``signature`` (the model's input/output
contract, with its ``layout``), ``io_specs`` (per stage), ``files`` (sha256 of every output file), ``patches``
(which ran), and last ``run``: the facts of
the run that wrote it (folder, start and end time, seconds, per stage cached or built, copied from which sibling,
seconds, when it was built). Everything outside ``run`` depends only on the inputs, so two builds of the same
inputs have the same manifest but for ``run``. The manifest is written atomically.

One module reads and writes it: :class:`Manifest` (``Manifest.load(folder)``) has a reader for each fact, each
read from one key (a stage's output path ``stages.<name>.output``, its files ``stages.<name>.files``, its io
spec ``stages.<name>.io_spec``, the weights ``weights_provenance``); :class:`ManifestWriter` is the pipeline's,
saved after every change that must survive an interrupt.
"""
from __future__ import annotations

import json
import platform
import re
from importlib import metadata
from pathlib import Path

from .atomic import write_json
from .errors import UserError
from .io_spec import IoSpec

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


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


class Manifest:
    """What an artifact folder's ``manifest.json`` records, with one reader per fact."""

    def __init__(self, data: dict | None = None, directory: Path | None = None):
        self.data = _dict(data)
        self.dir = Path(directory) if directory is not None else None

    @classmethod
    def load(cls, directory: Path, strict: bool = True) -> "Manifest":
        """The folder's manifest (empty where absent). One that is not readable JSON is a UserError, or with
        ``strict=False`` empty too (the pipeline: then nothing counts as cached)."""
        path = Path(directory) / FILENAME
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError) as exc:
            if strict:
                raise UserError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
            data = {}
        return cls(data, directory)

    def __bool__(self) -> bool:
        return bool(self.data)

    @classmethod
    def is_ours(cls, directory: Path) -> bool:
        """Whether ``directory/manifest.json`` is a manifest this toolkit wrote (its name, stage list and stages),
        not some other program's file of the same name (web apps and extensions have one too)."""
        data = cls.load(directory, strict=False).data
        return (isinstance(data.get("name"), str) and isinstance(data.get("stages_completed"), list)
                and isinstance(data.get("stages"), dict))

    # -- the artifact ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self.data.get("name")

    @property
    def model(self) -> str | None:
        return self.data.get("model")

    @property
    def layout(self) -> str:
        """The exported outputs' layout (``options.layout``: ``per-level``, or ``upstream``); ``per-level`` where
        the manifest predates the option."""
        return str(_dict(self.data.get("options")).get("layout") or "per-level")

    @property
    def complete(self) -> bool:
        return bool(self.data.get("complete"))

    # -- stages ---------------------------------------------------------------------------------------------
    def stage_names(self) -> list[str]:
        return list(_dict(self.data.get("stages")))

    def stage_entry(self, name: str) -> dict:
        """The stage's entry ({} where there is none)."""
        return _dict(_dict(self.data.get("stages")).get(name))

    def stage(self, name: str) -> dict | None:
        """The entry of a finished stage, else None."""
        entry = self.stage_entry(name)
        return entry if entry.get("completed") else None

    def stage_output(self, name: str) -> str | None:
        """The stage's output path inside the folder (``model.onnx``, ``tfjs``)."""
        output = self.stage_entry(name).get("output")
        return output if isinstance(output, str) else None

    def stage_files(self, name: str) -> dict[str, str]:
        """{file path relative to the stage output: sha256} ({} where none is recorded)."""
        return _dict(self.stage_entry(name).get("files"))

    def stage_digest(self, name: str) -> str | None:
        """One sha256 standing for all the stage's files (``contracts.hashing.digest_of``)."""
        digest = self.stage_entry(name).get("digest")
        return digest if isinstance(digest, str) else None

    def stage_digests(self, names) -> dict[str, str]:
        """{stage: digest} for the named stages that have one: what a validation report records it measured, so
        that a report can be matched to the stage files it describes."""
        return {n: self.stage_digest(n) for n in names if self.stage_digest(n) is not None}

    def io_spec(self, name: str, required_outputs: list[str] | None = None) -> IoSpec | None:
        """The stage's io spec, checked; None where none is recorded."""
        spec = self.stage_entry(name).get("io_spec")
        if spec is None:
            return None
        return IoSpec.from_dict(spec, f"{FILENAME} stages.{name}.io_spec", required_outputs)

    def built_time(self, name: str) -> str | None:
        """When the stage's output was built (the ``run`` block; older manifests kept it in the entry)."""
        run_stages = _dict(_dict(self.data.get("run")).get("stages"))
        return _dict(run_stages.get(name)).get("built") or self.stage_entry(name).get("built")

    # -- weights --------------------------------------------------------------------------------------------
    def weights_provenance(self) -> dict:
        """{"kind": "checkpoint"|"random", "sha256", "checkpoint" (path as recorded in ``inputs``), "seed",
        "weights"}, or {} where the manifest says nothing about the weights."""
        recorded = _dict(self.data.get("weights_provenance"))
        prov = dict(recorded) if recorded.get("kind") else {}
        inputs = _dict(self.data.get("inputs"))
        if inputs.get("checkpoint"):
            prov.setdefault("kind", "checkpoint")
            prov["checkpoint"] = inputs["checkpoint"]
            prov.setdefault("sha256", inputs.get("checkpoint_sha256"))
        elif inputs.get("seed") is not None:
            prov.setdefault("kind", "random")
            prov.setdefault("seed", inputs["seed"])
        weights = self.data.get("weights")
        found = re.match(r"random \(seed (\d+)\)", weights) if isinstance(weights, str) else None
        if not prov and found:
            prov = {"kind": "random", "seed": int(found.group(1))}
        if prov.get("kind") == "random" and "seed" not in prov:
            found = re.search(r"seed (\d+)", str(prov.get("weights", "")))
            prov["seed"] = int(found.group(1)) if found else 0
        return prov


class ManifestWriter(Manifest):
    """The manifest being written during a run; ``save`` after every change that must survive an interrupt."""

    def __init__(self, artifact_dir: Path, stage_order: list[str]):
        super().__init__(Manifest.load(artifact_dir, strict=False).data, artifact_dir)
        self.order = list(stage_order)
        self.data.setdefault("stages", {})
        for name in list(self.data["stages"]):
            if name not in self.order:
                del self.data["stages"][name]

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

    def update(self, **fields) -> None:
        self.data.update(fields)

    def save(self) -> None:
        """Write it (``run`` last: everything above it is the same for the same inputs)."""
        ordered = {k: self.data[k] for k in ("name", "complete", "stages_completed") if k in self.data}
        ordered.update({k: v for k, v in self.data.items() if k not in ordered and k != "run"})
        if "run" in self.data:
            ordered["run"] = self.data["run"]
        write_json(self.dir / FILENAME, ordered)

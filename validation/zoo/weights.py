"""Which weights the zoo converts an upstream config with, said in its table.

An upstream config names no checkpoint (it has no ``toolkit:`` section), so the converter alone would use seeded
random weights. Where one of the toolkit's own configs (``configs/*.yml``) describes the very same model -- equal
``model.arch`` backbone, fpn and head (the training-only ``loss`` aside), ``data.val`` input size, keep_ratio and
normalisation, and class names -- the checkpoint that config names is the real one for it: the zoo passes it
with ``--checkpoint`` (the converter still loads it strictly and records its sha256). The table names the
checkpoint and the toolkit config it came through; anything else is ``random (seed N)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from contracts.hashing import sha256_file
from contracts.paths import configs_dir, shared_dir

from .expected import lookup


@dataclass
class WeightsChoice:
    checkpoint: Path | None      # passed with --checkpoint; None: what the config says (its own, or random)
    via: str | None              # the toolkit config whose checkpoint it is
    seed: int = 0
    own: bool = False            # the config names its checkpoint itself (toolkit.weights)

    def text(self, recorded: str | None = None) -> str:
        """The table's cell; ``recorded``: what the artifact's manifest says (``checkpoint x.pth``, ``random
        (seed 0)``), where it was built."""
        if self.checkpoint is not None:
            return f"real: {self.checkpoint.name} (via configs/{self.via}.yml: same model)"
        if recorded:
            return f"real: {recorded.removeprefix('checkpoint ')} (the config's)" if recorded.startswith(
                "checkpoint") else recorded
        return "the config's toolkit.weights" if self.own else f"random (seed {self.seed})"


def model_identity(raw) -> tuple | None:
    """What must be equal for a checkpoint to be the same model's; None where the config lacks a part."""
    try:
        arch, val = raw["model"]["arch"], raw["data"]["val"]
        head = {k: v for k, v in arch["head"].items() if k != "loss"}
        return (yaml.safe_dump([arch["backbone"], arch["fpn"], head], sort_keys=True),
                list(val["input_size"]), bool(val.get("keep_ratio", True)), val["pipeline"]["normalize"],
                list(raw.get("class_names") or []))
    except (KeyError, TypeError, AttributeError):
        return None


def toolkit_checkpoints() -> dict[tuple, tuple[Path, str]]:
    """{model identity: (checkpoint, toolkit config stem)} for every toolkit config whose named checkpoint is in
    the shared folder with the sha256 the config gives."""
    found = {}
    root = shared_dir()
    if root is None:
        return found
    for path in sorted(configs_dir().glob("*.yml")):
        raw = yaml.safe_load(path.read_text())
        spec = ((raw or {}).get("toolkit") or {}).get("weights") or {}
        identity = model_identity(raw)
        file = root / spec["file"] if spec.get("file") else None
        if identity is None or file is None or not file.is_file():
            continue
        if spec.get("sha256") and sha256_file(file) != spec["sha256"]:
            continue
        found.setdefault(_key(identity), (file, path.stem))
    return found


def _key(identity: tuple) -> str:
    return yaml.safe_dump(list(identity), sort_keys=True)


def choose_weights(raw, known: dict, random_only: bool = False) -> WeightsChoice:
    """The real checkpoint of the same model where the toolkit has one (``known``: ``toolkit_checkpoints()``),
    else the converter's seeded random weights (its ``toolkit.seed``, 0 by default)."""
    seed = lookup(raw, "toolkit.seed")
    seed = seed if isinstance(seed, int) else 0
    if lookup(raw, "toolkit.weights.file"):
        return WeightsChoice(None, None, seed, own=True)
    identity = model_identity(raw) if isinstance(raw, dict) else None
    if not random_only and identity is not None and _key(identity) in known:
        file, via = known[_key(identity)]
        return WeightsChoice(file, via, seed)
    return WeightsChoice(None, None, seed)

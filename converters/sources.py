"""What a conversion starts from: the config, the checkpoint (or seeded random weights) and their hashes.

Resolved without importing torch, so that a fully cached re-run stays fast. The checkpoint is found the way
``nanodet_ref.checkpoint.resolve_checkpoint`` finds it (given path, else the config's ``toolkit.weights.file`` in
the shared folder); the ONNX stage loads it through ``load_weights`` and checks that both name the same file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import UserError
from contracts.hashing import sha256_file
from contracts.paths import PROJECT_ROOT, shared_dir
from nanodet_ref.config import Config, load_config, resolve_checkpoint
from nanodet_ref.input_size import with_input_size


@dataclass
class ModelSource:
    cfg: Config
    config_path: Path
    config_sha256: str
    checkpoint: Path | None          # None: seeded random weights
    checkpoint_given: bool           # the user named it (else it came from the config)
    checkpoint_sha256: str | None
    seed: int
    input_size: tuple[int, int] | None = None   # (w, h) asked for instead of the config's (``--input-size``)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def weights_id(self) -> str:
        """What identifies the weights in cache keys."""
        return f"sha256:{self.checkpoint_sha256}" if self.checkpoint else f"random (seed {self.seed})"

    def inputs_record(self) -> dict:
        return {"config": display_path(self.config_path), "config_sha256": self.config_sha256,
                "checkpoint": display_path(self.checkpoint) if self.checkpoint else None,
                "checkpoint_sha256": self.checkpoint_sha256,
                "seed": None if self.checkpoint else self.seed, **self.size_inputs()}

    def size_inputs(self) -> dict:
        """``{"input_size": [w, h]}`` where another size than the config's was asked for, else {}: it goes into the
        first stage's cache key (the config file is the same) and the manifest's inputs."""
        return {"input_size": list(self.input_size)} if self.input_size else {}


def display_path(path: Path) -> str:
    """Relative to the project root (or the shared folder) where possible: no machine paths in manifests."""
    path = Path(path).resolve()
    root = shared_dir()
    for base, label in ((PROJECT_ROOT, ""), (root, "$NANODET_SHARED/")):
        if base is not None and path.is_relative_to(base.resolve()):
            return label + path.relative_to(base.resolve()).as_posix()
    return str(path)


def resolve(model: str | None = None, config: str | Path | None = None,
            checkpoint: str | Path | None = None, input_size: tuple[int, int] | None = None) -> ModelSource:
    """Load the config (by model name or path), at ``input_size`` (w, h) where given (``nanodet_ref.input_size``),
    and hash it and its checkpoint; UserError on bad input."""
    if bool(model) == bool(config):
        raise UserError("give either --model NAME or --config PATH (one of them)")
    cfg = load_config(model or config)
    resized = with_input_size(cfg, input_size)
    cfg, input_size = resized, (tuple(resized.input_size) if resized is not cfg else None)
    path = resolve_checkpoint(cfg, checkpoint)
    if path is not None:
        if path.is_dir():
            raise UserError(f"{path}: checkpoint is a folder, not a file")
        if not path.is_file():
            raise UserError(f"{path}: checkpoint file not found")
        if not os.access(path, os.R_OK):
            raise UserError(f"{path}: checkpoint file not readable")
    seed = int((cfg.toolkit or {}).get("seed", 0) or 0)
    return ModelSource(cfg=cfg, config_path=Path(cfg.path), config_sha256=sha256_file(cfg.path),
                       checkpoint=path, checkpoint_given=bool(checkpoint),
                       checkpoint_sha256=sha256_file(path) if path else None, seed=seed, input_size=input_size)
